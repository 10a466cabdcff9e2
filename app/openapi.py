"""The OpenAPI contract states what the server enforces (built once per app, then cached).

On top of FastAPI's document:

* the configured limits (``PDEFORGE_MAX_*``) are written into the spec schemas (``samples``
  maximum, ``grid.n`` maximum for 2-D, the memory rule on ``output.shard_samples``) and listed
  under ``info.x-pdeforge-limits``;
* every error answer is declared with the real body, :class:`~pdeforge.app.schemas.ErrorBody`
  (the 422 included, instead of FastAPI's default shape), and 404 / 408 / 409 / 413 / 429 / 503
  where a route can give them;
* ``Authorization`` (bearer) and the session cookie are declared, and required on ``/v1``,
  only when tokens are configured.
"""

from __future__ import annotations

import math

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from pdeforge.workers.config import Settings

from .auth import OPEN, SESSION_COOKIE
from .schemas import ErrorBody

_ERRORS = {
    401: "no valid bearer token or session cookie",
    403: "the token is not valid",
    404: "no such job, dataset or batch (or not the caller's)",
    408: "the request body did not arrive in time",
    409: "the dataset is not complete yet, or the job's state forbids the request",
    413: "a configured limit (body size, samples, grid, shard memory, batch) is exceeded: stated in the body",
    422: "invalid request: each bad field, its value and what is allowed",
    429: "the caller's quota (active jobs, samples in flight) is used up",
    503: "Redis or object storage unreachable; retry later",
}


def _errors_for(path: str, method: str) -> set[int]:
    codes = {422, 503}
    if "{" in path:
        codes.add(404)
    if method in ("post", "put", "patch"):
        codes |= {408, 413}
    if path.startswith("/v1/datasets/{dataset_id}"):
        codes.add(409)
    if path in ("/v1/jobs", "/v1/batches") and method == "post":
        codes.add(429)
    if path.startswith("/v1/datasets/{dataset_id}") and method == "delete":
        codes.add(409)
    return codes


def _limit_schemas(schemas: dict, settings: Settings) -> None:
    n_max = min(1024, math.isqrt(settings.max_unknowns))
    for schema in schemas.values():
        props = schema.get("properties") or {}
        if "samples" in props and "family" in props:
            props["samples"]["maximum"] = settings.max_samples
            props["samples"]["description"] = (f"number of samples in the dataset (at most {settings.max_samples}; "
                                               f"samples x n**dim at most {settings.max_work:.3g})")
    for name, schema in schemas.items():  # every family's grid (DarcyGrid, HeatGrid, ...)
        grid = schema.get("properties", {}) if name.endswith("Grid") else {}
        if "n" in grid:
            grid["n"]["maximum"] = n_max
            grid["n"]["description"] = (f"cells per axis; n**dim at most {settings.max_unknowns} (n <= {n_max} in "
                                        "2-D), summed over the resolutions of a paired dataset")
    output = schemas.get("Output", {}).get("properties", {})
    if "shard_samples" in output:
        output["shard_samples"]["description"] = (
            "samples per HDF5 shard (at most); a shard's memory in its worker (inputs and solutions in float64 "
            f"plus their stored copy) must stay within {settings.max_shard_bytes} bytes")
    batch = schemas.get("BatchCreate", {})
    if batch:
        batch["description"] = f"at most {settings.max_batch_samples} samples in all the specs of one batch"


def contract(app: FastAPI, settings: Settings) -> dict:
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for model in (ErrorBody,):
        for name, schema in model.model_json_schema(ref_template="#/components/schemas/{model}").get(
                "$defs", {}).items():
            schemas[name] = schema
        schemas[model.__name__] = {k: v for k, v in model.model_json_schema(
            ref_template="#/components/schemas/{model}").items() if k != "$defs"}
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    _limit_schemas(schemas, settings)
    error_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    auth_on = bool(settings.principals())
    if auth_on:
        doc["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "a token of PDEFORGE_API_TOKENS"},
            "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE,
                        "description": "the session cookie set by POST /v1/session"}}
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            responses = op.setdefault("responses", {})
            codes = _errors_for(path, method)
            protected = auth_on and path.startswith("/v1") and (method.upper(), path) not in OPEN
            if protected:
                codes |= {401, 403}
                op["security"] = [{"bearer": []}, {"session": []}]
            for code in sorted(codes):
                entry = responses.setdefault(str(code), {"description": _ERRORS[code]})
                entry["content"] = error_ref
    doc["info"]["x-pdeforge-limits"] = {
        "max_samples": settings.max_samples, "max_unknowns": settings.max_unknowns, "max_work": settings.max_work,
        "max_shard_bytes": settings.max_shard_bytes, "max_batch_samples": settings.max_batch_samples,
        "max_body_bytes": settings.max_body_bytes, "body_timeout_seconds": settings.body_timeout,
        "quota_jobs": settings.quota_jobs, "quota_samples": settings.quota_samples}
    app.openapi_schema = doc
    return doc
