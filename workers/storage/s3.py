"""S3 backend (AWS S3, MinIO, SeaweedFS) on boto3.

Objects appear atomically on S3: a PUT, or a multipart upload's final
CompleteMultipartUpload, publishes the whole object at once, and boto3's transfer
manager aborts the multipart upload when a part fails. Files at or above
``multipart_threshold`` go through ``upload_file``/``upload_fileobj`` in parts.

botocore errors are translated into the ``pdeforge.workers.errors`` tree:

=====================================================  ========================
connection refused/reset, timeouts, 5xx, 429,           TransientStorageError
SlowDown/Throttling/RequestTimeout
404, NoSuchKey, NotFound                               ObjectNotFound
anything else (403 AccessDenied, SignatureDoesNotMatch,  StorageError
InvalidAccessKeyId, NoSuchBucket, missing credentials)
=====================================================  ========================
"""

from __future__ import annotations

import io
import os
from datetime import timezone
from collections.abc import Iterator
from contextlib import contextmanager
from os import PathLike
from pathlib import Path
from typing import IO, Any

import boto3
import botocore.exceptions as bce
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from ..errors import InvalidKey, ObjectNotFound, StorageError, TransientStorageError
from .base import (
    MAX_PRESIGN_EXPIRY, PRESIGN_EXPIRY, S3_REGION, ObjectInfo, Storage, check_range, guess_content_type,
    normalize_prefix, validate_key,
)

__all__ = ["S3Storage", "translate_error"]

MiB = 1 << 20
_MIN_PART = 5 * MiB  # S3's smallest allowed part (except the last)

_TRANSIENT_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "ThrottledException",
    "RequestThrottled", "RequestThrottledException", "TooManyRequestsException",
    "RequestLimitExceeded", "BandwidthLimitExceeded", "ProvisionedThroughputExceededException",
    "RequestTimeout", "RequestTimeoutException", "InternalError", "ServiceUnavailable",
    "OperationAborted",
})
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it wraps (boto3's S3UploadFailedError only keeps the
    ClientError as ``__context__``; s3transfer's RetriesExceededError as ``last_exception``)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = (current.__cause__ or current.__context__
                   or getattr(current, "last_exception", None))


def translate_error(exc: BaseException, *, key: str | None = None,
                    backend: str | None = None) -> StorageError | None:
    """The StorageError matching a boto3/botocore exception, or None if it is not one."""
    for cause in _causes(exc):
        if isinstance(cause, bce.ClientError):
            error = cause.response.get("Error", {})
            code = str(error.get("Code") or "") or None
            status = cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            text = f"S3 {cause.operation_name} failed: {error.get('Message') or code or status}"
            if code in _NOT_FOUND_CODES or (status == 404 and code != "NoSuchBucket"):
                return ObjectNotFound("no such object", key=key, backend=backend, code=code)
            if code in _TRANSIENT_CODES or status == 429 or (status or 0) >= 500:
                return TransientStorageError(text, key=key, backend=backend, code=code)
            return StorageError(text, key=key, backend=backend, code=code)
        if isinstance(cause, (bce.ConnectionError, bce.HTTPClientError)):
            # EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError,
            # ConnectionClosedError, ResponseStreamingError (body cut mid-read)...
            return TransientStorageError(f"S3 unreachable: {cause}", key=key, backend=backend)
        if isinstance(cause, bce.BotoCoreError):  # NoCredentialsError, ParamValidationError...
            return StorageError(f"S3 client error: {cause}", key=key, backend=backend)
    return None


