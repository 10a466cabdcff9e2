"""What a shard writer meant to write, checked against the closed file's bytes on disk.

HDF5 can lose a write without raising.  When the disk fills up under its metadata cache, the
failed flush can happen while an object is released, and h5py reports it only as an ignored
exception (``Exception ignored in ... _dealloc``).  If the disk has room again before the file
is closed, the close succeeds and the file gets a valid checksum, but some content is gone: the
chaos suite's disk-full scenario once stored a shard whose ``channel_in`` read back as ``['']``
while ``x`` and ``y`` were intact.  So :class:`~pdeforge.workers.dataset.ShardWriter` records
everything it writes in a :class:`WriteRecord` and reads all of it back from the closed file:
the per-sample arrays through a running sha256 per sample, the small datasets (scales, scalars,
solver records) by value, every attribute, and every dimension-scale attachment.  A difference
is an ``OSError`` (``EIO``): the shard is written again later, it never lands.
"""

from __future__ import annotations

import errno
import hashlib

import h5py
import numpy as np

#: what reading a damaged HDF5 file raises (missing objects, broken references, undecodable data)
_READ_ERRORS = (KeyError, OSError, RuntimeError, ValueError)


def same(stored, expected) -> bool:
    """Equal shape and values; strings compared decoded, NaN equal to NaN."""
    stored, expected = np.asarray(stored), np.asarray(expected)
    if stored.shape != expected.shape:
        return False
    if stored.dtype.kind in "OSU" or expected.dtype.kind in "OSU":
        def text(a):
            return [v.decode() if isinstance(v, bytes) else str(v) for v in a.ravel()]
        return text(stored) == text(expected)
    return bool(np.array_equal(stored, expected, equal_nan=stored.dtype.kind in "fc" and expected.dtype.kind in "fc"))


class WriteRecord:
    """Everything written to one HDF5 file: ``digest(name, pos)`` for large per-sample arrays,
    ``values[name]`` for small datasets (updated in place as they are written), ``attrs[path]`` and
    ``dims[name]`` (the dimension scale attached to each axis)."""

    def __init__(self) -> None:
        self.digests: dict[tuple[str, int], object] = {}
        self.values: dict[str, np.ndarray] = {}
        self.attrs: dict[str, dict] = {}
        self.dims: dict[str, tuple[str, ...]] = {}

    def digest(self, name: str, position: int):
        """Running sha256 of what was written to ``name[position]`` (frames in order)."""
        return self.digests.setdefault((name, position), hashlib.sha256())

    def value(self, name: str, data) -> np.ndarray:
        """Record ``data`` as the content of the small dataset ``name``; returns the recorded copy."""
        self.values[name] = np.array(data, copy=True)
        return self.values[name]

    def attr(self, path: str, key: str, value) -> None:
        self.attrs.setdefault(path, {})[key] = value

    def verify(self, path) -> None:
        """Read the closed file at ``path`` back; ``OSError(EIO)`` naming the first object that differs."""
        try:
            # through a Python file object: the bytes on disk, not what the HDF5 library may still
            # hold of a file it could not close cleanly
            with open(path, "rb") as raw, h5py.File(raw, "r") as h5:
                what = self._first_difference(h5)
        except _READ_ERRORS as exc:
            raise OSError(errno.EIO, f"{path} did not read back ({type(exc).__name__}: {exc})") from exc
        if what is not None:
            raise OSError(errno.EIO, f"{path}: {what} did not read back as written")

    def _first_difference(self, h5: h5py.File) -> str | None:
        for (name, pos), digest in self.digests.items():
            if hashlib.sha256(np.ascontiguousarray(h5[name][pos]).tobytes()).digest() != digest.digest():
                return f"{name}[{pos}]"
        for name, expected in self.values.items():
            if not same(h5[name][()], expected):
                return name
        for node, attrs in self.attrs.items():
            for key, expected in attrs.items():
                if key not in h5[node].attrs or not same(h5[node].attrs[key], expected):
                    return f"attribute {key} of {node}"
        for name, dims in self.dims.items():
            axes = h5[name].dims
            if [axes[i][0].name.lstrip("/") if len(axes[i]) else None for i in range(len(dims))] != list(dims):
                return f"the dimension scales of {name}"
        return None
