"""Dataset jobs: submit (or estimate), list, inspect, cancel -- each caller sees only its own jobs."""

from __future__ import annotations

import base64
from typing import Annotated, Literal

from fastapi import APIRouter, Body, HTTPException, Query, Response

from pdeforge.workers.catalog import example_spec
from pdeforge.workers.jobs import check_limits
from pdeforge.workers.spec import JobSpec
from pdeforge.workers.status import STATUSES, JobStatus

from ..deps import ServiceDep, SettingsDep
from ..schemas import JobEstimate, JobPublic, JobsPublic, job_public

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

EXAMPLES = {
    "fno_darcy": {"summary": "FNO-style Darcy 64², threshold 12/3", "value": example_spec("darcy")},
    "helmholtz": {"summary": "Helmholtz, random medium, impedance boundary", "value": example_spec("helmholtz")},
}


def submit_response(service, spec, response: Response) -> JobPublic:
    rec, created = service.submit(spec)
    response.status_code = 202 if created else 200
    response.headers["Location"] = f"/v1/jobs/{rec['id']}"
    if not JobStatus(rec["status"]).terminal:
        response.headers["Retry-After"] = "2"
    return job_public(rec)


@router.post("", status_code=202, response_model=JobPublic,
             responses={200: {"description": "the caller submitted the same spec before, or its dataset is "
                                             "finished: that job", "model": JobPublic},
                        413: {"description": "over a configured limit (stated in the message)"},
                        422: {"description": "invalid spec: each bad field, its value and allowed range"},
                        429: {"description": "the caller's quota (active jobs, samples in flight) is used up"}})
def submit_job(
    spec: Annotated[JobSpec, Body(openapi_examples=EXAMPLES)],  # type: ignore[valid-type]
    service: ServiceDep, settings: SettingsDep, response: Response,
) -> JobPublic:
    """Submit one dataset spec (202 for a new job or handle; 200 with the caller's existing job)."""
    check_limits(spec, settings)
    return submit_response(service, spec, response)


@router.post("/estimate", response_model=JobEstimate)
def estimate_job(
    spec: Annotated[JobSpec, Body(openapi_examples=EXAMPLES)],  # type: ignore[valid-type]
    service: ServiceDep,
) -> JobEstimate:
    """Dry run: samples, shards, bytes, memory per shard and expected solve time; nothing is queued."""
    return JobEstimate(**service.estimate(spec))


#: page tokens encode an offset into the job list; beyond this no list can reach
_MAX_OFFSET = 10**12


def _decode_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        offset = int(base64.urlsafe_b64decode(token.encode() + b"==").decode())
    except ValueError:
        offset = -1
    if not 0 <= offset < _MAX_OFFSET:
        raise HTTPException(422, f"invalid page_token {token!r}; use next_page_token of the previous page")
    return offset


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode().rstrip("=")


@router.get("", response_model=JobsPublic)
def list_jobs(
    service: ServiceDep,
    status: Annotated[Literal[STATUSES] | None, Query(description="only jobs with this status")] = None,  # type: ignore[valid-type]
    page_size: Annotated[int, Query(ge=1, le=200)] = 50,
    page_token: Annotated[str | None, Query(description="next_page_token of the previous page")] = None,
) -> JobsPublic:
    """Jobs, newest first, optionally filtered by status (cursor pagination)."""
    recs, following = service.list_jobs(status=status, offset=_decode_token(page_token), limit=page_size)
    return JobsPublic(data=[job_public(r) for r in recs],
                      next_page_token=None if following is None else _encode_token(following))


@router.get("/{job_id}", response_model=JobPublic)
def get_job(job_id: str, service: ServiceDep) -> JobPublic:
    """Status, progress, shards, timings, throughput and solver summary of one job."""
    return job_public(service.get(job_id))


@router.post("/{job_id}/cancel", response_model=JobPublic)
def cancel_job(job_id: str, service: ServiceDep) -> JobPublic:
    """Cancel a job; running shards stop within a sample, finished shards are kept."""
    return job_public(service.cancel(job_id))  # a malformed id is a 404 (JobNotFound)
