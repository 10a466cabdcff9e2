"""The storage interface, object metadata, key validation, canonical JSON and the backends' defaults."""

from __future__ import annotations

import json
import mimetypes
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from os import PathLike
from pathlib import Path
from typing import IO, Any

from ..errors import InvalidKey, ObjectNotFound

__all__ = [
    "ObjectInfo",
    "Storage",
    "TMP_MARKER",
    "validate_key",
    "normalize_prefix",
    "canonical_json",
    "guess_content_type",
]

#: Segments starting with this are reserved for in-flight temporary files of the
#: local backend; such keys are rejected and such files are never listed.
TMP_MARKER = ".~tmp~"

#: S3's limit on the UTF-8 length of a key (the storage's own prefix included).
MAX_KEY_BYTES = 1024

#: Defaults of the S3 backend (also the defaults of the matching settings).
S3_REGION = "us-east-1"
PRESIGN_EXPIRY = 3600  # seconds a presigned download URL stays valid
MAX_PRESIGN_EXPIRY = 7 * 24 * 3600  # SigV4's limit


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """Metadata of one stored object.

    ``etag`` is an opaque version tag that changes when the object is rewritten (the
    S3 ETag without quotes; ``<mtime_ns>-<size>`` in hex for local files). It is not
    a content hash: multipart S3 uploads have ETags like ``"<md5-of-md5s>-3"``.
    """

    key: str
    size: int
    modified: datetime  # timezone-aware, UTC
    etag: str | None = None


def validate_key(key: str, *, backend: str | None = None) -> str:
    """Return ``key`` if it is a safe relative POSIX path, else raise InvalidKey.

    Rejected: non-strings, empty keys, absolute paths, empty segments (``a//b``,
    trailing ``/``), ``.`` and ``..`` segments, backslashes, NUL and other control
    characters, the reserved temporary-file marker, and keys over 1024 UTF-8 bytes.
    """
    if not isinstance(key, str):
        raise InvalidKey(f"key must be a str, not {type(key).__name__}", backend=backend)

    def bad(why: str) -> InvalidKey:
        return InvalidKey(f"invalid key: {why}", key=key, backend=backend)

    if not key:
        raise bad("empty")
    if any(ord(c) < 0x20 or c == "\x7f" for c in key):
        raise bad("contains NUL or a control character")
    if "\\" in key:
        raise bad("contains a backslash")
    if key.startswith("/"):
        raise bad("absolute path")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise bad(f"longer than {MAX_KEY_BYTES} bytes")
    for segment in key.split("/"):
        if segment == "":
            raise bad("empty path segment")
        if segment in (".", ".."):
            raise bad(f"'{segment}' segment")
        if segment.startswith(TMP_MARKER):
            raise bad(f"segment starts with the reserved marker {TMP_MARKER!r}")
    return key


def normalize_prefix(prefix: str, *, backend: str | None = None) -> str:
    """Validate a folder prefix; return ``""`` or the folder with one trailing ``/``."""
    if prefix == "":
        return ""
    if not isinstance(prefix, str):
        raise InvalidKey(f"prefix must be a str, not {type(prefix).__name__}", backend=backend)
    stripped = prefix[:-1] if prefix.endswith("/") else prefix
    try:
        validate_key(stripped, backend=backend)
    except InvalidKey as exc:
        raise InvalidKey(exc.message.replace("key", "prefix", 1), key=prefix, backend=backend) from None
    return stripped + "/"


def canonical_json(obj: Any) -> bytes:
    """Deterministic UTF-8 JSON: sorted keys, compact separators, no NaN/Infinity."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def guess_content_type(key: str) -> str:
    """MIME type from the key's extension; HDF5 and unknown types are binary."""
    if key.endswith((".h5", ".hdf5")):
        return "application/x-hdf5"
    return mimetypes.guess_type(key, strict=False)[0] or "application/octet-stream"


def check_range(start: int, end_inclusive: int) -> None:
    if start < 0 or end_inclusive < start:
        raise ValueError(f"invalid byte range {start}-{end_inclusive}: need 0 <= start <= end")


class Storage(ABC):
    """Flat key -> bytes object store shared by workers and the API (the one storage interface).

    Keys are relative POSIX paths (``datasets/7/data/train/shard_00000.h5``). Writes
    are atomic: a reader sees the old object, the new one, or no object -- never a
    partial one. A ``prefix`` names a folder: ``list("datasets/7")`` yields keys under
    ``datasets/7/`` and never ``datasets/70/...``; ``""`` means everything.

    Backends implement the abstract primitives; ``exists``, ``put_json`` and ``get_json``
    are written here once, against them.
    """

    url: str

    # ----- writes ---------------------------------------------------------------------------
    @abstractmethod
    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> None: ...

    @abstractmethod
    def put_file(self, key: str, path: str | PathLike, *, content_type: str | None = None) -> None: ...

    @abstractmethod
    def put_fileobj(self, key: str, fileobj: IO[bytes], *, content_type: str | None = None) -> None: ...

    # ----- reads ----------------------------------------------------------------------------
    @abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def get_range(self, key: str, start: int, end_inclusive: int) -> bytes: ...

    @abstractmethod
    def download_file(self, key: str, path: str | PathLike) -> None: ...

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo: ...

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

    # ----- deletes, links, health -------------------------------------------------------------
    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int: ...

    @abstractmethod
    def presigned_url(self, key: str, expires: int | None = None) -> str | None: ...

    @abstractmethod
    def local_path(self, key: str) -> Path | None: ...

    @abstractmethod
    def check(self) -> None: ...

    # ----- shared helpers ---------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        """True if an object exists under ``key`` (folders are not objects)."""
        try:
            self.stat(key)
        except ObjectNotFound:
            return False
        return True

    def put_json(self, key: str, obj: Any) -> None:
        """Store ``obj`` as canonical JSON (see :func:`canonical_json`)."""
        self.put_bytes(key, canonical_json(obj), content_type="application/json")

    def get_json(self, key: str) -> Any:
        """Load a JSON object stored under ``key``."""
        return json.loads(self.get_bytes(key))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
