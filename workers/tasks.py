"""Thin Celery tasks: ids in, plain functions of :mod:`pdeforge.workers.pipeline` underneath.

``plan(job_id)`` -> one ``solve_shard(job_id, split, k)`` per unfinished shard ->
the shard that completes the done-set enqueues ``finalize(job_id)`` (atomic Redis
fan-in; finalize itself is idempotent).  Only transient storage errors are retried
(exponential backoff); a shard delivered more than ``max_attempts`` times (its
worker keeps dying or timing out) fails the job with a clear error.
"""

from __future__ import annotations

import logging
import traceback
import uuid

from celery.exceptions import SoftTimeLimitExceeded

from . import keys, pipeline, services
from .celery_app import app
from .config import get_settings
from .errors import JobCancelled, PoisonShard, TransientStorageError
from .records import ShardRecord
from .state import now_iso
from .status import JobStatus

log = logging.getLogger("pdeforge.tasks")
class JobTask(app.Task):
    """Base of the job tasks: a task that finally fails (e.g. transient storage errors beyond
    ``max_retries``) fails its job instead of leaving it running forever."""

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        if args:
            _fail(args[0], f"{self.name} failed after {self.request.retries} retries: "
                           f"{type(exc).__name__}: {exc}")


RETRY = dict(base=JobTask, bind=True, autoretry_for=(TransientStorageError,), retry_backoff=2,
             retry_backoff_max=120, retry_jitter=True, max_retries=8)


def enqueue(name: str, *args) -> None:
    settings = get_settings()
    settings.require_broker()
    app.send_task(name, args=list(args), queue=settings.queue)


def _fail(job_id: str, error: str) -> None:
    log.error("job %s failed: %s", job_id, error)
    services.store().set_status(job_id, JobStatus.FAILED, error=error[:2000])


def mark_shard_done(job_id: str, record: ShardRecord, shards_total: int) -> None:
    if services.store().shard_done(job_id, record.name, record.samples, shards_total,
                                   record.solver["seconds_sum"]):
        enqueue("pdeforge.finalize", job_id)


def active_record(job_id: str) -> dict | None:
    """The job's record, or None when it is unknown or already over (the task then does nothing)."""
    rec = services.store().get(job_id)
    return None if rec is None or JobStatus(rec["status"]).terminal else rec


@app.task(name="pdeforge.plan", **RETRY)
def plan(self, job_id: str) -> None:
    store, storage = services.store(), services.storage()
    rec = active_record(job_id)
    if rec is None:
        return
    try:
        store.set_status(job_id, JobStatus.PLANNING, started=rec.get("started") or now_iso())
        job = pipeline.read_spec(storage, job_id)
        the_plan = pipeline.load_or_make_plan(storage, job)
    except TransientStorageError:
        raise
    except Exception as exc:  # a bad stored spec or a bug: the job cannot run
        _fail(job_id, f"planning failed: {exc}")
        return
    total = the_plan.shards_total
    store.update(job_id, shards_total=total, ordering=the_plan.ordering, engine=the_plan.engine)
    if not store.set_status(job_id, JobStatus.RUNNING):
        return  # cancelled meanwhile
    pending = []
    for shard in the_plan.shards():
        done = pipeline.existing_shard(storage, job_id, shard.split, shard.shard)
        if done is None:
            pending.append(shard)
        else:
            mark_shard_done(job_id, done, total)
    for shard in pending:
        enqueue("pdeforge.solve_shard", job_id, shard.split, shard.shard)


@app.task(name="pdeforge.solve_shard", **RETRY)
def solve_shard(self, job_id: str, split: str, k: int) -> None:
    settings, store, storage = get_settings(), services.store(), services.storage()
    name = keys.shard_name(split, k)
    if active_record(job_id) is None:
        return  # cancelled or failed: drop the shard
    if self.request.retries == 0:
        attempts = store.attempt(job_id, name)
        if attempts > settings.max_attempts:
            _fail(job_id, str(PoisonShard(
                f"shard {name} was started {attempts} times (its worker died or timed out each time); "
                f"max_attempts={settings.max_attempts}", job_id=job_id)))
            return
    job = pipeline.read_spec(storage, job_id)
    the_plan = pipeline.read_plan(storage, job_id)
    shard = the_plan.shard(split, k)
    done = pipeline.existing_shard(storage, job_id, split, k)
    if done is not None:
        mark_shard_done(job_id, done, the_plan.shards_total)
        return
    token = uuid.uuid4().hex
    if not store.acquire_lease(job_id, name, token, settings.lease_seconds):
        # Held by a live duplicate delivery, or by a worker that died mid-shard and whose
        # lease has not expired yet (the redelivery after a lost pool child comes at once).
        # Dropping this delivery would lose the shard in the second case: look again after
        # one lease period (a live holder finishes the shard; a dead one's lease expires).
        log.info("shard %s of %s is leased by another delivery; retrying in %s s",
                 name, job_id, settings.lease_seconds)
        raise self.retry(countdown=settings.lease_seconds)

    def progress(count: int) -> None:
        if count % settings.progress_every == 0 or count == len(shard.indices):
            store.progress(job_id, name, count)
        store.renew_lease(job_id, name, token, settings.lease_seconds)

    try:
        record = pipeline.solve_shard(storage, job, shard, on_progress=progress,
                                      should_cancel=lambda: store.cancelled(job_id), cache=services.factor_cache())
    except JobCancelled:
        store.set_status(job_id, JobStatus.CANCELLED)
        return
    except TransientStorageError:
        raise
    except SoftTimeLimitExceeded:
        _fail(job_id, f"shard {name} exceeded the time limit of {settings.shard_soft_time_limit} s")
        return
    except Exception as exc:
        _fail(job_id, f"shard {name}: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}")
        return
    finally:
        store.release_lease(job_id, name, token)
    mark_shard_done(job_id, record, the_plan.shards_total)


@app.task(name="pdeforge.finalize", **RETRY)
def finalize(self, job_id: str) -> None:
    store, storage = services.store(), services.storage()
    if active_record(job_id) is None:
        return
    store.set_status(job_id, JobStatus.FINALIZING)
    try:
        job = pipeline.read_spec(storage, job_id)
        manifest = pipeline.finalize(storage, job, pipeline.read_plan(storage, job_id))
    except TransientStorageError:
        raise
    except Exception as exc:
        _fail(job_id, f"finalize failed: {exc}")
        return
    store.set_status(job_id, JobStatus.SUCCEEDED, summary=manifest["solver"])
