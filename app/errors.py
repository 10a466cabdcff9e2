"""Domain errors -> HTTP, in one place; no stack traces or server paths in responses.

Every error body is ``{"detail": message, "code": machine-readable code, ...}``:

================================  ======  ======================  ================================
error                             status  code                    when
================================  ======  ======================  ================================
``RequestValidationError``        422     ``validation_error``    spec or query invalid: each bad
                                                                  field, value, range (``errors``)
``LimitExceeded``                 413     ``limit_exceeded``      job over a configured limit
                                                                  (``field``, ``limit`` stated)
``QuotaExceeded``                 429     ``quota_exceeded``      the caller's quota is used up
``JobNotFound``, ``BatchNotFound`` 404     ``not_found``           unknown (or another principal's)
                                                                  job / dataset / batch
``DatasetNotReady``               409     ``dataset_not_ready``   a file or sample whose shard is
                                                                  not finished yet
``JobConflict``                   409     ``conflict``            e.g. deleting a running job's data
``InvalidKey``, ``ObjectNotFound`` 404     ``not_found``           download path outside the dataset
                                                                  or file not in storage
``StorageError``                  503     ``storage_unavailable`` object storage unreachable
Redis errors                      503     ``store_unavailable``   the job store is unreachable
``HTTPException``                 its     by status (:data:`CODES`)
anything else                     500     ``internal_error``      a bug (logged, never shown)
================================  ======  ======================  ================================

401 / 403 (``unauthorized`` / ``forbidden``) come from :mod:`pdeforge.app.auth`, 408 and 413
for request bodies from :class:`pdeforge.app.main.BodyGuard`, before the app runs.
"""

from __future__ import annotations

import logging

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pdeforge.workers.errors import (BatchNotFound, DatasetNotReady, InvalidKey, JobConflict, JobNotFound,
                                     ObjectNotFound, QuotaExceeded, StorageError)
from pdeforge.workers.jobs import LimitExceeded
from pdeforge.workers.validation import validation_details

log = logging.getLogger("pdeforge.api")


#: the code of an error answered with a bare status (``HTTPException``, the auth and body guards)
CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
         408: "request_timeout", 409: "conflict", 413: "limit_exceeded", 415: "unsupported_media_type",
         416: "range_not_satisfiable", 422: "validation_error", 429: "quota_exceeded", 500: "internal_error",
         503: "unavailable"}


def problem(status: int, code: str, message: str, headers: dict | None = None, **extra) -> JSONResponse:
    """The one error body: ``{"detail", "code", ...extra}``."""
    return JSONResponse({"detail": message, "code": code, **extra}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        details = validation_details(exc.errors())
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details)
        return problem(422, "validation_error", f"invalid request: {summary}", errors=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        return problem(exc.status_code, CODES.get(exc.status_code, "error"), detail, headers=exc.headers)

    @app.exception_handler(LimitExceeded)
    async def _limit(request: Request, exc: LimitExceeded):
        return problem(413, "limit_exceeded", str(exc), field=exc.field, limit=exc.limit)

    @app.exception_handler(QuotaExceeded)
    async def _quota(request: Request, exc: QuotaExceeded):
        return problem(429, "quota_exceeded", str(exc), quota=exc.quota, limit=exc.limit, used=exc.used,
                       headers={"Retry-After": "60"})

    @app.exception_handler(JobNotFound)
    @app.exception_handler(BatchNotFound)
    async def _missing(request: Request, exc: JobNotFound | BatchNotFound):
        return problem(404, "not_found", str(exc))

    @app.exception_handler(ObjectNotFound)
    async def _no_object(request: Request, exc: ObjectNotFound):
        return problem(404, "not_found", "file not found")

    @app.exception_handler(InvalidKey)
    async def _bad_key(request: Request, exc: InvalidKey):
        return problem(404, "not_found", "file not found (invalid path)")

    @app.exception_handler(DatasetNotReady)
    async def _not_ready(request: Request, exc: DatasetNotReady):
        return problem(409, "dataset_not_ready", str(exc))

    @app.exception_handler(JobConflict)
    async def _conflict(request: Request, exc: JobConflict):
        return problem(409, "conflict", str(exc))

    @app.exception_handler(StorageError)
    async def _storage(request: Request, exc: StorageError):
        log.warning("storage error: %s", exc)
        return problem(503, "storage_unavailable", "object storage unavailable, try again later",
                       headers={"Retry-After": "5"})

    @app.exception_handler(redis.RedisError)
    async def _redis(request: Request, exc: redis.RedisError):
        log.warning("redis error: %s", exc)
        return problem(503, "store_unavailable", "job store (Redis) unavailable, try again later",
                       headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "internal_error", "internal error")
