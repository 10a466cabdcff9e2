"""Domain errors -> HTTP, in one place; no stack traces in responses.

================================  ======  =====================================================
error                             status  when
================================  ======  =====================================================
``RequestValidationError``        422     spec or query invalid: each bad field, value, range
``LimitExceeded``                 413     job over a configured limit (the limit is stated)
``JobNotFound``, ``BatchNotFound`` 404     unknown job / dataset / batch
``DatasetNotReady``               409     dataset requested before its manifest exists
``JobConflict``                   409     e.g. deleting a dataset whose job is running
``InvalidKey``                    404     download path outside the dataset (traversal)
``ObjectNotFound``                404     file not in storage
``StorageError``, Redis errors    503     a backing service is unreachable or refused
================================  ======  =====================================================
"""

from __future__ import annotations

import logging
import math
import re

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from pdeforge.workers.errors import BatchNotFound, InvalidKey, JobConflict, JobNotFound, ObjectNotFound, StorageError
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
