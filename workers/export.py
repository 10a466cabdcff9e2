"""Exports of a downloaded dataset to the formats other tools load (``pdeforge export``).

All exports hold the samples of each split in **index order** (sorted by sample index).  A
paired dataset (``grid.resolutions``) is exported at every resolution (or the one asked for):
neuraloperator's files carry the resolution in their names already; PDEBench files get a
``_<n>`` suffix and Zarr a ``r<n>`` group inside each split's group.

* ``neuralop`` -- neuraloperator's ``PTDataset`` files ``<name>_<split>_<n>.pt``, each a dict
  ``{"x": (N, C_in, *grid), "y": (N, C_out, *grid)}`` of float32 tensors (complex solutions as
  real/imaginary channel pairs), loadable with ``PTDataset(..., channels_squeezed=False)``.
* ``pdebench`` -- one HDF5 file per split, ``<name>_<split>.hdf5``, as PDEBench lays its data
  out: ``tensor`` (N, C_out, *grid) (trajectories: (N, T, *grid, C_out)), each input channel
  as its own (N, *grid) dataset, ``x-coordinate``/``y-coordinate``/``z-coordinate`` (and
  ``t-coordinate``) 1-D arrays.
* ``zarr`` -- one Zarr (v3) group ``<name>.zarr`` with a group per split holding ``x``, ``y``,
  ``sample_index`` and the scalars, with dimension names and coordinates, so
  ``xarray.open_zarr(path, group=split, consolidated=False)`` names every axis (Zarr v3 has no
  consolidated metadata in its specification, so none is written).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .dataset import GRID_DIMS
from .reader import DatasetReader

FORMATS = ("neuralop", "pdebench", "zarr")
_AXES = ("x-coordinate", "y-coordinate", "z-coordinate")


def _splits(root: Path, resolution: int | None) -> list[DatasetReader]:
    """A reader per split with samples, at ``resolution`` or (None) at every resolution of the dataset."""
    resolutions = [resolution] if resolution is not None else DatasetReader(root).resolutions
    readers = [DatasetReader(root, split=s, resolution=n) for n in resolutions for s in ("train", "valid", "test")]
    return [r for r in readers if len(r)]


def _real(y: np.ndarray, axis: int) -> np.ndarray:
    """Complex channels as (real, imaginary) channel pairs along ``axis``."""
    if not np.iscomplexobj(y):
        return y
    return np.stack([y.real, y.imag], axis=axis + 1).reshape(*y.shape[:axis], -1, *y.shape[axis + 1:])


def export(root: str | Path, fmt: str, out: str | Path, *, name: str | None = None,
           resolution: int | None = None) -> list[Path]:
    """Write the dataset in folder ``root`` as ``fmt`` into folder ``out``; returns the files written."""
    if fmt not in FORMATS:
        raise ValueError(f"format={fmt!r} is not allowed; allowed: one of {', '.join(map(repr, FORMATS))}")
    readers = _splits(Path(root), resolution)
    if not readers:
        raise ValueError(f"{root} holds no samples")
    manifest = readers[0].manifest
    name = name or f"pdeforge_{manifest['family']}_{manifest['dataset_id']}"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return {"neuralop": _neuralop, "pdebench": _pdebench, "zarr": _zarr}[fmt](readers, out, name, manifest)


def grid_points(manifest: dict, n: int) -> np.ndarray:
    """The coordinates of a grid axis of n points: cell centres (i + 1/2) / n, or j / n on a periodic grid."""
    periodic = manifest.get("grid_type", "").startswith("periodic")
    return np.arange(n) / n if periodic else (np.arange(n) + 0.5) / n


def _neuralop(readers, out: Path, name: str, manifest: dict) -> list[Path]:
    import torch

    written = []
    for reader in readers:
        samples = [reader.read(i) for i in range(len(reader))]
        x = torch.from_numpy(np.stack([s["x"] for s in samples]).astype(np.float32))
        y = np.stack([s["y"] for s in samples])
        y = torch.from_numpy(_real(y, y.ndim - len(reader.grid) - 1).astype(np.float32))
        path = out / f"{name}_{reader.split}_{reader.resolution}.pt"
        torch.save({"x": x, "y": y, "sample_index": torch.from_numpy(reader.sample_index.copy()),
                    "input_channels": reader.input_names, "output_channels": reader.output_names}, path)
        written.append(path)
    return written


def _pdebench(readers, out: Path, name: str, manifest: dict) -> list[Path]:
    import h5py

    written = []
    for reader in readers:
        grid = reader.grid
        coords = grid_points(manifest, grid[0])
        stem = f"{name}_{reader.split}_{reader.resolution}" if reader.paired else f"{name}_{reader.split}"
        path = out / f"{stem}.hdf5"
        N = len(reader)
        with h5py.File(path, "w") as h5:
            first = reader.read(0) if N else None
            trajectory = first is not None and first["y"].ndim == len(grid) + 2
            y_shape = first["y"].shape
            tensor_shape = (N, y_shape[0], *grid, y_shape[1]) if trajectory else (N, *y_shape)
            tensor = h5.create_dataset("tensor", shape=tensor_shape, dtype=first["y"].dtype)
            inputs = {c: h5.create_dataset(c, shape=(N, *grid), dtype=first["x"].dtype)
                      for c in reader.input_names}
            for i in range(N):
                s = reader.read(i)
                tensor[i] = np.moveaxis(s["y"], 1, -1) if trajectory else s["y"]
                for c, ds in enumerate(inputs.values()):
                    ds[i] = s["x"][c]
            for axis in range(len(grid)):
                h5.create_dataset(_AXES[axis], data=coords)
            h5.create_dataset("sample_index", data=reader.sample_index)
            h5.attrs.update({"pdeforge_dataset_id": manifest["dataset_id"], "family": manifest["family"],
                             "output_channels": ",".join(reader.output_names)})
        written.append(path)
    return written


def _zarr(readers, out: Path, name: str, manifest: dict) -> list[Path]:
    import zarr

    dims = list(GRID_DIMS[: len(manifest["grid"])])
    path = out / f"{name}.zarr"
    root = zarr.open_group(str(path), mode="w")
    root.attrs.update({"pdeforge_dataset_id": manifest["dataset_id"], "family": manifest["family"],
                       "claims": manifest["claims"], "boundary_conditions": manifest["boundary_conditions"]})
    for reader in readers:
        grid = reader.grid
        group = root.require_group(reader.split)
        if reader.paired:
            group = group.create_group(f"r{reader.resolution}")
        N = len(reader)
        first = reader.read(0)
        y_dims = ["sample_index", "time", "channel_out", *dims] if first["y"].ndim == len(grid) + 2 \
            else ["sample_index", "channel_out", *dims]
        x = group.create_array("x", shape=(N, *first["x"].shape), dtype=first["x"].dtype,
                               chunks=(1, *first["x"].shape), dimension_names=["sample_index", "channel_in", *dims])
        y = group.create_array("y", shape=(N, *first["y"].shape), dtype=first["y"].dtype,
                               chunks=(1, *first["y"].shape), dimension_names=y_dims)
        scalars = {k: group.create_array(k, shape=(N,), dtype="float64", dimension_names=["sample_index"])
                   for k in first["scalars"]}
        for i in range(N):
            s = reader.read(i)
            x[i], y[i] = s["x"], s["y"]
            for k, arr in scalars.items():
                arr[i] = s["scalars"][k]
        group.create_array("sample_index", data=reader.sample_index, dimension_names=["sample_index"])
        for dim, names in (("channel_in", reader.input_names), ("channel_out", reader.output_names)):
            # variable-length UTF-8: Zarr v3's specified string type (fixed-width unicode is not)
            names_array = group.create_array(dim, shape=(len(names),), dtype=str, dimension_names=[dim])
            names_array[:] = np.array(names, dtype=object)
        if "time" in y_dims:
            group.create_array("time", data=np.asarray(manifest["time"]["frame_times"]), dimension_names=["time"])
        for dim, size in zip(dims, grid):
            group.create_array(dim, data=grid_points(manifest, size), dimension_names=[dim])
    return [path]
