"""HTTP API, CLI and Python client of PDEForge."""

if __name__ != "pdeforge.app":  # one copy of every module, hence of every registry
    raise ImportError(f"this folder is the package pdeforge.app; import it under that name, not as "
                      f"{__name__!r} (install the project: pip install -e .)")
