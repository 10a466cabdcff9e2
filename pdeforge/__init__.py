"""PDEForge: fast, verified PDE datasets for neural operators.

One importable namespace over the repository's folders (see ``pyproject.toml``)::

    pdeforge.solvers   numerical core: families, fields, ordering, Krylov, engines, generate
    pdeforge.workers   pipeline, storage, HDF5 datasets, Celery tasks, job state
    pdeforge.app       HTTP API, CLI (``pdeforge``), Python client

``pdeforge.PDEDataset`` (PyTorch) and ``pdeforge.DatasetReader`` (NumPy) read a dataset.
"""

__version__ = "0.2.0"

__all__ = ["__version__", "PDEDataset", "PairedDataset", "DatasetReader"]


def __getattr__(name: str):
    # the loader needs PyTorch (an extra): import it only when asked for
    if name == "PDEDataset":
        from pdeforge.workers.loader import PDEDataset

        return PDEDataset
    if name == "PairedDataset":
        from pdeforge.workers.loader import PairedDataset

        return PairedDataset
    if name == "DatasetReader":
        from pdeforge.workers.reader import DatasetReader

        return DatasetReader
    raise AttributeError(f"module 'pdeforge' has no attribute {name!r}")
