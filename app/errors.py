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
``DatasetNotReady``               409     ``dataset_not_ready``   dataset requested before its
                                                                  manifest exists
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
import math
import re

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from pdeforge.workers.errors import (BatchNotFound, InvalidKey, JobConflict, JobNotFound, ObjectNotFound,
                                     QuotaExceeded, StorageError)
from pdeforge.workers.jobs import LimitExceeded

log = logging.getLogger("pdeforge.api")

_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


class DatasetNotReady(Exception):
    """The dataset exists as a job but has no manifest yet."""


_NAMED = re.compile(r"^([A-Za-z_][\w.]*)=(\S+) ")


def _field(loc) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path"):
        parts = parts[1:]
    tags = _family_tags()
    # the discriminator tag of the spec union: at the top (one spec) or after a list index (a batch)
    parts = [p for i, p in enumerate(parts) if not (p in tags and (i == 0 or parts[i - 1].isdigit()))]
    return ".".join(p for p in parts if not p.startswith("function-"))


def _json_safe(value):
    """The echoed input as JSON: non-finite floats (``1e999``, ``NaN``) and other types as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def validation_details(errors) -> list[dict]:
    """Each error as {field, value, message, allowed?}, naming the parameter and its range."""
    out = []
    for err in errors:
        ctx = err.get("ctx") or {}
        msg = err["msg"].removeprefix("Value error, ")
        loc = err.get("loc", ())
        field, value = _field(loc), err.get("input")
        allowed = " and ".join(f"{op} {ctx[k]}" for k, op in _BOUNDS.items() if k in ctx)
        named = _NAMED.match(msg)
        if named:  # a cross-field rule names its parameter: "k_max=500.0 is out of range; allowed: ..."
            name = named.group(1)
            field = name if not field or name.startswith(field + ".") else f"{field}.{name}"
            value = named.group(2).rstrip(";,")
        if err.get("type") in ("union_tag_invalid", "union_tag_not_found"):  # unknown or missing family
            tag = str(ctx.get("discriminator", "family")).strip("'")
            field = f"{field}.{tag}" if field else tag
            value = ctx.get("tag")
            allowed = f"one of {ctx.get('expected_tags') or ', '.join(map(repr, _family_tags()))}"
        elif err.get("type") == "json_invalid":  # loc is ("body", character offset)
            field, value = "body", None
            msg = f"{msg}: {ctx.get('error', 'invalid JSON')} (at character {loc[-1] if loc else 0})"
        item = {"field": field or "body", "value": _json_safe(value), "message": msg}
        if "expected" in ctx:
            allowed = f"one of {ctx['expected']}"
        elif "allowed:" in msg:
            allowed = msg.split("allowed:", 1)[1].strip()
        if allowed:
            item["allowed"] = allowed
        out.append(item)
    return out


def _family_tags() -> tuple[str, ...]:
    from pdeforge.solvers.families import FAMILIES

    return tuple(FAMILIES)


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
