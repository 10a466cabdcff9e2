"""Domain errors -> HTTP, in one place; no stack traces in responses.

================================  ======  =====================================================
error                             status  when
================================  ======  =====================================================
``RequestValidationError``        422     spec or query invalid: each bad field, value, range
``LimitExceeded``                 413     job over a configured limit (the limit is stated)
``JobNotFound``, ``BatchNotFound`` 404     unknown job / dataset / batch
``DatasetNotReady``               409     a file or sample whose shard is not finished yet
``JobConflict``                   409     e.g. deleting a dataset whose job is running
``InvalidKey``                    404     download path outside the dataset (traversal)
``ObjectNotFound``                404     file not in storage
``StorageError``, Redis errors    503     a backing service is unreachable or refused
================================  ======  =====================================================
"""

from __future__ import annotations

import logging

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from pdeforge.workers.errors import (BatchNotFound, DatasetNotReady, InvalidKey, JobConflict, JobNotFound,
                                     ObjectNotFound, StorageError)
from pdeforge.workers.jobs import LimitExceeded
from pdeforge.workers.validation import validation_details

log = logging.getLogger("pdeforge.api")


def install(app: FastAPI) -> None:
    def problem(status: int, message: str, **extra) -> JSONResponse:
        return JSONResponse({"detail": message, **extra}, status_code=status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        details = validation_details(exc.errors())
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details)
        return problem(422, f"invalid request: {summary}", errors=details)

    @app.exception_handler(LimitExceeded)
    async def _limit(request: Request, exc: LimitExceeded):
        return problem(413, str(exc), field=exc.field, limit=exc.limit)

    @app.exception_handler(JobNotFound)
    @app.exception_handler(BatchNotFound)
    async def _missing(request: Request, exc: JobNotFound | BatchNotFound):
        return problem(404, str(exc))

    @app.exception_handler(ObjectNotFound)
    async def _no_object(request: Request, exc: ObjectNotFound):
        return problem(404, "file not found")

    @app.exception_handler(InvalidKey)
    async def _bad_key(request: Request, exc: InvalidKey):
        return problem(404, "file not found (invalid path)")

    @app.exception_handler(DatasetNotReady)
    async def _not_ready(request: Request, exc: DatasetNotReady):
        return problem(409, str(exc))

    @app.exception_handler(JobConflict)
    async def _conflict(request: Request, exc: JobConflict):
        return problem(409, str(exc))

    @app.exception_handler(StorageError)
    async def _storage(request: Request, exc: StorageError):
        log.warning("storage error: %s", exc)
        return problem(503, "object storage unavailable, try again later")

    @app.exception_handler(redis.RedisError)
    async def _redis(request: Request, exc: redis.RedisError):
        log.warning("redis error: %s", exc)
        return problem(503, "job store (Redis) unavailable, try again later")

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "internal error")
