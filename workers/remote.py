"""Read parts of stored shards without downloading them: a seekable file over ranged reads."""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import lru_cache

import numpy as np

from . import keys
from .records import Plan
from .storage import Storage


class RangeFile(io.RawIOBase):
    """Read-only, seekable view of one remote object of ``size`` bytes; reads become
    ``read_range(start, end_inclusive)`` calls (a storage's ``get_range``, an HTTP Range GET).

    Reads are rounded up to ``block`` bytes and the last few blocks are cached, so
    h5py's small metadata reads do not each cost a request.
    """

    def __init__(self, read_range: Callable[[int, int], bytes], size: int, *, block: int = 256 * 1024) -> None:
        self.read_range, self.size, self.block = read_range, size, block
        self.pos = 0
        self.requests = 0
        self._cache: dict[int, bytes] = {}

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def _block(self, i: int) -> bytes:
        if i not in self._cache:
            if len(self._cache) >= 64:
                self._cache.pop(next(iter(self._cache)))
            start = i * self.block
            self._cache[i] = self.read_range(start, min(start + self.block, self.size) - 1)
            self.requests += 1
        return self._cache[i]

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        n = min(len(view), max(self.size - self.pos, 0))
        done = 0
        while done < n:
            i, off = divmod(self.pos + done, self.block)
            chunk = self._block(i)[off : off + n - done]
            view[done : done + len(chunk)] = chunk
            done += len(chunk)
        self.pos += done
        return done


def storage_file(storage: Storage, key: str) -> RangeFile:
    """A :class:`RangeFile` over one object of ``storage``."""
    return RangeFile(lambda start, end: storage.get_range(key, start, end), storage.stat(key).size)


@lru_cache(maxsize=64)
def _index(storage: Storage, dataset_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    shards = Plan.from_json(storage.get_json(keys.plan(dataset_id))).shards()
    if not shards:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty, []
    indices = np.concatenate([np.asarray(s.indices, dtype=np.int64) for s in shards])
    which = np.concatenate([np.full(len(s.indices), j) for j, s in enumerate(shards)])
    where = np.concatenate([np.arange(len(s.indices)) for s in shards])
    order = np.argsort(indices)
    return indices[order], which[order], where[order], [(s.split, s.shard, s.key) for s in shards]


def sample_indices(storage: Storage, dataset_id: str, shards: set[tuple[str, int]]) -> np.ndarray:
    """Global indices (ascending) of the samples stored in ``shards`` ((split, shard) pairs), from the plan."""
    indices, which, _, planned = _index(storage, dataset_id)
    keep = np.array([(split, shard) in shards for split, shard, _ in planned], dtype=bool)
    return indices[keep[which]] if len(indices) else indices


def locate_sample(storage: Storage, dataset_id: str, index: int) -> tuple[str, int, str, int] | None:
    """(split, shard, key, position in shard) of global sample ``index``, from the plan."""
    sorted_idx, which, where, shards = _index(storage, dataset_id)
    pos = int(np.searchsorted(sorted_idx, index))
    if pos >= len(sorted_idx) or sorted_idx[pos] != index:
        return None
    split, shard, key = shards[int(which[pos])]
    return split, shard, key, int(where[pos])
