"""The interface every PDE family implements, and the per-sample record.

What a sample's solution depends on is split three ways, so that a dataset stores it
*exactly* and a reader can rebuild the operator and right-hand side from the file alone:

* ``fields``  -- cell-centred inputs (shape = grid), stored as channels of ``x``;
* ``scalars`` -- per-sample numbers (``k``, ``nu``), stored in ``scalars/`` and, where they
  vary between samples, also as constant channels of ``x``;
* ``extras``  -- inputs that live on another grid (a stream function on the vertices,
  Dirichlet data on the boundary faces), stored beside ``x`` under ``inputs/``.

:meth:`PDEFamily.assemble` reads nothing else, and :meth:`Sample.rounded` rounds all of
it to the storage precision first, so the stored inputs *are* the inputs that were
solved.  Channels of ``x`` that are derived from extras (cell-averaged velocities) are
model features: :meth:`PDEFamily.derived` recomputes them from the (rounded) extras.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from ..capabilities import Capabilities
from ..fields import SAMPLING, SAMPLING_VERSIONS, GRFSpec, sample_rng
from ..params import param, validate
from ..timestepping import TimeSpec, TrajectoryRecord
from .fv import cell_centres

#: the boundary condition of the Dirichlet families, in the words stored in every file
DIRICHLET_ZERO = ("u = 0 on every boundary face (Dirichlet, imposed through a ghost value at distance h/2 "
                  "outside the boundary cell)")

#: the grid of the finite-volume families, in the words stored in every file
CELL_CENTRED = "cell-centred (cell i of n has its centre at (i + 1/2) / n)"

#: dimension names of the axes of one boundary face array (d - 1 of them)
FACE_DIMS = ("face_u", "face_v")

#: Random streams (see :func:`pdeforge.solvers.fields.sample_rng`): one per random input.
(STREAM_SCALARS, STREAM_COEFFICIENT, STREAM_FORCING, STREAM_BOUNDARY, STREAM_MEDIUM, STREAM_VELOCITY,
 STREAM_INITIAL, STREAM_INITIAL_2) = range(8)

#: how a family relates to time: steady only, transient when the spec has a time block, always transient
STEADY, OPTIONAL_TIME, TRANSIENT = "steady", "optional", "transient"


@dataclass(frozen=True)
class FamilySpec:
    """Grid common to all families: ``n`` cells per axis in ``dim`` dimensions; ``time`` (a
    :class:`~pdeforge.solvers.timestepping.TimeSpec`) makes a transient spec; ``sampling`` is the
    version of the map from random draws to grid values (:mod:`pdeforge.solvers.fields`)."""

    n: int = param(64, ge=8, le=1024, doc="cells per axis")
    dim: int = param(2, choices=(2, 3), doc="space dimension")
    time: TimeSpec | None = None
    sampling: int = param(SAMPLING, choices=SAMPLING_VERSIONS,
                          doc="2: sample i is one continuum field, the same instance at every resolution; "
                              "1: pdeforge 0.1's per-grid draws (to regenerate older datasets)")

    def __post_init__(self) -> None:
        validate(self)
        if self.dim == 3 and self.n > 256:
            raise ValueError(f"n={self.n} is out of range for dim=3; allowed: 8 <= n <= 256")
        if self.sampling == 1:
            for name, grf in _grf_fields(self):
                if grf.band is not None:
                    raise ValueError(f"{name}.band={grf.band} needs sampling 2; allowed: band null with sampling 1")

    def at(self, n: int) -> FamilySpec:
        """This spec on a grid of ``n`` cells per axis (the same samples: sampling 2)."""
        return dataclasses.replace(self, n=n)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.n,) * self.dim

    @property
    def h(self) -> float:
        return 1.0 / self.n

    @property
    def unknowns(self) -> int:
        return self.n**self.dim


@dataclass
class Sample:
    """One member of a family: its inputs (see module docstring)."""

    index: int
    fields: dict[str, np.ndarray]
    scalars: dict[str, float] = dataclasses.field(default_factory=dict)
    extras: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def rounded(self, dtype) -> Sample:
        """This sample with every input rounded to ``dtype`` (e.g. float32) and held in float64/complex128
        again: exactly the values a dataset of that precision stores."""
        dtype = np.dtype(dtype)

        def r(a):
            a = np.asarray(a)
            wide = np.complex128 if np.iscomplexobj(a) else np.float64
            low = np.result_type(dtype, np.complex64) if np.iscomplexobj(a) else dtype
            return a.astype(low).astype(wide)

        return Sample(self.index, {k: r(v) for k, v in self.fields.items()},
                      {k: float(r(v)) for k, v in self.scalars.items()},
                      {k: r(v) for k, v in self.extras.items()})


@dataclass(frozen=True)
class ExtraInput:
    """An input stored in its own dataset ``inputs/<name>`` (its grid is not the cells)."""

    name: str
    shape: tuple[int, ...]
    dims: tuple[str, ...]
    doc: str


class PDEFamily(ABC):
    """Base class: a family of linear systems A(p_i) u_i = b(p_i), one per random parameter p_i.

    Subclasses set ``name``, ``Spec`` and ``summary`` and implement
    :meth:`capabilities`, :meth:`sample`, :meth:`features` and :meth:`assemble`.
    """

    name: ClassVar[str]
    Spec: ClassVar[type[FamilySpec]]
    summary: ClassVar[str]
    #: STEADY, OPTIONAL_TIME (a time block makes it transient) or TRANSIENT
    time_dependence: ClassVar[str] = STEADY
    #: the time block a TRANSIENT family gets when the spec has none
    default_time: ClassVar[TimeSpec | None] = None

    def spec(self, **params) -> FamilySpec:
        """Build and validate a spec of this family (``ValueError`` names a bad parameter)."""
        return self.Spec(**params)

    @abstractmethod
    def capabilities(self, spec: FamilySpec) -> Capabilities:
        """What this spec's systems are (matrix class, fixed or varying operator, ...)."""

    def dtype(self, spec: FamilySpec) -> np.dtype:
        """dtype of A, b and the solution (complex for complex-symmetric operators)."""
        return self.capabilities(spec).dtype

    @abstractmethod
    def field_names(self, spec: FamilySpec) -> list[str]:
        """Names of the cell-centred inputs in ``Sample.fields`` (channels of ``x``)."""

    def derived_names(self, spec: FamilySpec) -> list[str]:
        """Channels of ``x`` derived from the extras (model features; not used by :meth:`assemble`)."""
        return []

    def derived(self, spec: FamilySpec, sample: Sample) -> dict[str, np.ndarray]:
        """The derived channels of ``sample``, computed from its (rounded) extras."""
        return {}

    def scalar_names(self, spec: FamilySpec) -> list[str]:
        """Names of the per-sample scalar parameters (may be empty)."""
        return []

    def varying_scalars(self, spec: FamilySpec) -> list[str]:
        """The scalars that differ between samples: they also become constant channels of ``x``."""
        return []

    def extra_inputs(self, spec: FamilySpec) -> list[ExtraInput]:
        """Inputs stored beside ``x`` (``inputs/<name>``) because they live on another grid."""
        return []

    def input_names(self, spec: FamilySpec) -> list[str]:
        """Channels of ``x``, in order: fields, derived fields, varying scalars."""
        return [*self.field_names(spec), *self.derived_names(spec), *self.varying_scalars(spec)]

    def output_names(self, spec: FamilySpec) -> list[str]:
        """Channels of ``y`` (the solution fields)."""
        return ["u"]

    @abstractmethod
    def boundary_conditions(self, spec: FamilySpec) -> str:
        """The boundary conditions of this spec, in words (stored in every file)."""

    @abstractmethod
    def sample(self, spec: FamilySpec, seed: int, index: int) -> Sample:
        """Sample ``index`` of the dataset with ``seed``: a pure function of (seed, index)."""

    @abstractmethod
    def features(self, spec: FamilySpec, seed: int, indices) -> np.ndarray:
        """Short ordering features (N, p) computed without materialising the fields."""

    @abstractmethod
    def assemble(self, spec: FamilySpec, sample: Sample) -> tuple[sp.csr_matrix, np.ndarray]:
        """The system (A in the grid's fixed CSR pattern, b) of ``sample``."""

    def inputs(self, spec: FamilySpec, sample: Sample) -> np.ndarray:
        """The input channels (C, *grid) of ``x``, in :meth:`input_names` order."""
        derived = self.derived(spec, sample)
        channels = [sample.fields[name] for name in self.field_names(spec)]
        channels += [derived[name] for name in self.derived_names(spec)]
        channels += [np.full(spec.shape, sample.scalars[name]) for name in self.varying_scalars(spec)]
        return np.stack(channels) if channels else np.zeros((0, *spec.shape))

    def stored_sample(self, spec: FamilySpec, index: int, x: np.ndarray, scalars: dict[str, float],
                      extras: dict[str, np.ndarray]) -> Sample:
        """The sample as a dataset stores it: fields from the channels of ``x``, scalars, extras.
        ``assemble`` of it rebuilds exactly the system that was solved."""
        names = self.input_names(spec)
        fields = {name: np.asarray(x[names.index(name)], dtype=np.float64) for name in self.field_names(spec)}
        return Sample(index, fields, {k: float(v) for k, v in scalars.items()},
                      {k: np.asarray(v) for k, v in extras.items()})

    def coordinates(self, spec: FamilySpec) -> np.ndarray:
        """1-D coordinates of the grid points (the same on every axis): cell centres by default."""
        return cell_centres(spec.n)

    def grid_type(self, spec: FamilySpec) -> str:
        """Where the values of a field sit, in words (stored in every file)."""
        return CELL_CENTRED

    # ----- time-dependent families (spec.time is not None) -------------------------------------------
    def initial_state(self, spec: FamilySpec, sample: Sample) -> np.ndarray:
        """The state at t = 0, ``(C_out, *grid)`` (a transient family's u0 field, by default)."""
        return np.stack([sample.fields[f"{name}0"] for name in self.output_names(spec)])

    def explicit(self, spec: FamilySpec, sample: Sample, b: np.ndarray):
        """``g(u)`` of ``u_t = -L u + g(u)`` (flat arrays): by default the constant forcing ``b`` of
        :meth:`assemble`; reaction terms override it."""
        return lambda u: b

    def integrate(self, spec: FamilySpec, sample: Sample, on_frame, options) -> TrajectoryRecord:
        """Own time stepper of families without a linear system (pseudo-spectral ones): one trajectory,
        ``on_frame(k, u)`` with u (C_out, *grid).  Families with a linear system are stepped by
        :func:`pdeforge.solvers.timestepping.integrate` with an engine."""
        return self.integrate_batch(spec, [sample], lambda k, u: on_frame(k, u[0]), options)[0]

    def integrate_batch(self, spec: FamilySpec, samples: list[Sample], on_frame, options) -> list[TrajectoryRecord]:
        """Several trajectories advanced together (``on_frame(k, u)`` with u (B, C_out, *grid)); the same
        frames as one at a time."""
        raise TypeError(f"{self.name} is stepped through its linear system (it has no own stepper)")

    def batch_size(self, spec: FamilySpec) -> int:
        """How many trajectories :meth:`integrate_batch` takes at once."""
        return 1


def _grf_fields(obj, prefix: str = ""):
    """(dotted name, GRFSpec) of every random field in a spec, at any depth."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, GRFSpec):
            yield prefix + f.name, value
        elif dataclasses.is_dataclass(value):
            yield from _grf_fields(value, prefix + f.name + ".")


def stack_features(blocks: list[tuple[np.ndarray, float]], count: int) -> np.ndarray:
    """Concatenate feature blocks, each divided by its RMS scale so every block weighs the same."""
    parts = [block / scale for block, scale in blocks if block.shape[1] and scale > 0]
    return np.hstack(parts) if parts else np.zeros((count, 0))


def uniform_scalar(lo: float, hi: float, seed: int, index: int, slot: int, *, log: bool = False) -> float:
    """A scalar parameter ~ U[lo, hi] (or log-uniform), reproducible from (seed, index)."""
    if lo == hi:
        return float(lo)
    u = sample_rng(seed, index, STREAM_SCALARS).uniform(size=slot + 1)[slot]
    if log:
        return float(np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo))))
    return float(lo + u * (hi - lo))
