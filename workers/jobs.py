"""Submitting, inspecting, cancelling and resuming dataset jobs (used by the API, CLI and tests).

A job's id is its dataset id, so submitting the same spec twice returns the same
job: a finished dataset (its manifest exists) is reported as succeeded, a job in
progress is returned as it is, and only a new, failed or cancelled one is
(re)started -- finished shards are never recomputed.  If the Redis record is lost,
the job is found again from the spec in object storage.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from . import keys, pipeline
from .config import Settings
from .errors import BatchNotFound, DatasetNotReady, JobConflict, JobNotFound, ObjectNotFound
from .spec import JobBase
from .state import JobStore
from .status import ACTIVE, JobStatus
from .storage import Storage


class LimitExceeded(ValueError):
    """A job is over a configured size limit; ``field`` names the offending spec field."""

    def __init__(self, message: str, *, field: str, limit) -> None:
        super().__init__(message)
        self.field, self.limit = field, limit


def check_limits(job: JobBase, settings: Settings) -> None:
    """Reject oversized jobs before anything is queued (the message states the limit)."""
    unknowns = job.grid.n ** job.grid.dim
    if job.samples > settings.max_samples:
        raise LimitExceeded(f"samples={job.samples} exceeds the limit of {settings.max_samples} samples per job",
                            field="samples", limit=settings.max_samples)
    if unknowns > settings.max_unknowns:
        raise LimitExceeded(f"grid n={job.grid.n}, dim={job.grid.dim} gives {unknowns} unknowns per sample; "
                            f"the limit is {settings.max_unknowns}", field="grid", limit=settings.max_unknowns)
    work = float(job.samples) * unknowns
    if work > settings.max_work:
        raise LimitExceeded(f"samples x unknowns = {work:.3g} exceeds the limit of {settings.max_work:.3g} "
                            "per job", field="samples", limit=settings.max_work)


class JobService:
    """Job operations over a :class:`JobStore`, a :class:`Storage` and an ``enqueue(task, *args)``."""

    def __init__(self, store: JobStore, storage: Storage, enqueue: Callable[..., None]) -> None:
        self.store, self.storage, self.enqueue = store, storage, enqueue

    def submit(self, job: JobBase) -> tuple[dict, bool]:
        """Returns ``(record, created)``; ``created`` is False for an existing dataset/job."""
        job_id = job.dataset_id
        manifest = pipeline.storage_manifest(self.storage, job_id)
        rec = self.store.get(job_id)
        if manifest is not None:
            if rec is None or rec["status"] != JobStatus.SUCCEEDED:
                self.store.create(job_id, samples_total=job.samples, family=job.family)
                self._mark_complete(job_id, manifest)
            return self.store.get(job_id), False
        if rec is not None and rec["status"] in ACTIVE:
            return rec, False
        pipeline.write_spec(self.storage, job)
        self.store.create(job_id, samples_total=job.samples, family=job.family)
        self.enqueue("pdeforge.plan", job_id)
        return self.store.get(job_id), True

    def _mark_complete(self, job_id: str, manifest: dict) -> None:
        plan_shards = sum(s["shards"] for s in manifest["splits"].values())
        self.store.update(job_id, shards_total=plan_shards)
        for f in manifest["files"]:
            if "shard" in f:
                self.store.shard_done(job_id, keys.shard_name(f["split"], f["shard"]), f["samples"], plan_shards)
        self.store.set_status(job_id, JobStatus.SUCCEEDED, force=True, summary=manifest["solver"],
                              finished=manifest.get("created", ""))

    def get(self, job_id: str) -> dict:
        """The job record; a job unknown to Redis is recovered from storage (and resumed)."""
        if not keys.is_id(job_id):
            raise JobNotFound(f"no job {job_id!r} (job ids are 16 hex digits)", job_id=job_id)
        rec = self.store.get(job_id)
        if rec is not None:
            return rec
        return self.resume(job_id)

    def resume(self, job_id: str) -> dict:
        """Recreate a job whose Redis record was lost, from the spec in storage."""
        if not keys.is_id(job_id):
            raise JobNotFound(f"no job {job_id!r}", job_id=job_id)
        try:
            job = pipeline.read_spec(self.storage, job_id)
        except ObjectNotFound:
            raise JobNotFound(f"no job or dataset {job_id!r}", job_id=job_id) from None
        rec, _ = self.submit(job)
        return rec

    def cancel(self, job_id: str) -> dict:
        if not keys.is_id(job_id):
            raise JobNotFound(f"no job {job_id!r} (job ids are 16 hex digits)", job_id=job_id)
        rec = self.store.get(job_id)
        if rec is None:
            # lost record: a finished dataset is reported as such; anything else is recorded as
            # cancelled without being resumed first
            if pipeline.storage_manifest(self.storage, job_id) is not None:
                return self.get(job_id)
            try:
                job = pipeline.read_spec(self.storage, job_id)
            except ObjectNotFound:
                raise JobNotFound(f"no job {job_id!r}", job_id=job_id) from None
            self.store.create(job_id, samples_total=job.samples, family=job.family)
            rec = self.store.get(job_id)
        if rec["status"] in ACTIVE:
            self.store.request_cancel(job_id)
            self.store.set_status(job_id, JobStatus.CANCELLED)
        return self.store.get(job_id)

    def delete(self, dataset_id: str) -> None:
        """Delete a dataset's files and its job record (:class:`JobConflict` while the job runs)."""
        if not keys.is_id(dataset_id):
            raise JobNotFound(f"no dataset {dataset_id!r}", job_id=dataset_id)
        rec = self.store.get(dataset_id)
        if rec is not None and rec["status"] in ACTIVE:
            raise JobConflict(f"job {dataset_id} is {rec['status']}; cancel it before deleting the dataset",
                              job_id=dataset_id)
        removed = self.storage.delete_prefix(keys.prefix(dataset_id))
        if rec is None and removed == 0:
            raise JobNotFound(f"no dataset {dataset_id!r}", job_id=dataset_id)
        self.store.delete(dataset_id)

    # ----- listings, batches, readiness ----------------------------------------------------------
    def list_jobs(self, *, status: str | None = None, offset: int = 0, limit: int = 50) -> tuple[list[dict], int | None]:
        """Up to ``limit`` job records, newest first, from position ``offset`` of the job list
        (only those with ``status`` if given); returns ``(records, next offset or None)``."""
        out: list[dict] = []
        chunk = max(limit, 100)
        while len(out) < limit:
            ids = self.store.ids(start=offset, count=chunk)
            if not ids:
                return out, None
            for i, rec in enumerate(self.store.get_many(ids)):
                if rec is not None and (status is None or rec["status"] == status):
                    out.append(rec)
                    if len(out) == limit:
                        following = offset + i + 1
                        return out, following if self.store.ids(start=following, count=1) else None
            offset += len(ids)
        return out, None

    def submit_batch(self, jobs: list[JobBase]) -> tuple[str, list[dict]]:
        """Submit every spec (each like :meth:`submit`); the batch id is a hash of the job ids."""
        recs = [self.submit(job)[0] for job in jobs]
        ids = [r["id"] for r in recs]
        batch_id = hashlib.sha256(json.dumps(ids).encode()).hexdigest()[:16]
        self.store.put_batch(batch_id, ids)
        return batch_id, recs

    def batch(self, batch_id: str) -> list[dict]:
        """The records of a batch's jobs (:class:`BatchNotFound` for an unknown batch)."""
        ids = self.store.batch(batch_id) if keys.is_id(batch_id) else None
        if ids is None:
            raise BatchNotFound(f"no batch {batch_id!r}")
        return [self.get(job_id) for job_id in ids]

    def readiness(self) -> dict[str, str]:
        """``{"redis": "ok" | reason, "storage": "ok" | reason}``; never raises."""
        checks = {}
        for name, probe in (("redis", self.store.ping), ("storage", self.storage.check)):
            try:
                probe()
                checks[name] = "ok"
            except Exception as exc:  # noqa: BLE001 - reported, never raised
                checks[name] = f"unreachable: {type(exc).__name__}"
        return checks

    # ----- datasets: final or in progress --------------------------------------------------------
    def dataset_manifest(self, dataset_id: str) -> dict:
        """The final manifest; for a job in progress, the manifest of the shards finished so far
        (``complete: false``, each listed shard ``final``)."""
        if not keys.is_id(dataset_id):
            raise JobNotFound(f"no dataset {dataset_id!r} (dataset ids are 16 hex digits)", job_id=dataset_id)
        manifest = pipeline.storage_manifest(self.storage, dataset_id)
        if manifest is not None:
            return manifest
        rec = self.get(dataset_id)  # JobNotFound when neither Redis nor storage knows it
        try:
            job, plan = pipeline.read_spec(self.storage, dataset_id), pipeline.read_plan(self.storage, dataset_id)
        except ObjectNotFound:
            raise DatasetNotReady(f"dataset {dataset_id} has no plan yet (job status: {rec['status']})",
                                  job_id=dataset_id) from None
        partial = pipeline.partial_manifest(self.storage, job, plan,
                                            pipeline.finished_records(self.storage, dataset_id))
        partial["status"] = rec["status"]
        return partial
