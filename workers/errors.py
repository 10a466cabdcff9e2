"""Exceptions raised by the workers package.

The tree::

    WorkerError(Exception)                      base of everything raised by workers/
    └── StorageError                            object storage failed (auth, bucket, I/O)
        ├── TransientStorageError               retryable: connection errors, timeouts,
        │                                       5xx, throttling (SlowDown, 429)
        ├── ObjectNotFound(…, KeyError)         no object under that key
        └── InvalidKey(…, ValueError)           key or prefix is not a safe relative
                                                POSIX path (``..``, absolute, ``\\``, NUL)
    └── JobError                                a dataset job cannot proceed
        ├── JobCancelled                        the job's cancel flag was seen between samples
        ├── JobNotFound(…, KeyError)            no such job in Redis nor dataset in storage
        ├── BatchNotFound(…, KeyError)          no such batch
        ├── JobConflict                         the request conflicts with the job's state
        ├── DatasetNotReady                     a file or sample that is not finished yet
        ├── QuotaExceeded                       the principal's quota (active jobs, samples) is used up
        ├── LeaseLost                           another delivery took over the unit (this one stops)
        └── PoisonShard                         a shard was delivered more than max_attempts times

Errors carry context as attributes (``key``, ``backend`` -- the storage URL -- and
``code``, the server's error code when there is one) so that ``app/`` can map them
to HTTP status codes in one handler and Celery can decide whether to retry
(:func:`is_transient`). The underlying library exception is kept as ``__cause__``.

:func:`public_message` is the one place that turns an exception into the text a client may
see (a job's ``error``): no traceback, no server path.
"""

from __future__ import annotations

import errno
import re

__all__ = [
    "WorkerError",
    "StorageError",
    "TransientStorageError",
    "ObjectNotFound",
    "InvalidKey",
    "JobError",
    "JobCancelled",
    "JobNotFound",
    "BatchNotFound",
    "JobConflict",
    "DatasetNotReady",
    "PoisonShard",
    "QuotaExceeded",
    "LeaseLost",
    "is_transient",
    "public_message",
]


class WorkerError(Exception):
    """Base class of every error raised by the workers package."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:  # KeyError subclasses would otherwise repr() the message
        return self.message

    def __reduce__(self):
        # Keep keyword context across pickling (Celery ships exceptions between processes).
        return (self.__class__, (self.message,), self.__dict__)


class StorageError(WorkerError):
    """An object-storage operation failed.

    Attributes: ``key`` (the key or prefix involved, if any), ``backend`` (URL of the
    storage, e.g. ``s3://bucket/prefix``; never contains credentials) and ``code``
    (server error code such as ``AccessDenied``, if any).
    """

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        backend: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.key = key
        self.backend = backend
        self.code = code

    def __str__(self) -> str:
        parts = [f"{name}={value!r}" for name, value in
                 (("key", self.key), ("backend", self.backend), ("code", self.code))
                 if value is not None]
        return f"{self.message} ({', '.join(parts)})" if parts else self.message


class TransientStorageError(StorageError):
    """A storage failure that is worth retrying (network, timeout, 5xx, throttling)."""


class ObjectNotFound(StorageError, KeyError):
    """No object exists under the key."""


class InvalidKey(StorageError, ValueError):
    """The key or prefix is not a valid, safe object key."""


class JobError(WorkerError):
    """A dataset job cannot proceed (``job_id`` names it)."""

    def __init__(self, message: str, *, job_id: str | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class JobCancelled(JobError):
    """The job was cancelled; raised between samples to stop a shard cooperatively."""


class JobNotFound(JobError, KeyError):
    """Neither Redis nor object storage knows the job / dataset."""


class BatchNotFound(JobError, KeyError):
    """No batch with that id."""


class JobConflict(JobError):
    """The request conflicts with the job's current state (e.g. deleting a running job's dataset)."""


class DatasetNotReady(JobError):
    """The dataset (or the shard holding a sample) is not finished yet."""


class PoisonShard(JobError):
    """A shard crashed its worker (or timed out) more often than allowed."""


class QuotaExceeded(JobError):
    """The principal's quota is used up; ``quota`` names it (``jobs`` or ``samples``), ``limit`` its value."""

    def __init__(self, message: str, *, quota: str, limit: int, used: float) -> None:
        super().__init__(message)
        self.quota, self.limit, self.used = quota, limit, used


class LeaseLost(JobError):
    """Another delivery holds the unit's lease now; this one stops without writing anything."""


#: errno values of a full or read-only disk: they clear when space is freed or the disk remounted
#: full, over-quota or read-only disks, and EIO (a write lost under a full disk shows as a shard that does not
#: read back as written): retried later, failed after ``transient_retries``
TRANSIENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})
_TRANSIENT_CODES = frozenset(errno.errorcode[e] for e in TRANSIENT_ERRNOS)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is worth retrying later: a transient storage error, or a full / read-only disk
    (a local-storage :class:`StorageError` with that code, or the ``OSError`` itself)."""
    if isinstance(exc, TransientStorageError):
        return True
    if isinstance(exc, StorageError) and exc.code in _TRANSIENT_CODES:
        return True
    return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS


_PATH = re.compile(r"(?<![\w.:/~-])(?:~|[A-Za-z]:)?/(?:[^\s'\",:;()\[\]/]+/?)+")


def public_message(exc: BaseException | str, *, limit: int = 500) -> str:
    """One line a client may see: the exception's type and message with every absolute path replaced
    by ``<path>`` and nothing after the first line (no traceback)."""
    text = exc if isinstance(exc, str) else (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    first = text.strip().splitlines()[0] if text.strip() else ""
    return _PATH.sub("<path>", first)[:limit]
