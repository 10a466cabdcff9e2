"""HDF5 shard format (version 2): what users download and load.

One shard holds S consecutive samples of one split, **in solve order** (similar samples
next to each other: shuffle before training, as :class:`~pdeforge.workers.loader.PDEDataset`
and ``DataLoader(shuffle=True)`` do). Every family has the same layout:

==============================  =================================================================
``x``                           inputs (S, C_in, *grid): the cell-centred fields, derived fields and
                                varying scalars as constant channels (``channel_in`` names them)
``y``                           solutions (S, C_out, *grid); complex families: complex64/128 (HDF5
                                compound ``r``/``i``), or two real channels with ``complex=real_imag``
``sample_index``                global sample index (S,) int64; the ``sample_index`` dimension scale
``scalars/<name>``              per-sample scalars (``k``, ``nu``), float64 holding the stored value
``inputs/<name>``               inputs on other grids, stored exactly: ``psi`` (S, n+1, n+1) at the
                                vertices, ``boundary`` (S, 2d, n, ...) at the boundary faces
``grid_x``, ``grid_y``, ...     cell-centre coordinates, dimension scales of the grid axes
``channel_in``, ``channel_out`` channel names, dimension scales of the channel axes
``solver/residual``             true relative residual ||b - A y64|| / ||b|| of the float64 solution
``solver/residual_stored``      the same for the stored (rounded) y
``solver/iterations`` ...       matvecs, seconds, engine, converged, fallback (S,); trajectories also steps,
                                time_error_estimate, operators
==============================  =================================================================

The system of sample i is assembled from its stored inputs (the inputs were rounded to
the storage precision *before* assembly), solved in float64 and rounded; root attribute
``claims`` says so in words with the numbers, and every claim holds for the arrays in
the file.  Other root attributes: ``format_version``, ``dataset_id``, ``family``, ``spec``
(canonical JSON), ``engine``, ``grid``, ``domain``, ``grid_type``,
``boundary_conditions``, ``units``, ``sample_order``, ``split``, ``shard``, versions.
Every axis of every dataset is attached to a dimension scale, so xarray
(``engine="h5netcdf"``) names the dimensions; ``x``/``y`` chunks hold one sample.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path

import h5py
import numpy as np

from pdeforge import __version__
from pdeforge.solvers.families import FamilySpec, PDEFamily
from pdeforge.solvers.families.fv import cell_centres
from pdeforge.solvers.generate import SolvedSample

from .readback import WriteRecord
from .spec import FORMAT_VERSION

GRID_DIMS = ("grid_x", "grid_y", "grid_z")
SAMPLE_DIM = "sample_index"
COMPRESSIONS = ("none", "gzip", "blosc")
SAMPLE_ORDER = ("solve order: consecutive samples are similar (greedy/hilbert ordering of the split); "
                "shuffle before training -- a prefix is a clustered subset")
_SOLVER_FIELDS = {"iterations": np.int64, "matvecs": np.int64, "residual": np.float64,
                  "residual_stored": np.float64, "seconds": np.float64, "converged": bool, "fallback": bool}
#: the solver fields of trajectory shards only
_TIME_FIELDS = {"steps": np.int64, "time_error_estimate": np.float64, "operators": np.int64}
TIME_DIM = "time"


@contextlib.contextmanager
def os_errors_of_hdf5():
    """Re-raise an HDF5 write failure that reports an OS ``errno`` (a full disk: 'errno = 28') as that
    ``OSError``, so that callers tell a full or read-only disk (retry later) from a bug."""
    try:
        yield
    except (RuntimeError, OSError, ValueError) as exc:
        found = None if isinstance(exc, OSError) and exc.errno else _HDF5_ERRNO.search(str(exc))
        if found is None:
            raise
        code = int(found.group(1))
        raise OSError(code, f"{os.strerror(code)} (HDF5: {str(exc).splitlines()[0]})") from exc


_HDF5_ERRNO = re.compile(r"errno = (\d+)")


class FormatError(ValueError):
    """A file is not a PDEForge shard this code can read (e.g. an older format)."""


def storage_dtypes(family: PDEFamily, spec: FamilySpec, precision: str, complex_storage: str) -> tuple:
    """dtypes of x and y for ``precision`` in {"float32", "float64"}."""
    real = np.dtype(precision)
    if family.capabilities(spec).complex and complex_storage == "complex":
        return real, np.dtype(np.complex64 if real == np.float32 else np.complex128)
    return real, real


def output_channels(family: PDEFamily, spec: FamilySpec, complex_storage: str) -> list[str]:
    names = family.output_names(spec)
    if family.capabilities(spec).complex and complex_storage == "real_imag":
        return [f"{n}.{part}" for n in names for part in ("real", "imag")]
    return names


def claims(precision: str, rtol: float, atol: float, time=None) -> str:
    """What every shard says about its arrays (true of them: checked by the tests)."""
    bits = {"float32": 24, "float64": 53}[precision]
    if time is not None:
        return (f"For every sample i: y[i, k] is the state at time[k] of the time integrator ({time.scheme}, "
                f"dt = {time.dt:g}, {time.steps} steps) started from the stored initial condition and inputs of "
                f"sample i (x, scalars/, inputs/: rounded to {precision} before the run), computed in float64 and "
                f"rounded to {precision} (relative rounding <= 2^-{bits} per entry); y[i, 0] is the stored initial "
                f"condition. Every implicit step solved its linear system (pseudo-spectral families: the diagonal "
                f"Fourier-space system of the viscous stage) to a true relative residual <= "
                f"max(rtol, atol/||b||) with rtol = {rtol:g}, atol = {atol:g}; solver/residual[i] is the largest over "
                f"the steps. solver/time_error_estimate[i] estimates the relative time-discretisation error of "
                f"the stored frames (step doubling over the first frame interval), which no residual measures; "
                f"solver/residual_stored is NaN (a trajectory has no single system to check).")
    return (f"For every sample i: y[i] is the solution of the linear system assembled (in float64) from the "
            f"stored inputs of sample i (the fields in x, scalars/, inputs/), solved in float64 to a true "
            f"relative residual solver/residual[i] = ||b - A y64|| / ||b|| <= max(rtol, atol/||b||) with "
            f"rtol = {rtol:g}, atol = {atol:g}, and rounded to {precision} (relative rounding <= 2^-{bits} "
            f"per entry); solver/residual_stored[i] is the same residual of the stored y[i]. The inputs "
            f"were rounded to {precision} before assembly, so they are exactly the inputs that were solved.")


def _compression(kind: str) -> dict:
    if kind == "gzip":
        return {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    if kind == "blosc":
        import hdf5plugin  # optional extra: pip install pdeforge[blosc]; readers need it as well

        return dict(hdf5plugin.Blosc(cname="zstd", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE))
    return {}


class ShardWriter:
    """Streams solved samples into one HDF5 shard: a :class:`~pdeforge.solvers.generate.Sink`.

    Datasets are created full-size up front and written one sample at a time, so memory is
    bounded by one sample whatever the shard size.  Moments (count, sum, sum of squares) of
    every stored channel (``x/<name>``, ``y/<name>``, ``.real``/``.imag`` for complex), scalar
    (``scalars/<name>``) and extra input (``inputs/<name>``) are accumulated from the stored values.
    """

    def __init__(self, path: str | Path, family: PDEFamily, spec: FamilySpec, count: int, *, precision: str,
                 complex_storage: str = "complex", compression: str = "none", attrs: dict | None = None) -> None:
        self.family, self.spec, self.count = family, spec, count
        self.complex_storage, self.precision = complex_storage, precision
        self.time = spec.time
        # the last frame written per trajectory (one-frame differences; batched trajectories interleave)
        self._previous: dict[int, tuple[int, np.ndarray]] = {}
        self.xdt, self.ydt = storage_dtypes(family, spec, precision, complex_storage)
        self.in_names = family.input_names(spec)
        self.out_names = output_channels(family, spec, complex_storage)
        self.path = path
        self.h5 = h5py.File(path, "w", track_order=True)
        self.moments: dict[str, list[float]] = {}
        #: everything written, read back from the closed file by :meth:`close` (:mod:`.readback`)
        self.written = WriteRecord()
        self.records = []
        try:
            self._layout(compression, attrs or {})
        except BaseException:
            self.abort()  # no open HDF5 file left behind a failed layout (a full disk)
            raise

    # ----- layout ----------------------------------------------------------------------------------
    def _solver_fields(self) -> dict:
        """The per-sample solver datasets (``solver/<name>``): trajectories add steps, time error, operators."""
        return _SOLVER_FIELDS if self.time is None else {**_SOLVER_FIELDS, **_TIME_FIELDS}

    def _scale(self, name: str, data) -> h5py.Dataset:
        ds = self.h5.create_dataset(name, data=data)
        self.written.value(name, data)
        ds.make_scale(name)
        return ds

    def _attr(self, node: str, key: str, value) -> None:
        """Attribute ``key`` of ``node`` ("/" for the file): strings and numbers as they are, the rest as JSON."""
        value = value if isinstance(value, (str, int, float)) else json.dumps(value)
        self.h5[node].attrs[key] = value
        self.written.attr(node, key, value)

    def _zeros(self, name: str, count: int, dtype) -> None:
        """A per-sample dataset of ``count`` entries, attached to the sample axis, written sample by sample."""
        self._attach(self.h5.create_dataset(name, shape=(count,), dtype=dtype), (SAMPLE_DIM,))
        text = h5py.check_string_dtype(np.dtype(dtype)) is not None
        self.written.value(name, np.full(count, "", dtype=object) if text else np.zeros(count, dtype=dtype))

    def _attach(self, ds: h5py.Dataset, dims: tuple[str, ...]) -> None:
        self.written.dims[ds.name.lstrip("/")] = tuple(dims)
        for axis, dim in enumerate(dims):
            ds.dims[axis].attach_scale(self.h5[dim])

    def _layout(self, compression: str, attrs: dict) -> None:
        fam, spec, S, h5 = self.family, self.spec, self.count, self.h5
        d, n = spec.dim, spec.n
        grid = GRID_DIMS[:d]
        for dim in grid:
            self._scale(dim, fam.coordinates(spec))
            self._attr(dim, "units", "1 (unit domain)")
        self._scale(SAMPLE_DIM, np.zeros(S, np.int64))
        if self.time is not None:
            self._scale(TIME_DIM, self.time.frame_times())
            self._attr(TIME_DIM, "units", "1 (time of the PDE)")
        self._scale("channel_in", np.array(self.in_names, dtype=h5py.string_dtype()))
        self._scale("channel_out", np.array(self.out_names, dtype=h5py.string_dtype()))
        extras = fam.extra_inputs(spec)
        for e in extras:
            for dim, size in zip(e.dims, e.shape):
                if dim not in h5:
                    self._scale(dim, _dim_values(dim, size, n, d))
        chunked = dict(_compression(compression)) if S else {}
        frames = () if self.time is None else (TIME_DIM,)
        for name, dt, channels, dims in (("x", self.xdt, self.in_names, ("channel_in",)),
                                         ("y", self.ydt, self.out_names, (*frames, "channel_out"))):
            lead = (self.time.frames,) if (name == "y" and self.time is not None) else ()
            shape = (S, *lead, len(channels), *spec.shape)
            chunk = (1, *(1 for _ in lead), *shape[1 + len(lead):])
            ds = h5.create_dataset(name, shape=shape, dtype=dt, chunks=chunk if S else None, **chunked)
            self._attr(name, "channels", json.dumps(channels))
            self._attr(name, "layout", json.dumps([SAMPLE_DIM, *dims, *grid]))
            self._attach(ds, (SAMPLE_DIM, *dims, *grid))
        for e in extras:
            ds = h5.create_dataset(f"inputs/{e.name}", shape=(S, *e.shape), dtype=self.xdt,
                                   chunks=(1, *e.shape) if S else None, **chunked)
            self._attr(ds.name, "description", e.doc)
            self._attach(ds, (SAMPLE_DIM, *e.dims))
        for name in fam.scalar_names(spec):
            self._zeros(f"scalars/{name}", S, np.float64)
        for name, dt in self._solver_fields().items():
            self._zeros(f"solver/{name}", S, dt)
        self._zeros("solver/engine", S, h5py.string_dtype())
        for key, value in {
            "format_version": FORMAT_VERSION, "pdeforge_version": __version__, "family": fam.name,
            "grid": json.dumps(list(spec.shape)), "domain": json.dumps([[0.0, 1.0]] * d),
            "grid_type": fam.grid_type(spec),
            "boundary_conditions": fam.boundary_conditions(spec), "units": "dimensionless",
            "input_channels": json.dumps(self.in_names), "output_channels": json.dumps(self.out_names),
            "scalars": json.dumps(fam.scalar_names(spec)),
            "extra_inputs": json.dumps([e.name for e in extras]), "sample_order": SAMPLE_ORDER,
            "precision": self.precision, "complex": self.complex_storage,
            "time": json.dumps(None if self.time is None else {
                "t_end": self.time.t_end, "dt": self.time.dt, "frames": self.time.frames, "scheme": self.time.scheme,
                "steps": self.time.steps, "axis": "y[i, k] is the state at time[k]"}),
        }.items():
            self._attr("/", key, value)
        for key, value in attrs.items():
            self._attr("/", key, value)

    # ----- samples -----------------------------------------------------------------------------------
    def _stored_y(self, y: np.ndarray) -> np.ndarray:
        if self.family.capabilities(self.spec).complex and self.complex_storage == "real_imag":
            y = np.concatenate([y.real, y.imag])
        return y.astype(self.ydt)

    def _y_moments(self, prefix: str, y: np.ndarray) -> None:
        for c, name in enumerate(self.out_names):
            if np.iscomplexobj(y):
                self._moments(f"{prefix}/{name}.real", y[c].real)
                self._moments(f"{prefix}/{name}.imag", y[c].imag)
            else:
                self._moments(f"{prefix}/{name}", y[c])

    def add_frame(self, position: int, k: int, frame: np.ndarray) -> None:
        """Frame k of trajectory ``position``, written as it is produced (statistics of the frames and
        of the one-frame differences ``dy`` accumulate from the stored values)."""
        y = self._stored_y(frame)
        self.h5["y"][position, k] = y
        self.written.digest("y", position).update(np.ascontiguousarray(y).tobytes())
        self._y_moments("y", y)
        last = self._previous.get(position)
        if last is not None and last[0] == k - 1:
            self._y_moments("dy", y.astype(np.float64) - last[1])
        if k + 1 < self.time.frames:
            self._previous[position] = (k, y.astype(np.float64))
        else:
            self._previous.pop(position, None)

    def add(self, solved: SolvedSample) -> None:
        h5, pos, s = self.h5, solved.position, solved.sample
        x = solved.inputs.astype(self.xdt)
        h5["x"][pos] = x
        written = self.written
        written.digest("x", pos).update(np.ascontiguousarray(x).tobytes())
        if solved.y is not None:
            y = self._stored_y(solved.y)
            h5["y"][pos] = y
            written.digest("y", pos).update(np.ascontiguousarray(y).tobytes())
            self._y_moments("y", y)
        h5[SAMPLE_DIM][pos] = written.values[SAMPLE_DIM][pos] = s.index
        for c, name in enumerate(self.in_names):
            self._moments(f"x/{name}", x[c])
        for name, value in s.scalars.items():
            h5[f"scalars/{name}"][pos] = written.values[f"scalars/{name}"][pos] = value
            self._moments(f"scalars/{name}", np.array([value]))
        for name, arr in s.extras.items():
            stored = arr.astype(self.xdt)
            h5[f"inputs/{name}"][pos] = stored
            written.digest(f"inputs/{name}", pos).update(np.ascontiguousarray(stored).tobytes())
            self._moments(f"inputs/{name}", stored)
        self.records.append(solved.record)

    def _moments(self, name: str, values: np.ndarray) -> None:
        a = np.asarray(values, dtype=np.float64)
        acc = self.moments.setdefault(name, [0.0, 0.0, 0.0])
        acc[0] += a.size
        acc[1] += float(a.sum())
        acc[2] += float(np.square(a).sum())

    def close(self, attrs: dict | None = None) -> dict:
        """Write the per-sample solver records and ``attrs``, close the file and read it back (:mod:`.readback`);
        returns counts, shapes and dtypes.  The file is closed whatever fails."""
        try:
            info = self._finish(attrs)
        except BaseException:
            self.abort()
            raise
        self.h5.close()
        # a write that HDF5 lost without raising (a disk that filled up under its cache) is an OSError
        # here, never a shard with a valid checksum and lost content (see .readback)
        self.written.verify(self.path)
        return info

    def _finish(self, attrs: dict | None) -> dict:
        h5, recs = self.h5, self.records
        if len(recs) != self.count:
            raise RuntimeError(f"shard got {len(recs)} samples but was created for {self.count}")
        for name, dt in self._solver_fields().items():
            values = [getattr(r, name) for r in recs]
            if name in ("residual_stored", "time_error_estimate"):
                values = [np.nan if v is None else v for v in values]
            h5[f"solver/{name}"][:] = self.written.value(f"solver/{name}", np.asarray(values, dtype=dt))
        h5["solver/engine"][:] = self.written.value("solver/engine", np.array([r.engine for r in recs], dtype=object))
        for key, value in (attrs or {}).items():
            self._attr("/", key, value)
        return {"samples": self.count,
                "x": {"shape": list(h5["x"].shape), "dtype": str(self.xdt)},
                "y": {"shape": list(h5["y"].shape), "dtype": str(self.ydt)}}

    def abort(self) -> None:
        """Close the file without finishing it (it is not a shard); idempotent."""
        if self.h5.id.valid:
            self.h5.close()


def _dim_values(dim: str, size: int, n: int, d: int):
    """Coordinates of the non-cell dimensions of extra inputs."""
    if dim.startswith("vertex_"):
        return np.arange(size) / n
    if dim == "boundary_face":
        return np.array([f"x{axis} = {side}" for axis in range(d) for side in (0, 1)], dtype=h5py.string_dtype())
    return cell_centres(n)  # face_u / face_v: the cell centres along the face's own axes


# ----------------------------------------------------------------------------- reading
def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_format(h5: h5py.File) -> int:
    """The file's format version; :class:`FormatError` unless this code reads it."""
    version = int(h5.attrs.get("format_version", 1))
    if version != FORMAT_VERSION:
        raise FormatError(f"shard format {version} (written by pdeforge {h5.attrs.get('pdeforge_version', '< 0.2')}) "
                          f"is not format {FORMAT_VERSION}: regenerate the dataset with this version (the same "
                          "spec now names a new dataset id) or read it with the version that wrote it")
    return version


