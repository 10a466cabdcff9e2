"""Pure numerics for PDEForge: PDE families, random fields, ordering, Krylov solvers.

Nothing in this package knows about jobs, HTTP or storage; it imports only NumPy
and SciPy (plus optional numerical extras such as PyAMG where noted).
"""

from pdeforge import __version__  # noqa: E402,F401

if __name__ != "pdeforge.solvers":  # one copy of every module, hence of every registry
    raise ImportError(f"this folder is the package pdeforge.solvers; import it under that name, not as "
                      f"{__name__!r} (install the project: pip install -e .)")
