"""Thin Celery tasks: ids in, plain functions of :mod:`pdeforge.workers.pipeline` underneath.

``plan(job_id)`` -> one ``solve_shard(job_id, split, k)`` per unfinished shard -> the shard
that completes the done-set enqueues ``finalize(job_id)`` (atomic Redis fan-in; finalize
itself is idempotent).

Every task runs one *unit* (``@plan``, a shard, ``@finalize``; see :mod:`.units`) under a
lease in Redis, and ends in one of three ways, each leaving Redis in a state the recovery
sweep (:mod:`.recovery`) understands:

* done: the unit leaves the ``units`` hash (fan-in for shards);
* deferred: a transient storage error or a full disk -- the unit is due again after an
  exponential backoff (``retry`` state), the sweep re-sends it; after
  ``transient_retries`` of them the job fails with a clear error;
* failed: a bug or a bad spec -- the job fails with a one-line message and a code (no
  traceback, no server path: :func:`~pdeforge.workers.errors.public_message`).

Redis being unreachable (a restart, a blip) is never a failure: every Redis call waits
with backoff (:func:`patiently`), progress and lease renewals are skipped while it is
down and resumed afterwards (progress is per shard and idempotent), and before a shard
is written the lease is confirmed.  A task that cannot reach Redis within
``redis_patience`` seconds just stops: its unit is still ``started`` in Redis, its lease
expires, and the sweep re-sends it.  A delivery whose unit is leased by a live worker
stops at once (that worker finishes it, or the sweep re-sends it when its lease lapses);
the lease of a dead process on the same host is taken over at once.
"""

from __future__ import annotations

import logging
import random
import time

from celery.exceptions import SoftTimeLimitExceeded

from . import keys, ledger, pipeline, services, units
from .celery_app import app
from .config import get_settings
from .errors import JobCancelled, LeaseLost, PoisonShard, is_transient, public_message
from .records import ShardRecord
from .state import UNAVAILABLE, lease_value, now_iso
from .status import JobStatus

log = logging.getLogger("pdeforge.tasks")


class JobTask(app.Task):
    """Base of the job tasks: a task that dies of an unexpected exception fails its job instead of
    leaving it running forever."""

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        if args and not isinstance(exc, UNAVAILABLE):
            _fail(args[0], "internal_error", f"{self.name} failed: {public_message(exc)}")


TASK = dict(base=JobTask, bind=True)


def enqueue(name: str, *args) -> None:
    settings = get_settings()
    settings.require_broker()
    app.send_task(name, args=list(args), queue=settings.queue)


