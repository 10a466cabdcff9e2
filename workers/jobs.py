"""Submitting, inspecting, cancelling, deleting and recovering dataset jobs, per principal.

A job's id is its dataset id, so the same spec names the same job and the same stored
dataset.  Each principal that submits it holds a *handle* on the job: it sees the job only
through its handle (an admin sees every job), and two principals submitting the same spec
share the stored dataset but not the handle:

* **submit** creates the job if no run of it is active or finished (one atomic Redis step:
  concurrent submits create it once and enqueue one plan) and gives the caller a handle,
  within the caller's quotas (active jobs, samples in flight); a finished dataset is
  reported as succeeded at once;
* **cancel** withdraws the caller's handle; the job stops when no active handle is left
  (an admin's cancel stops it at once);
* **delete** removes the caller's handle (409 while its handle is active on a running job:
  cancel first); the data go when no handle is left.  An admin's delete removes the whole
  dataset and every handle (409 while the job runs).

Owners and the job's last status are kept in object storage too (:mod:`.ledger`), so a job
whose Redis record is lost is recovered with its owners and its state -- a cancelled job
stays cancelled, an active one is planned again (finished shards are never recomputed).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import socket
from collections.abc import Callable

import numpy as np

from pdeforge.solvers.families import get_family

from . import keys, ledger, pipeline, units
from .config import Settings
from .errors import (BatchNotFound, DatasetNotReady, JobConflict, JobNotFound, ObjectNotFound, QuotaExceeded,
                     StorageError)
from .principals import ANONYMOUS, Principal
from .spec import JobBase
from .state import JobStore
from .status import ACTIVE, JobStatus
from .storage import Storage

log = logging.getLogger("pdeforge.jobs")


class LimitExceeded(ValueError):
    """A job is over a configured size limit; ``field`` names the offending spec field."""

    def __init__(self, message: str, *, field: str, limit) -> None:
        super().__init__(message)
        self.field, self.limit = field, limit


#: bytes per value while a shard is generated (float64 / complex128 arrays of the solver)
_SOLVE_ITEMSIZE = 8


def shard_memory_bytes(job: JobBase, shard_samples: int | None = None) -> int:
    """Memory one shard of ``job`` takes in its worker: inputs and solutions of every sample of the
    shard in float64 while they are solved, plus their copy in the output dtype when written.
    Complex solutions count twice."""
    family, spec = get_family(job.family), job.family_spec()
    per_shard = min(job.output.shard_samples if shard_samples is None else shard_samples, job.samples)
    unknowns = job.unknowns  # summed over the resolutions of a paired dataset
    out_size = np.dtype(job.output.dtype).itemsize
    y_parts = 2 if np.issubdtype(family.dtype(spec), np.complexfloating) else 1
    values = len(family.input_names(spec)) + y_parts
    return per_shard * unknowns * values * (_SOLVE_ITEMSIZE + out_size)


def check_limits(job: JobBase, settings: Settings) -> None:
    """Reject oversized jobs before anything is queued (the message states the limit)."""
    unknowns = job.unknowns  # summed over the resolutions of a paired dataset
    if job.samples > settings.max_samples:
        raise LimitExceeded(f"samples={job.samples} exceeds the limit of {settings.max_samples} samples per job",
                            field="samples", limit=settings.max_samples)
    if unknowns > settings.max_unknowns:
        raise LimitExceeded(f"grid n={job.grid.n}, dim={job.grid.dim}"
                            + (f", resolutions {job.resolutions}" if job.paired else "")
                            + f" gives {unknowns} unknowns per sample; "
                            f"the limit is {settings.max_unknowns}", field="grid", limit=settings.max_unknowns)
    work = float(job.samples) * unknowns
    if work > settings.max_work:
        raise LimitExceeded(f"samples x unknowns = {work:.3g} exceeds the limit of {settings.max_work:.3g} "
                            "per job", field="samples", limit=settings.max_work)
    memory = shard_memory_bytes(job)
    if memory > settings.max_shard_bytes:
        fits = max(1, settings.max_shard_bytes // shard_memory_bytes(job, 1))
        raise LimitExceeded(
            f"a shard of {min(job.output.shard_samples, job.samples)} samples on a {job.grid.n}^{job.grid.dim} "
            f"grid takes {memory:.3g} bytes of memory while it is solved and written; the limit is "
            f"{settings.max_shard_bytes} bytes per shard: use output.shard_samples <= {fits}",
            field="output.shard_samples", limit=settings.max_shard_bytes)


def check_batch_limits(jobs: list[JobBase], settings: Settings) -> None:
    """Every spec within the job limits (the error names its index), and the batch within its total."""
    for i, job in enumerate(jobs):
        try:
            check_limits(job, settings)
        except LimitExceeded as exc:
            raise LimitExceeded(f"specs[{i}]: {exc}", field=f"specs.{i}.{exc.field}", limit=exc.limit) from None
    total = sum(job.samples for job in jobs)
    if total > settings.max_batch_samples:
        raise LimitExceeded(f"the batch has {total} samples in all; the limit is {settings.max_batch_samples} "
                            "samples per batch", field="specs", limit=settings.max_batch_samples)


#: solve cost assumed before the service has measured any (seconds per sample and unknown, one core)
DEFAULT_SECONDS_PER_UNKNOWN = 2e-6


def estimate(job: JobBase, settings: Settings, metrics: dict[str, float]) -> dict:
    """What a job would cost: samples, shards, stored bytes, memory per shard and solve time."""
    family, spec = get_family(job.family), job.family_spec()
    unknowns = job.unknowns  # summed over the resolutions of a paired dataset
    out_size = np.dtype(job.output.dtype).itemsize
    y_parts = 2 if np.issubdtype(family.dtype(spec), np.complexfloating) else 1
    frames = 1 if spec.time is None else len(spec.time.frame_times())  # a trajectory stores every frame
    per_sample = unknowns * (len(family.input_names(spec)) + y_parts * frames) * out_size
    counts = [len(idx) for idx in pipeline.split_indices(job).values()]
    shards = sum(math.ceil(c / job.output.shard_samples) for c in counts)
    measured = metrics.get("unknown_samples", 0.0)
    if measured > 0:
        rate = metrics.get("solve_seconds", 0.0) / measured
        basis = f"measured on {int(metrics.get('samples_solved', 0))} samples solved by this service"
    else:
        rate = DEFAULT_SECONDS_PER_UNKNOWN
        basis = "default rate (this service has not solved any sample yet)"
    core_seconds = job.samples * unknowns * rate
    return {"dataset_id": job.dataset_id, "samples": job.samples, "unknowns_per_sample": unknowns,
            "shards": shards, "bytes": job.samples * per_sample, "shard_memory_bytes": shard_memory_bytes(job),
            "core_seconds": core_seconds, "seconds_per_sample": unknowns * rate, "basis": basis}


class JobService:
    """Job operations over a :class:`JobStore`, a :class:`Storage` and an ``enqueue(task, *args)``."""

    def __init__(self, store: JobStore, storage: Storage, enqueue: Callable[..., None],
                 settings: Settings | None = None) -> None:
        self.store, self.storage, self.enqueue = store, storage, enqueue
        self.settings = settings or Settings()

    # ----- helpers -------------------------------------------------------------------------------
    @staticmethod
    def _check_id(job_id: str, what: str = "job") -> None:
        if not keys.is_id(job_id):
            raise JobNotFound(f"no {what} {job_id!r} ({what} ids are 16 hex digits)", job_id=job_id)

    @staticmethod
    def visible(rec: dict | None, principal: Principal) -> bool:
        return rec is not None and (principal.admin or principal.name in rec.get("owners", {}))

    @staticmethod
    def view(rec: dict, principal: Principal) -> dict:
        """The job as ``principal`` sees it: a handle it cancelled shows ``cancelled`` while others run
        the job (once the job is over, its real outcome)."""
        if rec["owners"].get(principal.name) == "cancelled" and rec["status"] in ACTIVE:
            return {**rec, "status": JobStatus.CANCELLED.value}
        return rec

    def _send(self, job_id: str, unit: str) -> None:
        """Enqueue an already-registered unit; a broker failure is logged (the sweep re-sends it)."""
        try:
            units.send(self.store, self.enqueue, job_id, [unit], mark=False)
        except Exception as exc:  # noqa: BLE001 - the unit stays queued in Redis; the sweep re-sends it
            log.warning("enqueueing %s of job %s failed (%s); the recovery sweep will send it",
                        unit, job_id, type(exc).__name__)

    def _mirror_state(self, job_id: str, status: str, **fields) -> None:
        ledger.write_state(self.storage, job_id, status, **fields)

    # ----- submit --------------------------------------------------------------------------------
    def submit(self, job: JobBase, principal: Principal = ANONYMOUS) -> tuple[dict, bool]:
        """Returns ``(record, created)``: ``created`` is True when a run of the job started or the
        caller got a new handle on a running job (202), False for what it already had or a
        finished dataset (200).  :class:`QuotaExceeded` when the caller's quota is used up."""
        job_id = job.dataset_id
        manifest = pipeline.storage_manifest(self.storage, job_id)
        if manifest is not None:
            ledger.write_owner(self.storage, job_id, principal.name, "active")
            self._complete(job_id, job, manifest)
            self.store.submit(job_id, principal.name, samples_total=job.samples, family=job.family)
            return self.view(self.store.get(job_id), principal), False
        pipeline.write_spec(self.storage, job)
        ledger.write_owner(self.storage, job_id, principal.name, "active")
        quota = (-1, -1) if principal.admin else (self.settings.quota_jobs, self.settings.quota_samples)
        result = self.store.submit(job_id, principal.name, samples_total=job.samples, family=job.family,
                                   max_jobs=quota[0], max_samples=quota[1], restart_succeeded=True)
        if result.quota:
            self._refuse(principal, result.quota, result.used, job.samples)
        rec = self.view(self.store.get(job_id), principal)  # before the plan runs: a new job reads "queued"
        if result.created:
            self._mirror_state(job_id, JobStatus.QUEUED, samples=job.samples, family=job.family)
            self._send(job_id, units.PLAN)
        return rec, result.created or (result.new_handle and rec["status"] in ACTIVE)

    def _refuse(self, principal: Principal, quota: str, used: float, samples: int) -> None:
        if quota == "jobs":
            raise QuotaExceeded(f"principal {principal.name!r} has {int(used)} active jobs; the quota is "
                                f"{self.settings.quota_jobs} (PDEFORGE_QUOTA_JOBS): wait for one to finish or "
                                "cancel one", quota="jobs", limit=self.settings.quota_jobs, used=used)
        raise QuotaExceeded(f"principal {principal.name!r} has {int(used)} samples in flight; {samples} more "
                            f"exceed the quota of {self.settings.quota_samples} (PDEFORGE_QUOTA_SAMPLES)",
                            quota="samples", limit=self.settings.quota_samples, used=used)

    def _complete(self, job_id: str, job: JobBase, manifest: dict, owners: dict[str, str] | None = None) -> None:
        """Make the Redis record say succeeded, with progress and summary from the manifest."""
        plan_shards = sum(s["shards"] for s in manifest["splits"].values())
        rec = self.store.get(job_id)
        if rec is not None and rec["status"] == JobStatus.SUCCEEDED:
            return
        if rec is None:
            self.store.restore(job_id, status=JobStatus.SUCCEEDED, samples_total=job.samples, family=job.family,
                               owners=owners if owners is not None else ledger.read_owners(self.storage, job_id))
        self.store.update(job_id, shards_total=plan_shards)
        for f in manifest["files"]:
            if "shard" in f:
                self.store.shard_done(job_id, keys.shard_name(f["split"], f["shard"]), f["samples"], plan_shards)
        self.store.set_status(job_id, JobStatus.SUCCEEDED, force=True, summary=manifest["solver"],
                              finished=manifest.get("created", ""))

    # ----- read, recover -------------------------------------------------------------------------
    def get(self, job_id: str, principal: Principal = ANONYMOUS) -> dict:
        """The job record as ``principal`` sees it; a job unknown to Redis is recovered from storage.
        :class:`JobNotFound` for an unknown job and for another principal's job alike."""
        self._check_id(job_id)
        rec = self.store.get(job_id) or self.recover(job_id)
        if not self.visible(rec, principal):
            raise JobNotFound(f"no job {job_id!r}", job_id=job_id)
        return self.view(rec, principal)

    def resume(self, job_id: str) -> dict:
        """Recover a job whose Redis record was lost (see :meth:`recover`); :class:`JobNotFound` if storage
        knows nothing of it."""
        self._check_id(job_id)
        rec = self.recover(job_id)
        if rec is None:
            raise JobNotFound(f"no job or dataset {job_id!r}", job_id=job_id)
        return rec

    def recover(self, job_id: str, *, dispatch: bool = True) -> dict | None:
        """Re-create the Redis record of a job from storage, with its owners and its last state: a
        finished dataset as succeeded, a failed or cancelled job as it ended (nothing runs), an active
        one as queued with its plan enqueued (unless ``dispatch`` is False: then the sweep sends it).
        None when storage knows nothing of the job.  Concurrent recoveries restore it once."""
        state = ledger.read_state(self.storage, job_id)
        manifest = pipeline.storage_manifest(self.storage, job_id)
        try:
            job = pipeline.read_spec(self.storage, job_id)
        except ObjectNotFound:
            return None if manifest is None else self._recover_from_manifest(job_id, manifest)
        owners = ledger.read_owners(self.storage, job_id)
        if manifest is not None:
            self._complete(job_id, job, manifest, owners)
            return self.store.get(job_id)
        status = JobStatus((state or {}).get("status", JobStatus.QUEUED))
        if status == JobStatus.SUCCEEDED:  # the tombstone says done but the data are gone: run again
            status = JobStatus.QUEUED
        extra = {k: (state or {}).get(k, "") for k in ("error", "error_code", "finished") if status.terminal}
        if self.store.restore(job_id, status=status, samples_total=job.samples, family=job.family, owners=owners,
                              extra=extra) and status in ACTIVE:
            log.info("job %s recovered from storage; planning it again", job_id)
            if dispatch:
                self._send(job_id, units.PLAN)
        return self.store.get(job_id)

    def _recover_from_manifest(self, job_id: str, manifest: dict) -> dict | None:
        from .spec import parse_spec

        self._complete(job_id, parse_spec(manifest["spec"]), manifest)
        return self.store.get(job_id)

    def owns(self, job_id: str, principal: Principal) -> bool:
        """Whether ``principal`` may see job / dataset ``job_id`` (admins see all)."""
        if principal.admin:
            return True
        if not keys.is_id(job_id):
            return False
        rec = self.store.get(job_id) or self.recover(job_id, dispatch=False)
        return self.visible(rec, principal)

    # ----- cancel, delete ------------------------------------------------------------------------
    def cancel(self, job_id: str, principal: Principal = ANONYMOUS) -> dict:
        """Withdraw ``principal``'s handle (an admin: stop the job); see the module doc."""
        self._check_id(job_id)
        rec = self.store.get(job_id) or self.recover(job_id, dispatch=False)
        if not self.visible(rec, principal):
            raise JobNotFound(f"no job {job_id!r}", job_id=job_id)
        _, stopped = self.store.cancel(job_id, principal.name, admin=principal.admin)
        if principal.name in rec["owners"]:
            ledger.write_owner(self.storage, job_id, principal.name, "cancelled")
        if stopped:
            self._mirror_state(job_id, JobStatus.CANCELLED)
        return self.view(self.store.get(job_id), principal)

    def delete(self, dataset_id: str, principal: Principal = ANONYMOUS) -> None:
        """Delete ``principal``'s handle, and the dataset's files and job once no handle is left (an
        admin: everything at once).  :class:`JobConflict` while the caller's handle is active on a
        running job (an admin: while the job runs)."""
        self._check_id(dataset_id, "dataset")
        rec = self.store.get(dataset_id) or self.recover(dataset_id, dispatch=False)
        if rec is None or not self.visible(rec, principal):
            raise JobNotFound(f"no dataset {dataset_id!r}", job_id=dataset_id)
        active = rec["status"] in ACTIVE
        if principal.admin:
            if active:
                raise JobConflict(f"job {dataset_id} is {rec['status']}; cancel it before deleting the dataset",
                                  job_id=dataset_id)
            self._purge(dataset_id)
            return
        if active and rec["owners"].get(principal.name) == "active":
            raise JobConflict(f"job {dataset_id} is {rec['status']}; cancel it before deleting the dataset",
                              job_id=dataset_id)
        left = self.store.drop_handle(dataset_id, principal.name)
        ledger.delete_owner(self.storage, dataset_id, principal.name)
        if left == 0 and not active:
            self._purge(dataset_id)

    def _purge(self, dataset_id: str) -> None:
        self.storage.delete_prefix(keys.prefix(dataset_id))
        ledger.delete_job(self.storage, dataset_id)
        self.store.delete(dataset_id)

    # ----- listings, batches, estimates, readiness -------------------------------------------------
    def list_jobs(self, principal: Principal = ANONYMOUS, *, status: str | None = None, offset: int = 0,
                  limit: int = 50) -> tuple[list[dict], int | None]:
        """Up to ``limit`` of the caller's jobs (an admin: all), newest first, from position ``offset``
        (only those with ``status`` if given); returns ``(records, next offset or None)``."""
        owner = None if principal.admin else principal.name
        out: list[dict] = []
        chunk = max(limit, 100)
        while len(out) < limit:
            ids = self.store.ids(start=offset, count=chunk, principal=owner)
            if not ids:
                return out, None
            for i, rec in enumerate(self.store.get_many(ids)):
                if rec is None or not self.visible(rec, principal):
                    continue
                rec = self.view(rec, principal)
                if status is None or rec["status"] == status:
                    out.append(rec)
                    if len(out) == limit:
                        following = offset + i + 1
                        more = self.store.ids(start=following, count=1, principal=owner)
                        return out, following if more else None
            offset += len(ids)
        return out, None

    def submit_batch(self, jobs: list[JobBase], principal: Principal = ANONYMOUS) -> tuple[str, list[dict]]:
        """Submit every spec (each like :meth:`submit`) after checking that the caller's quota holds them
        all; the batch id is a hash of the caller and the job ids."""
        if not principal.admin:
            used_jobs, used_samples = self.store.quota_use(principal.name)
            if used_jobs + len(jobs) > self.settings.quota_jobs:
                self._refuse(principal, "jobs", used_jobs, 0)
            if used_samples + sum(j.samples for j in jobs) > self.settings.quota_samples:
                self._refuse(principal, "samples", used_samples, sum(j.samples for j in jobs))
        recs = [self.submit(job, principal)[0] for job in jobs]
        ids = [r["id"] for r in recs]
        batch_id = hashlib.sha256(json.dumps([principal.name, ids]).encode()).hexdigest()[:16]
        ledger.write_batch(self.storage, batch_id, principal.name, ids)
        self.store.put_batch(batch_id, principal.name, ids)
        return batch_id, recs

    def batch(self, batch_id: str, principal: Principal = ANONYMOUS) -> list[dict]:
        """The records of a batch's jobs that the caller still holds (:class:`BatchNotFound` for an
        unknown batch or another principal's)."""
        record = None
        if keys.is_id(batch_id):
            record = self.store.batch(batch_id) or ledger.read_batch(self.storage, batch_id)
        if record is None or not (principal.admin or record["owner"] == principal.name):
            raise BatchNotFound(f"no batch {batch_id!r}")
        out = []
        for job_id in record["jobs"]:
            try:
                out.append(self.get(job_id, principal))
            except JobNotFound:  # the caller deleted its handle on that job
                continue
        return out

    def estimate(self, job: JobBase, principal: Principal = ANONYMOUS) -> dict:
        """What submitting ``job`` would cost and whether it would be accepted now (dry run)."""
        out = estimate(job, self.settings, self.store.metrics())
        refusals = []
        try:
            check_limits(job, self.settings)
        except LimitExceeded as exc:
            refusals.append({"code": "limit_exceeded", "field": exc.field, "limit": exc.limit, "message": str(exc)})
        if not principal.admin:
            used_jobs, used_samples = self.store.quota_use(principal.name)
            out["quota"] = {"jobs": used_jobs, "jobs_limit": self.settings.quota_jobs,
                            "samples": used_samples, "samples_limit": self.settings.quota_samples}
            if used_jobs + 1 > self.settings.quota_jobs or used_samples + job.samples > self.settings.quota_samples:
                refusals.append({"code": "quota_exceeded", "message": "the caller's quota would be exceeded"})
        out["accepted"] = not refusals
        out["refusals"] = refusals
        return out

    def readiness(self) -> dict[str, str]:
        """``{"redis": "ok" | reason, "storage": "ok" | reason}``; storage must be writable; never raises."""
        checks = {}
        try:
            self.store.ping()
            checks["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001 - reported, never raised
            checks["redis"] = f"unreachable: {type(exc).__name__}"
        try:
            self.storage.check()
        except Exception as exc:  # noqa: BLE001
            checks["storage"] = f"unreachable: {type(exc).__name__}"
            return checks
        probe = f"_readyz/{socket.gethostname()}-{os.getpid()}"
        try:
            self.storage.put_bytes(probe, b"ok", content_type="text/plain")
            self.storage.delete(probe)
            checks["storage"] = "ok"
        except StorageError as exc:
            checks["storage"] = f"not writable: {exc.code or type(exc).__name__}"
        except Exception as exc:  # noqa: BLE001
            checks["storage"] = f"not writable: {type(exc).__name__}"
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
