"""Batches: many specs submitted at once (sweeps), validated together, status aggregated."""

from __future__ import annotations

import hashlib
import json

from fastapi import APIRouter, HTTPException, Response

from workers.jobs import LimitExceeded, check_limits

from ..deps import ServiceDep, SettingsDep, StoreDep
from ..schemas import BatchCreate, BatchPublic, Progress, job_public

router = APIRouter(prefix="/v1/batches", tags=["batches"])


def _batch_public(batch_id: str, recs: list[dict]) -> BatchPublic:
    jobs = [job_public(r) for r in recs]
    counts: dict[str, int] = {}
    for j in jobs:
        counts[j.status] = counts.get(j.status, 0) + 1
    if counts.get("failed"):
        status = "failed"
    elif counts.get("cancelled"):
        status = "cancelled"
    elif counts.get("succeeded", 0) == len(jobs):
        status = "succeeded"
    else:
        status = "running"
    done = sum(j.progress.samples_done for j in jobs)
    total = sum(j.progress.samples_total for j in jobs)
    prog = Progress(samples_done=done, samples_total=total, fraction=done / total if total else 0.0,
                    shards_done=sum(j.progress.shards_done for j in jobs),
                    shards_total=sum(j.progress.shards_total for j in jobs))
    return BatchPublic(id=batch_id, status=status, jobs=jobs, counts=counts, progress=prog)


@router.post("", status_code=202, response_model=BatchPublic)
def submit_batch(body: BatchCreate, service: ServiceDep, settings: SettingsDep, store: StoreDep,
                 response: Response) -> BatchPublic:
    """Submit many specs; all are validated (and size-checked) before any is queued."""
    for i, spec in enumerate(body.specs):
        try:
            check_limits(spec, settings)
        except LimitExceeded as exc:
            raise LimitExceeded(f"specs[{i}]: {exc}", field=f"specs.{i}.{exc.field}", limit=exc.limit) from None
    recs = [service.submit(spec)[0] for spec in body.specs]
    ids = [r["id"] for r in recs]
    batch_id = hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:16]
    store.r.set(f"{store.prefix}:batch:{batch_id}", json.dumps(ids))
    response.headers["Location"] = f"/v1/batches/{batch_id}"
    response.headers["Retry-After"] = "2"
    return _batch_public(batch_id, recs)


@router.get("/{batch_id}", response_model=BatchPublic)
def get_batch(batch_id: str, service: ServiceDep, store: StoreDep) -> BatchPublic:
    """Aggregated status of a batch and the status of each of its jobs."""
    raw = store.r.get(f"{store.prefix}:batch:{batch_id}")
    if raw is None:
        raise HTTPException(404, f"no batch {batch_id!r}")
    return _batch_public(batch_id, [service.get(job_id) for job_id in json.loads(raw)])
