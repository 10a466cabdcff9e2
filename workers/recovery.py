"""The recovery sweep: work that was lost on the way is found and sent again, without the broker.

Every worker (``pdeforge worker``, and so ``pdeforge serve`` and docker-compose's workers)
starts one sweep process (``python -m pdeforge.workers.recovery``) that dies with it; a leader
lock in Redis lets one of them sweep at a time and another take over within a few intervals
when its worker dies.  Every ``sweep_seconds`` (default ``lease_seconds / 4``) the leader
walks the active jobs and their *units* (``@plan``, shards, ``@finalize``: see
:mod:`pdeforge.workers.state`):

==============================================  ============================================
what it finds                                   what it does
==============================================  ============================================
a unit ``started`` whose lease expired          sends it again (its worker died, was killed,
(its worker died or lost Redis too long)        or lost Redis for longer than its patience)
a unit in ``retry`` whose time is due           sends it again (transient error backoff)
a unit ``queued`` for more than two lease       sends it again (the message was lost: an
periods while the broker queue is empty         enqueue that failed, a Redis restart)
a job whose plan, shards or finalize have no    registers and sends them (partial Redis loss)
unit at all
Redis without its ``epoch`` key (it lost its    walks ``jobs/`` in storage and recovers every
data), and every ``reconcile_seconds``          job Redis does not know: finished ones as
                                                succeeded, failed/cancelled ones as they
                                                ended, active ones planned again
==============================================  ============================================

Sending twice is harmless: a unit runs under a lease, a finished shard is found in storage,
finalize is idempotent.  A shard killed by its worker is re-sent within about one lease
period plus one sweep interval, far below the broker's visibility timeout.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable

import redis

from . import ledger, pipeline, units
from .config import Settings, get_settings
from .errors import ObjectNotFound, StorageError
from .jobs import JobService
from .state import UNAVAILABLE, JobStore, Unit, lease_value
from .status import ACTIVE, JobStatus
from .storage import Storage

log = logging.getLogger("pdeforge.recovery")


def broker_queue_length(settings: Settings) -> Callable[[], int | None]:
    """A probe of the number of messages waiting in the broker queue (kombu's Redis list), or None
    when it cannot be read (then queued units are never taken for lost)."""
    url = settings.broker_url
    if not url.startswith(("redis://", "rediss://", "redis+socket://", "unix://")):
        return lambda: None
    client = redis.Redis.from_url(url.replace("redis+socket://", "unix://"), socket_timeout=5,
                                  socket_connect_timeout=5)
    key = settings.broker_transport_options()["global_keyprefix"] + settings.queue

    def length() -> int | None:
        try:
            return int(client.llen(key))
        except redis.RedisError:
            return None

    return length


class Sweeper:
    """One sweep over the active jobs (:meth:`sweep`), and the leader loop (:meth:`run`)."""

    def __init__(self, service: JobService, settings: Settings, queue_length: Callable[[], int | None]) -> None:
        self.service, self.store, self.storage = service, service.store, service.storage
        self.settings, self.queue_length = settings, queue_length
        self.last_reconcile = 0.0

    @property
    def grace(self) -> float:
        """How long a queued unit may wait in an empty broker before it is taken for lost."""
        return 2.0 * self.settings.lease_seconds

    # ----- one sweep -------------------------------------------------------------------------
    def sweep(self, now: float | None = None) -> Counter:
        """One pass; returns what it did (``resent``, ``registered``, ``recovered``)."""
        now = time.time() if now is None else now
        done: Counter = Counter()
        if self.store.epoch() is None:
            log.warning("Redis has no epoch key (new, or it lost its data): recovering jobs from storage")
            done["recovered"] += self.reconcile()
            self.store.set_epoch()
        elif time.monotonic() - self.last_reconcile > self.settings.reconcile_seconds:
            done["recovered"] += self.reconcile()
        empty: list[bool | None] = []  # the broker queue is probed at most once per sweep

        def queue_empty() -> bool:
            if not empty:
                empty.append(self.queue_length() == 0)
            return bool(empty[0])

        for job_id in self.store.active_ids():
            try:
                self._sweep_job(job_id, now, queue_empty, done)
            except UNAVAILABLE:
                raise  # Redis is gone: nothing more to do in this sweep
            except (StorageError, ObjectNotFound) as exc:
                log.warning("sweep of job %s: %s", job_id, exc)
            except Exception:  # noqa: BLE001 - one broken job must not stop the sweep of the others
                log.exception("sweep of job %s failed; going on with the others", job_id)
        return done

    def _sweep_job(self, job_id: str, now: float, queue_empty: Callable[[], bool], done: Counter) -> None:
        rec = self.store.get(job_id)
        if rec is None or JobStatus(rec["status"]).terminal:
            self.store.r.srem(f"{self.store.prefix}:active", job_id)
            return
        status, present = JobStatus(rec["status"]), self.store.units(job_id)
        missing = self._missing_units(job_id, rec, status, present)
        if missing:
            log.warning("job %s (%s): no unit for %s; sending them", job_id, status, ", ".join(missing[:5]))
            units.send(self.store, self.service.enqueue, job_id, missing, now=now)
            done["registered"] += len(missing)
        leased = self.store.leased(job_id, list(present))
        for unit in present.values():
            if leased[unit.name]:
                continue
            lost = (unit.state == "started"
                    or (unit.state == "retry" and now >= unit.time)
                    or (unit.state == "queued" and now - unit.time > self.grace and queue_empty()))
            if lost:
                log.info("job %s: re-sending %s (%s %.1f s ago)", job_id, unit.name, unit.state, now - unit.time)
                units.send(self.store, self.service.enqueue, job_id, [unit.name], retries=unit.retries, now=now)
                done["resent"] += 1

    def _missing_units(self, job_id: str, rec: dict, status: JobStatus, present: dict[str, Unit]) -> list[str]:
        """Units the job needs that Redis has no trace of (neither done nor registered)."""
        if status in (JobStatus.QUEUED, JobStatus.PLANNING):
            return [] if units.PLAN in present else [units.PLAN]
        if status == JobStatus.FINALIZING:
            return [] if units.FINALIZE in present else [units.FINALIZE]
        total, finished = rec["shards_total"], rec["shards_done"]
        shard_units = [u for u in present if not u.startswith("@")]
        if total and finished >= total:
            return [] if units.FINALIZE in present else [units.FINALIZE]
        if total and finished + len(shard_units) < total and units.PLAN not in present:
            finished_names = self.store.done_shards(job_id)
            plan = pipeline.read_plan(self.storage, job_id)
            return [s.name for s in plan.shards() if s.name not in finished_names and s.name not in present]
        return []

    # ----- storage -> Redis --------------------------------------------------------------------
    def reconcile(self) -> int:
        """Recover every job storage keeps a state for that Redis does not know; returns how many."""
        self.last_reconcile = time.monotonic()
        count = 0
        for job_id in ledger.job_ids(self.storage):
            if self.store.exists(job_id):
                continue
            rec = self.service.recover(job_id)
            if rec is not None:
                count += 1
                log.info("recovered job %s from storage as %s", job_id, rec["status"])
        ids = self.store.ids(count=100_000)  # the active set itself may have lost members
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            active = [i for i, rec in zip(chunk, self.store.get_many(chunk)) if rec and rec["status"] in ACTIVE]
            if active:
                self.store.r.sadd(f"{self.store.prefix}:active", *active)
        return count

    # ----- the loop ------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Sweep every ``sweep_seconds`` while leading; never raises (errors are logged)."""
        me, interval = lease_value(), self.settings.sweep_seconds
        leading = False
        while not stop.is_set():
            try:
                if self.store.lead(me, ttl=3 * interval):
                    if not leading:
                        log.info("recovery sweep leading (every %.1f s)", interval)
                        leading = True
                    actions = self.sweep()
                    if actions:
                        log.info("sweep: %s", dict(actions))
                else:
                    leading = False
            except UNAVAILABLE as exc:
                log.warning("sweep: Redis unreachable (%s)", type(exc).__name__)
            except Exception:  # noqa: BLE001 - the sweep must outlive any one bad job
                log.exception("sweep failed; going on")
            stop.wait(interval)


def make_sweeper(settings: Settings) -> Sweeper:
    from .services import make_storage
    from .tasks import enqueue

    store: JobStore = JobStore.from_url(settings.require_state_url(), settings.key_prefix, socket_timeout=5)
    storage: Storage = make_storage(settings)
    return Sweeper(JobService(store, storage, enqueue, settings), settings, broker_queue_length(settings))


def main() -> None:
    """``python -m pdeforge.workers.recovery``: the sweep loop until SIGTERM / SIGINT."""
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s: %(levelname)s/sweeper] %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    make_sweeper(get_settings()).run(stop)


if __name__ == "__main__":
    main()
