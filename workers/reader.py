"""Reading one split of a PDEForge dataset as NumPy arrays: a downloaded folder or a remote dataset.

:class:`DatasetReader` is what the PyTorch loader (:mod:`pdeforge.workers.loader`) and the
exports (:mod:`pdeforge.workers.export`) stand on.  It reads ``manifest.json`` (refusing
other format versions with the reason), lists the split's shards, and serves sample
``i`` -- in **index order** by default (sorted by global sample index, so a prefix is an
unbiased subset), or in the stored solve order (``order="solve"``, similar samples
together).  HDF5 files are opened lazily, once per process, so a reader can be handed to
``DataLoader`` worker processes (fork or spawn).

A remote dataset is read through the API with HTTP Range requests
(:meth:`pdeforge.app.client.PDEForgeClient.open_file`): only the chunks of the samples
you touch travel.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from .dataset import SAMPLE_DIM, FormatError
from .spec import FORMAT_VERSION

SPLITS = ("train", "valid", "test")
ORDERS = ("index", "solve")


class DatasetReader:
    """Samples of one split (``train``, ``valid``, ``test``) of a dataset.

    ``root``: the dataset folder (holding ``manifest.json`` and ``data/``), e.g. what
    ``pdeforge download ID DIR`` or ``pdeforge generate --out DIR`` wrote.  Or ``client``
    and ``dataset_id`` for a dataset on a server.  ``resolution``: of a paired dataset, which
    of its resolutions (cells per axis) to read; the finest by default.
    """

    def __init__(self, root: str | os.PathLike | None = None, *, split: str = "train", order: str = "index",
                 client=None, dataset_id: str | None = None, resolution: int | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"split={split!r} is not allowed; allowed: one of {', '.join(map(repr, SPLITS))}")
        if order not in ORDERS:
            raise ValueError(f"order={order!r} is not allowed; allowed: one of {', '.join(map(repr, ORDERS))}")
        if (root is None) == (client is None):
            raise ValueError("give either root (a dataset folder) or client and dataset_id")
        self.root = None if root is None else _dataset_root(Path(root))
        self.client, self.dataset_id = client, dataset_id
        self.split, self.order = split, order
        self.manifest = self._manifest()
        self.resolutions = self.manifest.get("resolutions") or [self.manifest["grid"][0]]
        self.resolution = self.resolutions[-1] if resolution is None else int(resolution)
        if self.resolution not in self.resolutions:
            raise ValueError(f"resolution={resolution} is not allowed; allowed: one of {self.resolutions} (the "
                             f"resolutions of dataset {self.manifest['dataset_id']})")
        self.grid = (self.resolution,) * len(self.manifest["grid"])
        self.files = sorted((f for f in self.manifest["files"] if f.get("split") == split
                             and f.get("resolution", self.resolution) == self.resolution), key=lambda f: f["shard"])
        self._handles: dict[int, h5py.File] = {}
        self._pid = os.getpid()
        counts = np.array([f["samples"] for f in self.files], dtype=np.int64)
        which = np.repeat(np.arange(len(self.files)), counts)
        where = np.concatenate([np.arange(c) for c in counts]) if len(counts) else np.zeros(0, np.int64)
        self.sample_index = np.concatenate([self._file(j)[SAMPLE_DIM][:] for j in range(len(self.files))]) \
            if self.files else np.zeros(0, np.int64)
        perm = np.argsort(self.sample_index, kind="stable") if order == "index" else np.arange(len(which))
        self._which, self._where, self.sample_index = which[perm], where[perm], self.sample_index[perm]

    # ----- metadata --------------------------------------------------------------------------------
    def _manifest(self) -> dict:
        if self.client is not None:
            manifest = self.client.manifest(self.dataset_id)
        else:
            path = self.root / "manifest.json"
            if not path.is_file():
                raise FileNotFoundError(f"{path} does not exist: not a complete PDEForge dataset folder "
                                        "(`pdeforge download ID DIR` writes manifest.json last)")
            manifest = json.loads(path.read_text())
        version = int(manifest.get("format_version", 1))
        if version != FORMAT_VERSION:
            raise FormatError(f"dataset {manifest.get('dataset_id')} has format {version} (pdeforge "
                              f"{manifest.get('pdeforge_version', '< 0.2')}); this reader reads format "
                              f"{FORMAT_VERSION}: regenerate it with this version (the same spec now names a new "
                              "dataset id) or read it with the version that wrote it")
        if not manifest.get("complete", False):
            raise FormatError(f"dataset {manifest.get('dataset_id')} is not complete yet")
        return manifest

    @property
    def input_names(self) -> list[str]:
        return self.manifest["input_names"]

    @property
    def output_names(self) -> list[str]:
        return self.manifest["output_names"]

    @property
    def paired(self) -> bool:
        """Whether the dataset holds its samples at several resolutions."""
        return len(self.resolutions) > 1

    def stats(self) -> dict:
        """``stats.json``: mean/std per channel (``x/<name>``, ``y/<name>``), scalar and extra input -- of
        this reader's resolution."""
        if self.client is not None:
            stats = json.loads(self.client.file_bytes(self.dataset_id, "stats.json"))
        else:
            stats = json.loads((self.root / "stats.json").read_text())
        if self.paired:
            stats = {**stats, **stats["by_resolution"][str(self.resolution)]}
        return stats

    # ----- samples ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._which)

    def _file(self, j: int) -> h5py.File:
        if os.getpid() != self._pid:  # a forked DataLoader worker: never share HDF5 handles across processes
            self._handles, self._pid = {}, os.getpid()
        handle = self._handles.get(j)
        if handle is None:
            path = self.files[j]["path"]
            source = (self.client.open_file(self.dataset_id, path, size=self.files[j]["bytes"])
                      if self.client is not None else self.root / path)
            handle = self._handles[j] = h5py.File(source, "r")
        return handle

    def read(self, i: int) -> dict:
        """Sample ``i`` of this split (in this reader's order): x, y, index, scalars."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"sample {i} out of range for {len(self)} samples in split {self.split!r}")
        h5, pos = self._file(int(self._which[i])), int(self._where[i])
        return {"x": h5["x"][pos], "y": h5["y"][pos], "index": int(h5[SAMPLE_DIM][pos]),
                "scalars": {k: float(v[pos]) for k, v in h5.get("scalars", {}).items()}}

    def read_all(self) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)`` of every sample of this split, in this reader's order, each shard read in one go."""
        if not len(self):
            raise IndexError(f"split {self.split!r} holds no samples")
        first = self._file(int(self._which[0]))
        x = np.empty((len(self), *first["x"].shape[1:]), first["x"].dtype)
        y = np.empty((len(self), *first["y"].shape[1:]), first["y"].dtype)
        for j in range(len(self.files)):
            mine = np.flatnonzero(self._which == j)
            h5 = self._file(j)
            x[mine], y[mine] = h5["x"][:][self._where[mine]], h5["y"][:][self._where[mine]]
        return x, y

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles = {}

    def __getstate__(self) -> dict:  # spawned DataLoader workers get a copy without open files
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state


def _dataset_root(root: Path) -> Path:
    """Accept the dataset folder itself, or a folder holding ``datasets/<id>/`` with exactly one dataset."""
    if (root / "manifest.json").exists() or not (root / "datasets").is_dir():
        return root
    found = [p for p in (root / "datasets").iterdir() if (p / "manifest.json").exists()]
    if len(found) != 1:
        raise FileNotFoundError(f"{root}/datasets holds {len(found)} complete datasets; pass one of them")
    return found[0]
