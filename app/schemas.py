"""Response models (request specs are :data:`pdeforge.workers.spec.JobSpec`) and the error body."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from pydantic import BaseModel, Field

from pdeforge.workers.spec import JobSpec


class Progress(BaseModel):
    samples_done: int
    samples_total: int
    fraction: float = Field(description="samples_done / samples_total")
    shards_done: int
    shards_total: int


class SolverSummary(BaseModel):
    mean_iterations: float | None = None
    max_iterations: int | None = None
    mean_matvecs: float | None = None
    residual_max: float | None = Field(None, description="largest true relative residual ||b - A y|| / ||b||")
    seconds_per_sample: float | None = Field(None, description="solver wall time per sample and core")
    engines: dict[str, int] = Field(default_factory=dict, description="samples solved by each engine")
    fallbacks: int | None = None
    unconverged: int | None = None


class JobPublic(BaseModel):
    id: str = Field(description="job id = dataset id (16 hex digits, a hash of the canonical spec)")
    dataset_id: str
    status: str = Field(description="queued | planning | running | finalizing | succeeded | failed | cancelled")
    family: str
    progress: Progress
    created: str
    started: str | None = None
    finished: str | None = None
    elapsed_seconds: float | None = None
    throughput: float | None = Field(None, description="samples per second since the job started")
    solver: SolverSummary | None = None
    ordering: dict | None = None
    engine: dict | None = Field(None, description="engine that runs the job and why (auto: pilot timings)")
    error: str | None = Field(None, description="why the job failed: one line, no traceback")
    error_code: str | None = Field(None, description="machine-readable reason of a failure, e.g. shard_failed, "
                                                     "planning_failed, poison_shard, time_limit, storage_unavailable")
    links: dict[str, str]


class JobsPublic(BaseModel):
    data: list[JobPublic]
    next_page_token: str | None = None


class BatchCreate(BaseModel):
    specs: list[JobSpec] = Field(min_length=1, max_length=1000, description="dataset specs, validated all together")  # type: ignore[valid-type]


class FieldError(BaseModel):
    field: str = Field(description="dotted path of the offending field ('body' for the whole body)")
    value: object | None = Field(None, description="the value given")
    message: str
    allowed: str | None = Field(None, description="what would be accepted")


class ErrorBody(BaseModel):
    """Every error answer: a message and a machine-readable code (never a traceback)."""

    detail: str = Field(description="what went wrong, for people")
    code: str = Field(description="machine-readable: validation_error, limit_exceeded, quota_exceeded, not_found, "
                                  "dataset_not_ready, conflict, unauthorized, forbidden, request_timeout, "
                                  "storage_unavailable, store_unavailable, internal_error, ...")
    errors: list[FieldError] | None = Field(None, description="422: every invalid field")
    field: str | None = Field(None, description="413: the spec field over its limit")
    limit: float | None = Field(None, description="413 / 429: the limit in force")


class JobEstimate(BaseModel):
    """What a job would cost (nothing is queued)."""

    dataset_id: str
    samples: int
    unknowns_per_sample: int
    shards: int
    bytes: int = Field(description="bytes of x and y stored (HDF5 overhead aside)")
    shard_memory_bytes: int = Field(description="memory one shard takes in its worker")
    core_seconds: float = Field(description="expected solve time on one core (divide by the worker processes)")
    seconds_per_sample: float
    basis: str = Field(description="where the rate comes from")
    quota: dict | None = Field(None, description="the caller's use of its quotas")
    accepted: bool = Field(description="whether submitting it now would be accepted")
    refusals: list[dict] = Field(default_factory=list, description="why not (code, message, field, limit)")


class SampleIndices(BaseModel):
    """Which samples of a dataset can be read now."""

    dataset_id: str
    complete: bool = Field(description="the dataset is finished (every sample is readable)")
    available: int = Field(description="samples readable now (those of the finished shards)")
    indices: list[int] = Field(description="the first `limit` readable indices after `after`, ascending")


class SessionCreate(BaseModel):
    token: str = Field(min_length=1, max_length=4096, description="a bearer token of the API")


class SessionPublic(BaseModel):
    principal: str
    admin: bool
    expires: str | None = Field(None, description="when the session cookie expires (UTC)")


class BatchPublic(BaseModel):
    id: str
    status: str = Field(description="succeeded when every job did; failed/cancelled if any did; else running")
    jobs: list[JobPublic]
    counts: dict[str, int]
    progress: Progress


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def job_public(rec: dict) -> JobPublic:
    total, done = rec["samples_total"], rec["samples_done"]
    started, finished = _ts(rec.get("started")), _ts(rec.get("finished"))
    elapsed = None
    if started:
        elapsed = ((finished or datetime.now(timezone.utc)) - started).total_seconds()
    summary = rec.get("summary") or {}
    ordering, engine = (json.loads(v) if isinstance(v, str) and v else v or None
                        for v in (rec.get("ordering"), rec.get("engine")))
    job_id = rec["id"]
    return JobPublic(
        id=job_id, dataset_id=job_id, status=rec["status"], family=rec.get("family", ""),
        progress=Progress(samples_done=done, samples_total=total, fraction=done / total if total else 0.0,
                          shards_done=rec["shards_done"], shards_total=rec["shards_total"]),
        created=rec["created"], started=rec.get("started") or None, finished=rec.get("finished") or None,
        elapsed_seconds=elapsed, throughput=done / elapsed if elapsed else None,
        solver=SolverSummary(**{k: v for k, v in summary.items() if k in SolverSummary.model_fields}) if summary else None,
        ordering=ordering or None, engine=engine or None, error=rec.get("error") or None,
        error_code=rec.get("error_code") or None,
        links={"self": f"/v1/jobs/{job_id}", "cancel": f"/v1/jobs/{job_id}/cancel",
               "dataset": f"/v1/datasets/{job_id}"},
    )
