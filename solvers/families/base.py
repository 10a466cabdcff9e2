"""The interface every PDE family implements, and the per-sample record."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from ..capabilities import Capabilities
from ..fields import sample_rng
from ..params import param, validate
from .fv import cell_centres

#: Random streams (see :func:`pdeforge.solvers.fields.sample_rng`): one per random input.
STREAM_SCALARS, STREAM_COEFFICIENT, STREAM_FORCING, STREAM_BOUNDARY, STREAM_MEDIUM, STREAM_VELOCITY = range(6)


@dataclass(frozen=True)
class FamilySpec:
    """Grid common to all families: ``n`` cells per axis in ``dim`` dimensions."""

    n: int = param(64, ge=8, le=1024, doc="cells per axis")
    dim: int = param(2, choices=(2, 3), doc="space dimension")

    def __post_init__(self) -> None:
        validate(self)
        if self.dim == 3 and self.n > 256:
            raise ValueError(f"n={self.n} is out of range for dim=3; allowed: 8 <= n <= 256")

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
    """One member of a family: its parameter fields on the grid and its scalar parameters."""

    index: int
    fields: dict[str, np.ndarray]
    scalars: dict[str, float] = dataclasses.field(default_factory=dict)
    #: other random parameters needed for assembly (e.g. series coefficients)
    params: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


class PDEFamily(ABC):
    """Base class: a family of linear systems A(p_i) u_i = b(p_i), one per random parameter p_i.

    Subclasses set ``name``, ``Spec`` and ``summary`` and implement
    :meth:`capabilities`, :meth:`sample`, :meth:`features` and :meth:`assemble`.
    """

    name: ClassVar[str]
    Spec: ClassVar[type[FamilySpec]]
    summary: ClassVar[str]

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
    def input_names(self, spec: FamilySpec) -> list[str]:
        """Names of the input channels stored in a dataset's ``x``."""

    def scalar_names(self, spec: FamilySpec) -> list[str]:
        """Names of the per-sample scalar parameters (may be empty)."""
        return []

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
        """The input channels (C, *grid) for a dataset, in :meth:`input_names` order."""
        return np.stack([sample.fields[name] for name in self.input_names(spec)])

    def coordinates(self, spec: FamilySpec) -> np.ndarray:
        """1-D cell-centre coordinates (the same on every axis)."""
        return cell_centres(spec.n)


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
