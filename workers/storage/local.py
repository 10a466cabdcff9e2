"""Local-folder backend: one file per key under a root directory.

Writes go to a temporary file in the destination directory (name starting with
``TMP_MARKER``), are fsynced, then ``os.replace``-d over the target and the directory
is fsynced: readers see the old file or the new one, never a partial one, and a crash
leaves at most an invisible temporary file behind. Every key is validated and its
resolved path must stay under the root, also through symlinks.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat as stat_module
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from os import PathLike
from pathlib import Path
from typing import IO

from ..errors import InvalidKey, ObjectNotFound, StorageError
from .base import (
    TMP_MARKER, ObjectInfo, Storage, check_range, normalize_prefix, validate_key,
)

__all__ = ["LocalStorage"]

_CHUNK = 1 << 20


class LocalStorage(Storage):
    """Objects stored as files under ``root`` (created if missing)."""

    def __init__(self, root: str | PathLike) -> None:
        root = Path(root)
        if not root.is_absolute():
            raise ValueError(f"LocalStorage root must be an absolute path, got {str(root)!r}")
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()
        self.url = self.root.as_uri()

    # -- paths -----------------------------------------------------------------
    def _path(self, key: str) -> Path:
        """Resolved filesystem path of a validated key, guaranteed to be under root."""
        validate_key(key, backend=self.url)
        path = (self.root / key).resolve()
        if path == self.root or not path.is_relative_to(self.root):
            raise InvalidKey("key resolves outside the storage root", key=key, backend=self.url)
        return path

    def _folder(self, prefix: str) -> tuple[Path, str]:
        folder = normalize_prefix(prefix, backend=self.url)
        return (self._path(folder[:-1]) if folder else self.root), folder

    def _error(self, exc: OSError, key: str, action: str, *, reading: bool = True) -> StorageError:
        missing = (FileNotFoundError, NotADirectoryError, IsADirectoryError)
        if reading and isinstance(exc, missing):
            return ObjectNotFound("no such object", key=key, backend=self.url)
        return StorageError(f"cannot {action}: {exc.strerror or exc}", key=key, backend=self.url,
                            code=errno.errorcode.get(exc.errno or 0))

    # -- writes ----------------------------------------------------------------
    def _atomic_write(self, key: str, chunks: Iterable[bytes]) -> None:
        """Write ``chunks`` to a temp file beside the target, fsync, rename over it.

        Exceptions raised while producing ``chunks`` (the caller's file object)
        propagate unchanged; failures of the storage itself become StorageError.
        In every failure case the temp file is removed and the old object stays.
        """
        path = self._path(key)
        for _ in range(3):  # a concurrent delete may prune the fresh directory once
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.parent / f"{TMP_MARKER}{secrets.token_hex(8)}"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                break
            except FileNotFoundError:
                continue
            except OSError as exc:  # e.g. a parent "folder" is an existing object
                raise self._error(exc, key, "create object", reading=False) from exc
        else:
            raise StorageError("directory vanished during write", key=key, backend=self.url)
        try:
            try:
                with os.fdopen(fd, "wb") as f:
                    for chunk in _source(chunks):
                        f.write(chunk)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except _SourceFailed as failed:
                raise failed.__cause__ from None
            except OSError as exc:
                raise self._error(exc, key, "write object", reading=False) from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        """Atomically store ``data`` (``content_type`` is not recorded locally)."""
        self._atomic_write(key, (data,))

    def put_fileobj(self, key: str, fileobj: IO[bytes], *, content_type: str | None = None) -> None:
        """Atomically store everything read from a binary file object."""
        self._atomic_write(key, iter(lambda: fileobj.read(_CHUNK), b""))

    def put_file(self, key: str, path: str | PathLike, *, content_type: str | None = None) -> None:
        """Atomically store a copy of the local file ``path``."""
        with open(path, "rb") as src:
            self.put_fileobj(key, src)

    # -- reads -----------------------------------------------------------------
    def _open(self, key: str) -> IO[bytes]:
        path = self._path(key)
        try:
            return open(path, "rb")
        except OSError as exc:
            raise self._error(exc, key, "read object") from exc

    def get_bytes(self, key: str) -> bytes:
        """Whole content of the object."""
        with self._open(key) as f:
            return f.read()

    def get_range(self, key: str, start: int, end_inclusive: int) -> bytes:
        """Bytes ``start..end_inclusive``, clipped to the object (b"" past the end)."""
        check_range(start, end_inclusive)
        with self._open(key) as f:
            f.seek(start)
            return f.read(end_inclusive - start + 1)

    def download_file(self, key: str, path: str | PathLike) -> None:
        """Copy the object to ``path`` atomically (temp file + rename)."""
        dest = Path(path)
        tmp = dest.with_name(f"{TMP_MARKER}{dest.name}.{secrets.token_hex(4)}")
        with self._open(key) as src:
            try:
                with open(tmp, "wb") as out:
                    shutil.copyfileobj(src, out, _CHUNK)
                os.replace(tmp, dest)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise

    def stat(self, key: str) -> ObjectInfo:
        """Size, modification time and version tag of the object."""
        path = self._path(key)
        try:
            st = path.stat()
        except OSError as exc:
            raise self._error(exc, key, "stat object") from exc
        if not stat_module.S_ISREG(st.st_mode):
            raise ObjectNotFound("no such object (a folder)", key=key, backend=self.url)
        return ObjectInfo(key=key, size=st.st_size,
                          modified=datetime.fromtimestamp(st.st_mtime, tz=timezone.utc),
                          etag=f"{st.st_mtime_ns:x}-{st.st_size:x}")

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects under the folder ``prefix``, recursively, sorted by key."""
        folder_path, _ = self._folder(prefix)  # validated now, not on first next()
        keys: list[str] = []
        for dirpath, dirnames, filenames in os.walk(folder_path):
            dirnames[:] = [d for d in dirnames if not d.startswith(TMP_MARKER)]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            keys.extend(name if rel == "." else f"{rel}/{name}"
                        for name in filenames if not name.startswith(TMP_MARKER))
        keys.sort()
        return self._stat_each(keys)

    def _stat_each(self, keys: list[str]) -> Iterator[ObjectInfo]:
        for key in keys:
            try:
                yield self.stat(key)  # re-resolves: symlinks leading outside root are skipped
            except (ObjectNotFound, InvalidKey):  # deleted meanwhile, or not a safe file
                continue

    def local_path(self, key: str) -> Path:
        """Filesystem path of the object, for streaming with sendfile/Range support."""
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFound("no such object", key=key, backend=self.url)
        return path

    def presigned_url(self, key: str, expires: int | None = None) -> None:
        """Local objects have no presigned URL; serve :meth:`local_path` instead."""
        validate_key(key, backend=self.url)
        return None

    # -- deletes ---------------------------------------------------------------
    def _prune(self, directory: Path) -> None:
        """Remove now-empty directories from ``directory`` up to (excluding) root."""
        while directory != self.root and directory.is_relative_to(self.root):
            try:
                directory.rmdir()
            except OSError:
                return
            directory = directory.parent

    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error."""
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except IsADirectoryError:
            return  # a folder is not an object
        except OSError as exc:
            if exc.errno in (errno.EISDIR, errno.EPERM) and path.is_dir():
                return
            raise self._error(exc, key, "delete object") from exc
        self._prune(path.parent)

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object under the folder ``prefix`` (not ``""``); return the count."""
        if not prefix:
            raise InvalidKey("delete_prefix needs a non-empty prefix", key=prefix, backend=self.url)
        folder_path, _ = self._folder(prefix)
        count = sum(1 for _ in self.list(prefix))
        if not folder_path.is_dir():
            return 0
        try:
            shutil.rmtree(folder_path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self._error(exc, prefix, "delete prefix") from exc
        self._prune(folder_path.parent)
        return count

    def check(self) -> None:
        """Raise StorageError unless the root is a writable directory."""
        if not self.root.is_dir():
            raise StorageError("storage root is not a directory", backend=self.url)
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageError("storage root is not writable", backend=self.url)


class _SourceFailed(Exception):
    """Marks an exception raised by the caller's data source, not by the storage."""


def _source(chunks: Iterable[bytes]) -> Iterator[bytes]:
    iterator = iter(chunks)
    while True:
        try:
            chunk = next(iterator)
        except StopIteration:
            return
        except Exception as exc:
            raise _SourceFailed from exc
        yield chunk


def _fsync_dir(directory: Path) -> None:
    """Persist a rename: fsync the directory entry (best effort where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