def patiently(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, waiting with backoff while Redis is unreachable (up to
    ``redis_patience`` seconds, then the error propagates)."""
    deadline = time.monotonic() + get_settings().redis_patience
    delay = 0.1
    while True:
        try:
            return fn(*args, **kwargs)
        except UNAVAILABLE as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("Redis unreachable (%s); retrying in %.1f s", type(exc).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _send(job_id: str, unit: str) -> None:
    """Enqueue a unit already registered as queued; a broker failure is left to the sweep."""
    try:
        units.send(services.store(), enqueue, job_id, [unit], mark=False)
    except Exception as exc:  # noqa: BLE001 - the unit is queued in Redis: the sweep re-sends it
        log.warning("enqueueing %s of job %s failed (%s); the recovery sweep will send it",
                    unit, job_id, type(exc).__name__)


def _mirror(job_id: str, status: JobStatus, **fields) -> None:
    """The job's new state in storage too (best effort: Redis holds the truth while it lives)."""
    try:
        ledger.write_state(services.storage(), job_id, status, **fields)
    except Exception as exc:  # noqa: BLE001 - logged; recovery then sees the previous state
        log.warning("cannot record state %s of job %s in storage: %s", status, job_id, public_message(exc))


def _fail(job_id: str, code: str, error: str) -> None:
    error = public_message(error, limit=2000)
    log.error("job %s failed (%s): %s", job_id, code, error)
    if patiently(services.store().set_status, job_id, JobStatus.FAILED, error=error, error_code=code):
        _mirror(job_id, JobStatus.FAILED, error=error, error_code=code)


def _begin(job_id: str, unit: str) -> tuple[str, int, int] | None:
    """Take ``unit``'s lease: ``(lease value, attempt, retries)``, or None when the job is over or a
    live delivery runs the unit (this one then has nothing to do)."""
    value = lease_value()
    attempt, retries = patiently(services.store().acquire, job_id, unit, value, get_settings().lease_seconds)
    if attempt <= 0:
        if attempt == 0:
            log.info("%s of job %s is leased by a live delivery; this one stops", unit, job_id)
        return None
    return value, attempt, retries


def _release(job_id: str, unit: str, value: str) -> None:
    try:
        patiently(services.store().release_lease, job_id, unit, value)
    except UNAVAILABLE:
        pass  # the lease expires by itself


def _defer(job_id: str, unit: str, value: str, retries: int, exc: BaseException) -> None:
    """A transient error: the unit is due again after a backoff (the sweep sends it), or the job fails
    after ``transient_retries`` of them."""
    settings = get_settings()
    if retries >= settings.transient_retries:
        _fail(job_id, "storage_unavailable", f"{unit}: gave up after {retries} transient errors: "
                                             f"{public_message(exc)}")
        _release(job_id, unit, value)
        return
    delay = min(60.0, 2.0 ** retries) * (0.5 + random.random() / 2)
    log.warning("%s of job %s: transient error (%s); due again in %.1f s", unit, job_id, public_message(exc), delay)
    patiently(services.store().defer, job_id, unit, due=time.time() + delay, retries=retries + 1, value=value)


def _unknowns(job) -> int:
    return job.grid.n ** job.grid.dim


def mark_shard_done(job_id: str, record: ShardRecord, shards_total: int, unknowns: int) -> None:
    if patiently(services.store().shard_done, job_id, record.name, record.samples, shards_total,
                 record.solver["seconds_sum"], unknowns):
        _send(job_id, units.FINALIZE)


def active_record(job_id: str) -> dict | None:
    """The job's record, or None when it is unknown or already over (the task then does nothing)."""
    rec = patiently(services.store().get, job_id)
    return None if rec is None or JobStatus(rec["status"]).terminal else rec


@app.task(name="pdeforge.plan", **TASK)
def plan(self, job_id: str) -> None:
    store, storage = services.store(), services.storage()
    begun = _begin(job_id, units.PLAN)
    if begun is None:
        return
    value, _, retries = begun
    try:
        rec = active_record(job_id)
        if rec is None:
            return
        patiently(store.set_status, job_id, JobStatus.PLANNING, started=rec.get("started") or now_iso())
        job = pipeline.read_spec(storage, job_id)
        the_plan = pipeline.load_or_make_plan(storage, job)
        existing = [(shard, pipeline.existing_shard(storage, job_id, shard.split, shard.shard))
                    for shard in the_plan.shards()]
    except UNAVAILABLE:
        return  # Redis gone for longer than our patience: the sweep re-sends the plan
    except Exception as exc:
        if is_transient(exc):
            _defer(job_id, units.PLAN, value, retries, exc)
        else:  # a bad stored spec or a bug: the job cannot run
            _fail(job_id, "planning_failed", f"planning failed: {public_message(exc)}")
            _release(job_id, units.PLAN, value)
        return
    total = the_plan.shards_total
    patiently(store.update, job_id, shards_total=total, ordering=the_plan.ordering, engine=the_plan.engine)
    if not patiently(store.set_status, job_id, JobStatus.RUNNING):
        _release(job_id, units.PLAN, value)
        return  # cancelled meanwhile
    pending = [shard.name for shard, done in existing if done is None]
    now = time.time()
    patiently(store.set_units, job_id, [units.Unit(name, "queued", now, 0) for name in pending], drop=(units.PLAN,))
    for _, done in existing:
        if done is not None:
            mark_shard_done(job_id, done, total, _unknowns(job))
    _release(job_id, units.PLAN, value)
    for name in pending:
        _send(job_id, name)


class LeaseGuard:
    """Per-sample callbacks of a shard: progress, lease renewal, cancellation; per stored frame of a
    trajectory, lease renewal -- all skipped for a moment while Redis is unreachable (the solve goes
    on), and the lease confirmed after the last sample, before the shard is written
    (:class:`LeaseLost` if another delivery took it over)."""

    def __init__(self, job_id: str, unit: str, value: str, total: int) -> None:
        self.job_id, self.unit, self.value, self.total = job_id, unit, value, total
        self.store, self.settings = services.store(), get_settings()
        self.quiet_until = 0.0
        self.next_renewal = 0.0

    def _down(self) -> bool:
        return time.monotonic() < self.quiet_until

    def _went_down(self, exc: BaseException) -> None:
        log.warning("Redis unreachable during %s of %s (%s); solving on", self.unit, self.job_id, type(exc).__name__)
        self.quiet_until = time.monotonic() + 1.0

    def progress(self, count: int) -> None:
        last = count == self.total
        if last:  # confirm the lease before anything is written (wait for Redis if need be)
            patiently(self.store.progress, self.job_id, self.unit, count)
            if not patiently(self.store.renew_lease, self.job_id, self.unit, self.value, self.settings.lease_seconds):
                raise LeaseLost(f"{self.unit} of {self.job_id} is leased by another delivery", job_id=self.job_id)
            return
        if not self._down():
            self._renew(count if count % self.settings.progress_every == 0 else None)

    def alive(self) -> None:
        """Between samples (a frame of a long trajectory was stored): renew the lease at most every
        ``lease_seconds / 6`` s, so that a long trajectory keeps its shard (LeaseLost if taken over)."""
        now = time.monotonic()
        if self._down() or now < self.next_renewal:
            return
        self.next_renewal = now + self.settings.lease_seconds / 6
        self._renew()

    def _renew(self, progress: int | None = None) -> None:
        """Renew the lease (and record ``progress`` samples done); a moment's quiet if Redis is down."""
        try:
            if progress is not None:
                self.store.progress(self.job_id, self.unit, progress)
            ours = self.store.renew_lease(self.job_id, self.unit, self.value, self.settings.lease_seconds)
        except UNAVAILABLE as exc:
            self._went_down(exc)
            return
        if not ours:
            raise LeaseLost(f"{self.unit} of {self.job_id} is leased by another delivery", job_id=self.job_id)

    def cancelled(self) -> bool:
        if self._down():
            return False
        try:
            return self.store.cancelled(self.job_id)
        except UNAVAILABLE as exc:
            self._went_down(exc)
            return False


@app.task(name="pdeforge.solve_shard", **TASK)
def solve_shard(self, job_id: str, split: str, k: int) -> None:
    settings, storage = get_settings(), services.storage()
    name = keys.shard_name(split, k)
    begun = _begin(job_id, name)
    if begun is None:
        return  # the job is over, or a live delivery runs this shard
    value, attempt, retries = begun
    if attempt > settings.max_attempts:
        _fail(job_id, "poison_shard", str(PoisonShard(
            f"shard {name} was started {attempt} times (its worker died or timed out each time); "
            f"max_attempts={settings.max_attempts}", job_id=job_id)))
        _release(job_id, name, value)
        return
    try:
        job = pipeline.read_spec(storage, job_id)
        the_plan = pipeline.read_plan(storage, job_id)
        shard = the_plan.shard(split, k)
        done = pipeline.existing_shard(storage, job_id, split, k)
        if done is None:
            guard = LeaseGuard(job_id, name, value, len(shard.indices))
            done = pipeline.solve_shard(storage, job, shard, on_progress=guard.progress,
                                        should_cancel=guard.cancelled, cache=services.factor_cache(),
                                        on_alive=guard.alive)
    except JobCancelled:
        _release(job_id, name, value)
        return
    except LeaseLost as exc:
        log.info("%s; this delivery stops", exc)
        return
    except UNAVAILABLE:
        return  # Redis gone for longer than our patience: the lease lapses, the sweep re-sends the shard
    except SoftTimeLimitExceeded:
        _fail(job_id, "time_limit", f"shard {name} exceeded the time limit of {settings.shard_soft_time_limit} s")
        _release(job_id, name, value)
        return
    except Exception as exc:
        if is_transient(exc):
            _defer(job_id, name, value, retries, exc)
        else:
            _fail(job_id, "shard_failed", f"shard {name}: {public_message(exc)}")
            _release(job_id, name, value)
        return
    mark_shard_done(job_id, done, the_plan.shards_total, _unknowns(job))
    _release(job_id, name, value)


@app.task(name="pdeforge.finalize", **TASK)
def finalize(self, job_id: str) -> None:
    store, storage = services.store(), services.storage()
    begun = _begin(job_id, units.FINALIZE)
    if begun is None:
        return
    value, _, retries = begun
    try:
        patiently(store.set_status, job_id, JobStatus.FINALIZING)
        job = pipeline.read_spec(storage, job_id)
        manifest = pipeline.finalize(storage, job, pipeline.read_plan(storage, job_id))
    except UNAVAILABLE:
        return
    except Exception as exc:
        if is_transient(exc):
            _defer(job_id, units.FINALIZE, value, retries, exc)
        else:
            _fail(job_id, "finalize_failed", f"finalize failed: {public_message(exc)}")
            _release(job_id, units.FINALIZE, value)
        return
    if patiently(store.set_status, job_id, JobStatus.SUCCEEDED, summary=manifest["solver"]):
        _mirror(job_id, JobStatus.SUCCEEDED)
    _release(job_id, units.FINALIZE, value)
