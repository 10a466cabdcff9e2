"""Batches: many specs submitted at once (sweeps), validated together, status aggregated."""

from __future__ import annotations

from fastapi import APIRouter, Response

from pdeforge.workers.jobs import check_batch_limits
from pdeforge.workers.status import JobStatus

from ..deps import ServiceDep, SettingsDep
from ..schemas import BatchCreate, BatchPublic, Progress, job_public

router = APIRouter(prefix="/v1/batches", tags=["batches"])


def _batch_public(batch_id: str, recs: list[dict]) -> BatchPublic:
    jobs = [job_public(r) for r in recs]
    counts: dict[str, int] = {}
    for j in jobs:
        counts[j.status] = counts.get(j.status, 0) + 1
    if counts.get(JobStatus.FAILED):
        status = JobStatus.FAILED
    elif counts.get(JobStatus.CANCELLED):
        status = JobStatus.CANCELLED
    elif counts.get(JobStatus.SUCCEEDED, 0) == len(jobs):
        status = JobStatus.SUCCEEDED
    else:
        status = JobStatus.RUNNING
    done = sum(j.progress.samples_done for j in jobs)
    total = sum(j.progress.samples_total for j in jobs)
    prog = Progress(samples_done=done, samples_total=total, fraction=done / total if total else 0.0,
                    shards_done=sum(j.progress.shards_done for j in jobs),
                    shards_total=sum(j.progress.shards_total for j in jobs))
    return BatchPublic(id=batch_id, status=status, jobs=jobs, counts=counts, progress=prog)


@router.post("", status_code=202, response_model=BatchPublic,
             responses={413: {"description": "a spec, or the batch in all, over a configured limit"},
                        429: {"description": "the caller's quota cannot hold the batch"}})
def submit_batch(body: BatchCreate, service: ServiceDep, settings: SettingsDep, response: Response) -> BatchPublic:
    """Submit many specs; all are validated (and size-checked, also in total) before any is queued."""
    check_batch_limits(body.specs, settings)
    batch_id, recs = service.submit_batch(body.specs)
    response.headers["Location"] = f"/v1/batches/{batch_id}"
    response.headers["Retry-After"] = "2"
    return _batch_public(batch_id, recs)


@router.get("/{batch_id}", response_model=BatchPublic)
def get_batch(batch_id: str, service: ServiceDep) -> BatchPublic:
    """Aggregated status of one of the caller's batches and the status of each of its jobs."""
    return _batch_public(batch_id, service.batch(batch_id))
