"""Capabilities: what a family's systems *are*, and what an engine *needs*.

A family declares, for one spec, a :class:`Capabilities` record: the matrix class
(SPD, symmetric indefinite, complex symmetric, non-symmetric, or no linear system at
all), whether it is an M-matrix, whether the operator varies between samples, whether
it is a constant multiple of the Dirichlet Laplacian, whether it is a (2d+1)-point
stencil on the tensor grid, whether the family is time-dependent, and the dimension.

An engine declares a tuple of :class:`Requirement` s.  One function,
:func:`pdeforge.solvers.engines.registry.refusal`, answers "does engine E apply to this spec,
and if not, why" from these two declarations alone -- no engine, validator or
benchmark looks at a family's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np


class MatrixClass(StrEnum):
    """The class of the per-sample operator A."""

    SPD = "real symmetric positive definite"
    SYMMETRIC_INDEFINITE = "real symmetric indefinite"
    COMPLEX_SYMMETRIC = "complex symmetric indefinite"
    NONSYMMETRIC = "real non-symmetric"
    NONE = "no linear system (the family has its own time stepper)"


@dataclass(frozen=True)
class Capabilities:
    """What the systems of one family spec are (see module docstring)."""

    matrix: MatrixClass
    dims: int
    operator_varies: bool
    m_matrix: bool = False
    #: "dirichlet" / "neumann" when A = s I + c L with L the cell-centred Laplacian with those
    #: boundary faces and constants s >= 0, c > 0 (no variable coefficient); None otherwise
    constant_laplacian: str | None = None
    #: A is a (2d+1)-point stencil in the grid's fixed CSR pattern (pdeforge.solvers.families.fv)
    tensor_stencil: bool = True
    time_dependent: bool = False

    @property
    def spd(self) -> bool:
        return self.matrix is MatrixClass.SPD

    @property
    def complex(self) -> bool:
        return self.matrix is MatrixClass.COMPLEX_SYMMETRIC

    @property
    def symmetric(self) -> bool:
        """A equals its plain transpose (complex symmetric included)."""
        return self.matrix in (MatrixClass.SPD, MatrixClass.SYMMETRIC_INDEFINITE, MatrixClass.COMPLEX_SYMMETRIC)

    @property
    def linear_system(self) -> bool:
        return self.matrix is not MatrixClass.NONE

    @property
    def dtype(self) -> np.dtype:
        """dtype of A, b and the solution."""
        return np.dtype(np.complex128 if self.complex else np.float64)

    def describe(self) -> str:
        """e.g. ``'real symmetric positive definite M-matrix, varies between samples'``."""
        text = self.matrix.value + (" M-matrix" if self.m_matrix else "")
        if not self.linear_system:
            return text
        if self.constant_laplacian is not None:
            text += f", s I + c L with L the {self.constant_laplacian} Laplacian"
        return text + (", varies between samples" if self.operator_varies else ", the same for every sample")


@dataclass(frozen=True)
class Requirement:
    """One thing an engine needs of a family's systems: a predicate and its wording."""

    needs: str
    holds: Callable[[Capabilities], bool]


LINEAR_SYSTEM = Requirement("a linear system per sample", lambda c: c.linear_system)
FIXED_OPERATOR = Requirement("a fixed operator (only the right-hand side varies between samples)",
                             lambda c: c.linear_system and not c.operator_varies)
DEFINITE = Requirement("a symmetric positive definite operator or an M-matrix (multigrid diverges on "
                       "indefinite operators)", lambda c: c.spd or c.m_matrix)
LAPLACIAN = Requirement("a constant-coefficient Laplacian (A = s I + c L, Dirichlet or zero-flux faces)",
                        lambda c: c.constant_laplacian is not None)
OWN_STEPPER = Requirement("a family with its own (pseudo-spectral) time stepper", lambda c: not c.linear_system)
TENSOR_STENCIL = Requirement("a (2d+1)-point stencil on the tensor grid",
                             lambda c: c.linear_system and c.tensor_stencil)
