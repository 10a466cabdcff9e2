"""Pipeline, storage, HDF5 datasets, Celery tasks and job state of PDEForge."""

if __name__ != "pdeforge.workers":  # one copy of every module, hence of every registry
    raise ImportError(f"this folder is the package pdeforge.workers; import it under that name, not as "
                      f"{__name__!r} (install the project: pip install -e .)")
