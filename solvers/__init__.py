"""Pure numerics for PDEForge: PDE families, random fields, ordering, Krylov solvers.

Nothing in this package knows about jobs, HTTP or storage; it imports only NumPy
and SciPy (plus optional numerical extras such as PyAMG where noted).
"""

__version__ = "0.1.0"
