"""HDF5 shard format: what users download and load.

One shard holds S consecutive samples of one split, in solve order:

==========================  ==========================================================
``x``                       inputs, (S, *grid) for one channel, else (S, C, *grid)
``y``                       solutions, (S, *grid) (complex for complex families)
``sample_index``            global sample index (S,) int64
``x-coordinate`` ...        1-D cell-centre coordinates per axis (``z-`` in 3-D)
``solver/iterations``       Krylov iterations (S,) int64
``solver/matvecs``          products with A (S,) int64
``solver/residual``         true relative residual ||b - A y|| / ||b||, float64
``solver/engine``           engine that produced y (S,) str
``solver/seconds``          wall time per sample (sampling + assembly + solve)
``solver/converged``        (S,) bool; ``solver/fallback`` (S,) bool
``params/<name>``           per-sample scalar parameters (e.g. ``k``, ``nu``)
==========================  ==========================================================

``x``/``y`` are chunked one sample per chunk (remote readers fetch single
samples), float32 by default.  Root attributes: ``spec`` (canonical JSON),
``dataset_id``, ``pdeforge_version``, ``family``, ``grid``, ``input_names``,
``split``, ``shard``.  The keys ``x`` and ``y`` load directly with
neuraloperator's ``H5pyDataset``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import numpy as np

from pdeforge.solvers import __version__
from pdeforge.solvers.generate import GenerationResult

COORDINATE_NAMES = ("x-coordinate", "y-coordinate", "z-coordinate")


def storage_dtypes(result: GenerationResult, precision: str) -> tuple[np.dtype, np.dtype]:
    """dtypes of x and y for ``precision`` in {"float32", "float64"} (complex y keeps complexity)."""
    real = np.dtype(precision)
    y = np.dtype(np.complex64 if real == np.float32 else np.complex128) if np.iscomplexobj(result.y) else real
    return real, y


def write_shard(path: str | Path, result: GenerationResult, *, attrs: dict, coordinates: np.ndarray,
                precision: str = "float32") -> dict:
    """Write ``result`` to ``path``; returns a description (count, shapes, dtypes)."""
    x = result.x[:, 0] if result.x.shape[1] == 1 else result.x
    xdt, ydt = storage_dtypes(result, precision)
    S = len(result.indices)
    with h5py.File(path, "w", track_order=True) as h5:
        for name, arr, dt in (("x", x, xdt), ("y", result.y, ydt)):
            h5.create_dataset(name, data=arr.astype(dt), chunks=(1, *arr.shape[1:]) if S else None)
        h5.create_dataset("sample_index", data=result.indices.astype(np.int64))
        for axis in range(result.y.ndim - 1):
            h5.create_dataset(COORDINATE_NAMES[axis], data=coordinates)
        recs = result.records
        solver = h5.create_group("solver")
        solver.create_dataset("iterations", data=np.array([r.iterations for r in recs], dtype=np.int64))
        solver.create_dataset("matvecs", data=np.array([r.matvecs for r in recs], dtype=np.int64))
        solver.create_dataset("residual", data=np.array([r.residual for r in recs], dtype=np.float64))
        solver.create_dataset("seconds", data=np.array([r.seconds for r in recs], dtype=np.float64))
        solver.create_dataset("converged", data=np.array([r.converged for r in recs], dtype=bool))
        solver.create_dataset("fallback", data=np.array([r.fallback for r in recs], dtype=bool))
        solver.create_dataset("engine", data=[r.engine for r in recs], dtype=h5py.string_dtype())
        params = h5.create_group("params")
        for name, values in result.scalars.items():
            params.create_dataset(name, data=values.astype(np.float64))
        for key, value in attrs.items():
            h5.attrs[key] = value if isinstance(value, (str, int, float)) else json.dumps(value)
        h5.attrs["pdeforge_version"] = __version__
        h5.attrs["input_names"] = json.dumps(result.input_names)
    return {"samples": S, "x": {"shape": list(x.shape), "dtype": str(xdt)},
            "y": {"shape": list(result.y.shape), "dtype": str(ydt)}}


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_sample(source, position: int) -> dict:
    """Sample at ``position`` of a shard (path or file-like): x, y, index and solver record."""
    with h5py.File(source, "r") as h5:
        out = {
            "index": int(h5["sample_index"][position]),
            "x": h5["x"][position],
            "y": h5["y"][position],
            "solver": {k: _scalar(h5["solver"][k][position]) for k in h5["solver"]},
            "params": {k: float(h5["params"][k][position]) for k in h5["params"]},
        }
    return out


def _scalar(v):
    if isinstance(v, bytes):
        return v.decode()
    return v.item() if hasattr(v, "item") else v