def shard_spec(h5: h5py.File) -> tuple[PDEFamily, FamilySpec]:
    """The family and the spec of the arrays in an open shard: its ``spec`` attribute, at the file's
    ``resolution`` for a file of a paired dataset."""
    from pdeforge.solvers.families import get_family

    from .spec import parse_spec

    spec = parse_spec(h5.attrs["spec"]).family_spec()
    if "resolution" in h5.attrs:
        spec = spec.at(int(h5.attrs["resolution"]))
    return get_family(str(h5.attrs["family"])), spec


def read_sample(source, position: int) -> dict:
    """Sample at ``position`` of a shard (path or file-like): x, y, index, scalars, extras, solver record."""
    with h5py.File(source, "r") as h5:
        check_format(h5)
        return {
            "index": int(h5[SAMPLE_DIM][position]),
            "x": h5["x"][position],
            "y": h5["y"][position],
            "input_channels": json.loads(h5.attrs["input_channels"]),
            "output_channels": json.loads(h5.attrs["output_channels"]),
            "solver": {k: _scalar(h5["solver"][k][position]) for k in h5["solver"]},
            "scalars": {k: float(h5["scalars"][k][position]) for k in h5.get("scalars", {})},
            "inputs": {k: h5["inputs"][k][position] for k in h5.get("inputs", {})},
            "times": h5[TIME_DIM][:] if TIME_DIM in h5 else None,  # frame times of a trajectory
            "grid_points": h5[GRID_DIMS[0]][:],  # coordinates along every grid axis
        }


def _scalar(v):
    if isinstance(v, bytes):
        return v.decode()
    return v.item() if hasattr(v, "item") else v