class S3Storage(Storage):
    """Objects under ``s3://bucket/prefix`` on AWS S3 or a compatible server.

    ``endpoint_url`` points at MinIO/SeaweedFS (None for AWS); credentials default to
    boto3's chain (environment, config files, instance role). ``max_attempts``,
    ``connect_timeout`` and ``read_timeout`` tune botocore's "standard" retry mode.
    """

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 access_key: str | None = None, secret_key: str | None = None,
                 region: str = S3_REGION, presign_expiry: int = PRESIGN_EXPIRY,
                 multipart_threshold: int = 8 * MiB, max_attempts: int = 5,
                 connect_timeout: float = 10.0, read_timeout: float = 60.0,
                 public_endpoint_url: str | None = None) -> None:
        if not bucket:
            raise ValueError("S3Storage needs a bucket name")
        if not 1 <= presign_expiry <= MAX_PRESIGN_EXPIRY:
            raise ValueError(f"presign_expiry must be in [1, {MAX_PRESIGN_EXPIRY}] s, got {presign_expiry}")
        self.bucket = bucket
        self.url = f"s3://{bucket}/{prefix.strip('/')}".rstrip("/")
        self.prefix = normalize_prefix(prefix.strip("/"), backend=self.url)
        self.endpoint_url = endpoint_url
        self.region = region
        self.presign_expiry = presign_expiry
        self.transfer_config = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=max(multipart_threshold, _MIN_PART),
            max_concurrency=4,
        )
        self._client_args: dict[str, Any] = dict(
            endpoint_url=endpoint_url,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"max_attempts": max_attempts, "mode": "standard"},
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
            ),
        )
        self._session_args = dict(aws_access_key_id=access_key,
                                  aws_secret_access_key=secret_key, region_name=region)
        self._client: Any = None
        self._client_pid: int | None = None
        # presigned URLs for clients outside the service network (e.g. MinIO inside compose)
        self.public_endpoint_url = public_endpoint_url
        self._presigner: Any = None

    def __repr__(self) -> str:
        return f"S3Storage({self.url!r}, endpoint_url={self.endpoint_url!r})"

    @property
    def client(self) -> Any:
        """The boto3 S3 client, re-created in a forked child (e.g. a Celery worker)."""
        if self._client_pid != os.getpid():
            session = boto3.session.Session(**self._session_args)
            self._client = session.client("s3", **self._client_args)
            self._client_pid = os.getpid()
        return self._client

    # -- helpers ---------------------------------------------------------------
    def _key(self, key: str) -> str:
        return self.prefix + validate_key(key, backend=self.url)

    @contextmanager
    def _translated(self, key: str | None):
        try:
            yield
        except StorageError:
            raise
        except Exception as exc:
            error = translate_error(exc, key=key, backend=self.url)
            if error is None:
                raise  # not from S3, e.g. the caller's file object failed
            raise error from exc

    def _extra(self, key: str, content_type: str | None) -> dict[str, str]:
        return {"ContentType": content_type or guess_content_type(key)}

    # -- writes ----------------------------------------------------------------
    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        """Store ``data`` (multipart at or above the threshold)."""
        if len(data) >= self.transfer_config.multipart_threshold:
            self.put_fileobj(key, io.BytesIO(data), content_type=content_type)
            return
        full = self._key(key)
        with self._translated(key):
            self.client.put_object(Bucket=self.bucket, Key=full, Body=bytes(data),
                                   **self._extra(key, content_type))

    def put_fileobj(self, key: str, fileobj: IO[bytes], *, content_type: str | None = None) -> None:
        """Store everything read from a binary file object (multipart when large)."""
        full = self._key(key)
        with self._translated(key):
            self.client.upload_fileobj(fileobj, self.bucket, full, Config=self.transfer_config,
                                       ExtraArgs=self._extra(key, content_type))

    def put_file(self, key: str, path: str | PathLike, *, content_type: str | None = None) -> None:
        """Upload the local file ``path`` (multipart when large)."""
        full = self._key(key)
        with self._translated(key):
            self.client.upload_file(os.fspath(path), self.bucket, full, Config=self.transfer_config,
                                    ExtraArgs=self._extra(key, content_type))

    # -- reads -----------------------------------------------------------------
    def get_bytes(self, key: str) -> bytes:
        """Whole content of the object."""
        full = self._key(key)
        with self._translated(key):
            return self.client.get_object(Bucket=self.bucket, Key=full)["Body"].read()

    def get_range(self, key: str, start: int, end_inclusive: int) -> bytes:
        """Bytes ``start..end_inclusive``, clipped to the object (b"" past the end)."""
        check_range(start, end_inclusive)
        full = self._key(key)
        with self._translated(key):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=full,
                                                  Range=f"bytes={start}-{end_inclusive}")
            except bce.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                    self.stat(key)  # 416 on a missing key would be a server bug; be sure
                    return b""
                raise
            return response["Body"].read()

    def download_file(self, key: str, path: str | PathLike) -> None:
        """Download to ``path`` (boto3 writes a temp file and renames it)."""
        full = self._key(key)
        with self._translated(key):
            self.client.download_file(self.bucket, full, os.fspath(path), Config=self.transfer_config)

    def stat(self, key: str) -> ObjectInfo:
        """Size, modification time and ETag of the object."""
        full = self._key(key)
        with self._translated(key):
            head = self.client.head_object(Bucket=self.bucket, Key=full)
        return ObjectInfo(key=key, size=head["ContentLength"],
                          modified=head["LastModified"].astimezone(timezone.utc),
                          etag=head.get("ETag", "").strip('"') or None)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects under the folder ``prefix``, recursively, sorted by key.

        The listing is collected and sorted client-side: SeaweedFS lists in directory
        walk order (``a/b/c`` before ``a/b.txt``), not in S3's UTF-8 byte order.
        """
        folder = normalize_prefix(prefix, backend=self.url)
        found: list[ObjectInfo] = []
        with self._translated(prefix or None):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + folder)
            for page in pages:
                for item in page.get("Contents", ()):
                    key = item["Key"][len(self.prefix):]
                    try:
                        validate_key(key)
                    except StorageError:  # folder markers ("x/") and foreign keys
                        continue
                    found.append(ObjectInfo(key=key, size=item["Size"],
                                            modified=item["LastModified"].astimezone(timezone.utc),
                                            etag=item.get("ETag", "").strip('"') or None))
        found.sort(key=lambda info: info.key)
        return iter(found)

    def local_path(self, key: str) -> Path | None:
        """S3 objects have no local path; use :meth:`presigned_url`."""
        validate_key(key, backend=self.url)
        return None

    def presigned_url(self, key: str, expires: int | None = None) -> str:
        """A GET URL valid for ``expires`` seconds (default ``presign_expiry``).

        Signing is offline: the URL is returned even if the object does not exist.
        """
        expires = self.presign_expiry if expires is None else int(expires)
        if not 1 <= expires <= MAX_PRESIGN_EXPIRY:
            raise ValueError(f"expires must be in [1, {MAX_PRESIGN_EXPIRY}] s, got {expires}")
        full = self._key(key)
        signer = self.client
        if self.public_endpoint_url:
            if self._presigner is None:  # signing is offline: this client never connects
                session = boto3.session.Session(**self._session_args)
                self._presigner = session.client("s3", **{**self._client_args,
                                                          "endpoint_url": self.public_endpoint_url})
            signer = self._presigner
        with self._translated(key):
            return signer.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": full}, ExpiresIn=expires)

    # -- deletes ---------------------------------------------------------------
    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error."""
        full = self._key(key)
        with self._translated(key):
            self.client.delete_object(Bucket=self.bucket, Key=full)

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object under the folder ``prefix`` (not ``""``); return the count."""
        if not prefix:
            raise InvalidKey("delete_prefix needs a non-empty prefix", key=prefix, backend=self.url)
        keys = [self.prefix + info.key for info in self.list(prefix)]
        with self._translated(prefix):
            for i in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
                response = self.client.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})
                if errors := response.get("Errors"):
                    first = errors[0]
                    raise StorageError(
                        f"S3 DeleteObjects failed for {len(errors)} key(s): {first.get('Message')}",
                        key=first.get("Key"), backend=self.url, code=first.get("Code"))
        return len(keys)

    def check(self) -> None:
        """Raise StorageError unless the bucket is reachable with these credentials."""
        with self._translated(None):
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except bce.ClientError as exc:
                error = translate_error(exc, backend=self.url)
                if isinstance(error, ObjectNotFound):
                    raise StorageError(f"bucket {self.bucket!r} does not exist", backend=self.url,
                                       code="NoSuchBucket") from exc
                raise
