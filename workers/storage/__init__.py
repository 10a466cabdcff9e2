"""Object storage for dataset files: one protocol, two backends, chosen by URL.

``open_storage("file:///srv/pdeforge-data")`` gives a :class:`LocalStorage` (the API
streams its files with Range support via :meth:`~LocalStorage.local_path`);
``open_storage("s3://bucket/prefix", endpoint_url=...)`` gives an :class:`S3Storage`
for AWS S3, MinIO or SeaweedFS (the API hands out :meth:`~S3Storage.presigned_url`).

Both implement :class:`Storage`:

=============================================  ==========================================
``put_bytes / put_file / put_fileobj``         atomic writes; multipart on S3 when large
``put_json / get_json``                        canonical JSON (sorted keys, compact)
``get_bytes / get_range / download_file``      reads; ``get_range`` is inclusive, clipped
``exists / stat -> ObjectInfo``                ``ObjectInfo(key, size, modified, etag)``
``list(prefix) -> Iterator[ObjectInfo]``       recursive, sorted by key, folder prefixes
``delete / delete_prefix -> count``            idempotent delete; prefix must be non-empty
``presigned_url / local_path``                 str | None / Path | None by backend
``url / check()``                              identity and readiness probe
=============================================  ==========================================

Keys are relative POSIX paths checked by :func:`validate_key`; errors come from
:mod:`pdeforge.workers.errors` (``ObjectNotFound``, ``InvalidKey``, ``TransientStorageError``...).
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from .base import ObjectInfo, Storage, canonical_json, guess_content_type, normalize_prefix, validate_key
from .local import LocalStorage

__all__ = [
    "SCHEMES",
    "LocalStorage",
    "ObjectInfo",
    "S3Storage",
    "Storage",
    "canonical_json",
    "guess_content_type",
    "normalize_prefix",
    "open_storage",
    "validate_key",
]

SCHEMES = ("file", "s3")


def __getattr__(name: str):
    # the S3 backend needs boto3 (the service extra): imported only when asked for
    if name == "S3Storage":
        from .s3 import S3Storage

        return S3Storage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_storage(url: str, **s3_options) -> Storage:
    """The storage named by ``url``: ``file:///abs/path`` or ``s3://bucket[/prefix]``.

    ``s3_options`` (``endpoint_url``, ``access_key``, ``secret_key``, ``region``,
    ``presign_expiry``, ``multipart_threshold``, ``max_attempts``, ``connect_timeout``,
    ``read_timeout``, ``public_endpoint_url``) go to :class:`S3Storage`, whose
    signature holds their defaults; they are ignored for local folders.  Raises
    ValueError for a malformed URL.
    """
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ValueError(f"storage URL must not have a query or fragment: {url!r}")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"file URL must be file:///absolute/path, got {url!r}")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise ValueError(f"file URL must hold an absolute path, got {url!r}")
        return LocalStorage(path)
    if parts.scheme == "s3":
        if not parts.netloc or "@" in parts.netloc or ":" in parts.netloc:
            raise ValueError(f"S3 URL must be s3://bucket[/prefix], got {url!r}")
        from .s3 import S3Storage

        return S3Storage(parts.netloc, unquote(parts.path).strip("/"), **s3_options)
    raise ValueError(f"unknown storage URL scheme {parts.scheme!r} in {url!r}; "
                     f"valid schemes: {', '.join(SCHEMES)}")
