"""PDEForge: fast, verified PDE datasets for neural operators.

One importable namespace over the repository's folders (see ``pyproject.toml``)::

    pdeforge.solvers   numerical core: families, fields, ordering, Krylov, engines, generate
    pdeforge.workers   pipeline, storage, HDF5 datasets, Celery tasks, job state
    pdeforge.app       HTTP API, CLI (``pdeforge``), Python client
"""

__version__ = "0.2.0"
