"""Regression tests of the faults of issue 9 at the level of the job service, the store and the sweep.

Real Redis (DB 13 of the shared server, a key prefix of each test, only our keys deleted),
local storage in a tmp folder, and an ``enqueue`` that records the tasks it is given instead
of a broker -- so races are tested deterministically: a pause is injected between the check
and the create, and the plans enqueued are counted.  The same faults against real processes
are in ``tests/chaos`` and ``tests/workers/test_e2e.py``.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
import redis

from pdeforge.workers import keys, ledger, pipeline, services, tasks
from pdeforge.workers.config import Settings
from pdeforge.workers.errors import JobConflict, JobNotFound, LeaseLost, QuotaExceeded, public_message
from pdeforge.workers.jobs import JobService, LimitExceeded, check_batch_limits, check_limits, shard_memory_bytes
from pdeforge.workers.principals import Principal, parse_tokens, sign_session, verify_session
from pdeforge.workers.recovery import Sweeper
from pdeforge.workers.state import JobStore, Unit, lease_value
from pdeforge.workers.status import JobStatus
from pdeforge.workers.storage import open_storage

from tests.cluster import REDIS_URL, SESSION_PREFIX, cleanup_redis, make_job

ALICE, BOB, ROOT = Principal("alice"), Principal("bob"), Principal("root", admin=True)


@pytest.fixture
def env(redis_client, tmp_path):
    prefix = f"{SESSION_PREFIX}-r{uuid.uuid4().hex[:6]}"
    sent: list[tuple] = []
    lock = threading.Lock()
    failing = {"enqueue": 0}

    def enqueue(name: str, *args) -> None:
        with lock:
            if failing["enqueue"]:
                failing["enqueue"] -= 1
                raise ConnectionError("broker unreachable")
            sent.append((name, *args))

    settings = Settings(broker_url=REDIS_URL, key_prefix=prefix, storage_url=(tmp_path / "store").as_uri(),
                        lease_seconds=2, quota_jobs=3, quota_samples=100)
    store = JobStore.from_url(REDIS_URL, prefix)
    storage = open_storage(settings.storage_url)
    service = JobService(store, storage, enqueue, settings)
    yield SimpleNamespace(store=store, storage=storage, service=service, sent=sent, failing=failing,
                          settings=settings, prefix=prefix,
                          sweeper=lambda queue=0: Sweeper(service, settings, lambda: queue))
    cleanup_redis(redis_client, prefix, set(), set())
    store.r.close()


def plans(sent) -> list[tuple]:
    return [s for s in sent if s[0] == "pdeforge.plan"]


def wipe(env) -> None:
    """Redis loses everything of this deployment."""
    for key in list(env.store.r.scan_iter(match=f"{env.prefix}:*", count=1000)):
        env.store.r.delete(key)


def start_running(env, job, shards: list[str]) -> None:
    """What the plan task leaves behind: status running, one queued unit per shard."""
    env.store.update(job.dataset_id, shards_total=len(shards))
    env.store.set_status(job.dataset_id, JobStatus.RUNNING)
    now = time.time()
    env.store.set_units(job.dataset_id, [Unit(s, "queued", now, 0) for s in shards], drop=("@plan",))


# ----------------------------------------------------------------------------- 3: atomic submit
def test_fifty_concurrent_submits_create_the_job_once_and_enqueue_one_plan(env, monkeypatch):
    job = make_job(samples=12, seed=301)
    barrier = threading.Barrier(50)
    real = pipeline.write_spec

    def write_spec_then_pause(storage, spec) -> None:
        real(storage, spec)  # every submit has checked storage and stands just before the create
        barrier.wait(timeout=60)

    monkeypatch.setattr(pipeline, "write_spec", write_spec_then_pause)
    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(lambda _: env.service.submit(job, ALICE), range(50)))
    assert len(plans(env.sent)) == 1, env.sent
    assert sum(created for _, created in results) == 1
    assert {rec["id"] for rec, _ in results} == {job.dataset_id}
    monkeypatch.setattr(pipeline, "write_spec", real)

    # a later submit of the running job changes nothing: no reset of its progress, no second plan
    start_running(env, job, ["train/00000", "train/00001"])
    env.store.progress(job.dataset_id, "train/00000", 3)
    rec, created = env.service.submit(job, ALICE)
    assert not created and rec["status"] == "running" and rec["samples_done"] == 3
    assert len(plans(env.sent)) == 1


def test_new_job_is_reported_queued_even_when_a_worker_moves_it_at_once(env):
    """Defect 11: the response of a submit is the record as created, not whatever a fast worker made of it."""
    def instant_worker(name, *args):
        env.sent.append((name, *args))
        env.store.set_status(args[0], JobStatus.PLANNING)

    env.service.enqueue = instant_worker
    rec, created = env.service.submit(make_job(samples=4, seed=302), ALICE)
    assert created and rec["status"] == "queued"
    assert env.store.get(rec["id"])["status"] == "planning"


# ----------------------------------------------------------------------------- 4: enqueue failure
def test_a_plan_that_could_not_be_enqueued_is_sent_by_the_sweep(env):
    env.failing["enqueue"] = 1
    job = make_job(samples=4, seed=303)
    rec, created = env.service.submit(job, ALICE)
    assert created and rec["status"] == "queued" and not env.sent
    assert env.store.units(job.dataset_id)["@plan"].state == "queued"
    now = time.time()
    sweeper = env.sweeper(queue=0)
    sweeper.sweep(now=now)  # within the grace period: it may still be in flight
    assert not plans(env.sent)
    env.sweeper(queue=3).sweep(now=now + 60)  # the broker holds messages: it may be among them
    assert not plans(env.sent)
    sweeper.sweep(now=now + 60)  # empty broker, long ago: lost
    assert plans(env.sent) == [("pdeforge.plan", job.dataset_id)]
    sweeper.sweep(now=now + 61)  # sent once: queued again, with a fresh time
    assert len(plans(env.sent)) == 1


# ----------------------------------------------------------------------------- 2: lost shards
def test_a_shard_whose_lease_lapsed_is_resent_and_a_retry_when_due(env):
    job = make_job(samples=12, seed=304)
    env.service.submit(job, ALICE)
    start_running(env, job, ["train/00000", "train/00001", "train/00002"])
    value = lease_value()
    assert env.store.acquire(job.dataset_id, "train/00000", value, 0.5) == (1, 0)
    env.store.set_units(job.dataset_id, [Unit("train/00001", "retry", time.time() + 30, 2)])
    env.sent.clear()
    sweeper = env.sweeper(queue=5)
    sweeper.sweep()
    assert env.sent == []  # leased; retry not due; queued ones may be in the non-empty broker
    lease = env.store._k(job.dataset_id, "lease:train/00000")
    while env.store.r.exists(lease):  # the worker "died": its lease lapses
        time.sleep(0.05)
    sweeper.sweep()
    assert env.sent == [("pdeforge.solve_shard", job.dataset_id, "train", 0)]
    sweeper.sweep(now=time.time() + 31)
    assert env.sent[-1] == ("pdeforge.solve_shard", job.dataset_id, "train", 1)
    assert env.store.units(job.dataset_id)["train/00001"].retries == 2  # the backoff count is kept


def test_a_lease_of_a_dead_process_is_taken_over_at_once(env):
    job = make_job(samples=4, seed=305)
    env.service.submit(job, ALICE)
    dead = subprocess.Popen(["true"])
    dead.wait()
    ghost = f"{socket.gethostname()}:{dead.pid}:0"
    env.store.r.set(env.store._k(job.dataset_id, "lease:train/00000"), ghost, px=60_000)
    assert env.store.acquire(job.dataset_id, "train/00000", lease_value(), 60)[0] == 1
    # a live holder (this process, seen from another host name) keeps it
    live = f"elsewhere:{1}:0"
    env.store.r.set(env.store._k(job.dataset_id, "lease:train/00001"), live, px=60_000)
    assert env.store.acquire(job.dataset_id, "train/00001", lease_value(), 60)[0] == 0


def test_a_finished_job_with_no_finalize_unit_gets_one(env):
    job = make_job(samples=4, seed=306)
    env.service.submit(job, ALICE)
    start_running(env, job, ["train/00000"])
    env.store.shard_done(job.dataset_id, "train/00000", 4, 1)
    env.store.r.hdel(env.store._k(job.dataset_id, "units"), "@finalize")  # the fan-in's unit was lost
    env.sent.clear()
    env.sweeper().sweep()
    assert env.sent == [("pdeforge.finalize", job.dataset_id)]


# ----------------------------------------------------------------------------- 1: Redis blips
class Flaky:
    """A JobStore whose calls raise ConnectionError while ``down``."""

    def __init__(self, store: JobStore) -> None:
        self.store, self.down = store, False

    def __getattr__(self, name):
        attr = getattr(self.store, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            if self.down:
                raise redis.ConnectionError("Connection refused")
            return attr(*args, **kwargs)

        return call


def test_a_redis_blip_during_a_shard_neither_fails_nor_stops_it(env, monkeypatch):
    job = make_job(samples=4, seed=307)
    env.service.submit(job, ALICE)
    flaky = Flaky(env.store)
    monkeypatch.setattr(services, "store", lambda: flaky)
    monkeypatch.setattr(tasks, "get_settings", lambda: env.settings.model_copy(update={"redis_patience": 30}))
    value = lease_value()
    env.store.acquire(job.dataset_id, "train/00000", value, 2)
    guard = tasks.LeaseGuard(job.dataset_id, "train/00000", value, total=4)
    guard.progress(1)
    flaky.down = True
    guard.progress(2)  # Redis down: the solve goes on, nothing raised
    assert guard.cancelled() is False
    env.store.r.delete(env.store._k(job.dataset_id, "lease:train/00000"))  # expired during the outage

    def back_later():
        time.sleep(0.5)
        flaky.down = False

    threading.Thread(target=back_later).start()
    guard.progress(3)  # still within the quiet second: skipped
    guard.progress(4)  # the last sample waits for Redis and takes the lease again
    assert env.store.r.get(env.store._k(job.dataset_id, "lease:train/00000")) == value
    assert env.store.r.hget(env.store._k(job.dataset_id, "progress"), "train/00000") == "4"
    assert env.store.get(job.dataset_id)["status"] == "queued"  # not failed

    # but a shard whose lease another delivery took over stops without writing
    env.store.r.set(env.store._k(job.dataset_id, "lease:train/00000"), "other:1:x")
    with pytest.raises(LeaseLost):
        guard.progress(4)


# ----------------------------------------------------------------------------- 5: Redis data loss
def test_after_redis_data_loss_cancelled_stays_cancelled_and_dormant_jobs_come_back(env):
    active, cancelled = make_job(samples=4, seed=308), make_job(samples=4, seed=309)
    env.service.submit(active, ALICE)
    env.service.submit(cancelled, ALICE)
    env.service.cancel(cancelled.dataset_id, ALICE)
    wipe(env)
    env.sent.clear()

    rec = env.service.get(cancelled.dataset_id, ALICE)  # a plain GET recovers it as it ended
    assert rec["status"] == "cancelled" and not env.sent
    with pytest.raises(JobNotFound):
        env.service.get(cancelled.dataset_id, BOB)  # with its owners

    env.sweeper().sweep()  # nobody polls the active job: the sweep finds it in storage
    assert plans(env.sent) == [("pdeforge.plan", active.dataset_id)]
    assert env.store.get(active.dataset_id)["status"] == "queued"
    listed, _ = env.service.list_jobs(ALICE)
    assert {r["id"] for r in listed} == {active.dataset_id, cancelled.dataset_id}
    env.sweeper().sweep()
    assert len(plans(env.sent)) == 1


# ----------------------------------------------------------------------------- 8: ownership
def test_principals_see_and_change_only_their_own_jobs(env):
    job = make_job(samples=4, seed=310)
    env.service.submit(job, ALICE)
    for call in (lambda: env.service.get(job.dataset_id, BOB), lambda: env.service.cancel(job.dataset_id, BOB),
                 lambda: env.service.delete(job.dataset_id, BOB)):
        with pytest.raises(JobNotFound):
            call()
    assert env.service.list_jobs(BOB) == ([], None)
    assert [r["id"] for r in env.service.list_jobs(ROOT)[0]] == [job.dataset_id]
    assert env.service.get(job.dataset_id, ALICE)["status"] == "queued"


def test_shared_spec_shares_the_data_but_not_the_handle_and_data_go_with_the_last_handle(env):
    job = make_job(samples=4, seed=311)
    _, created_a = env.service.submit(job, ALICE)
    rec_b, created_b = env.service.submit(job, BOB)
    assert created_a and created_b and len(plans(env.sent)) == 1  # one run, two handles
    # alice cancels: her handle shows cancelled, the job runs on for bob
    assert env.service.cancel(job.dataset_id, ALICE)["status"] == "cancelled"
    assert env.service.get(job.dataset_id, BOB)["status"] == "queued"
    with pytest.raises(JobConflict):  # bob's handle is active on a running job
        env.service.delete(job.dataset_id, BOB)
    env.store.set_status(job.dataset_id, JobStatus.SUCCEEDED)
    env.service.delete(job.dataset_id, ALICE)  # alice's handle goes, the data stay for bob
    assert env.storage.exists(keys.spec(job.dataset_id))
    with pytest.raises(JobNotFound):
        env.service.get(job.dataset_id, ALICE)
    assert env.service.get(job.dataset_id, BOB)["status"] == "succeeded"
    env.service.delete(job.dataset_id, BOB)  # the last handle: everything goes
    assert not list(env.storage.list(keys.prefix(job.dataset_id)))
    assert not list(env.storage.list(keys.job_folder(job.dataset_id)))
    assert not env.store.exists(job.dataset_id)


def test_cancel_by_the_last_active_owner_stops_the_job_and_survives_redis_loss(env):
    job = make_job(samples=4, seed=312)
    env.service.submit(job, ALICE)
    env.service.submit(job, BOB)
    env.service.cancel(job.dataset_id, ALICE)
    rec = env.service.cancel(job.dataset_id, BOB)
    assert rec["status"] == "cancelled" and env.store.get(job.dataset_id)["status"] == "cancelled"
    assert ledger.read_state(env.storage, job.dataset_id)["status"] == "cancelled"
    wipe(env)
    assert env.service.get(job.dataset_id, BOB)["status"] == "cancelled"


def test_quotas_of_active_jobs_and_samples_in_flight(env):
    jobs = [make_job(samples=30, seed=320 + i) for i in range(4)]
    for job in jobs[:3]:
        env.service.submit(job, ALICE)
    with pytest.raises(QuotaExceeded) as info:  # quota_jobs=3
        env.service.submit(jobs[3], ALICE)
    assert info.value.quota == "jobs" and info.value.limit == 3
    env.service.submit(jobs[3], BOB)  # bob has his own quota
    env.store.set_status(jobs[0].dataset_id, JobStatus.SUCCEEDED)  # a finished job frees its slot
    with pytest.raises(QuotaExceeded) as info:  # 60 + 50 samples in flight > 100
        env.service.submit(make_job(samples=50, seed=330), ALICE)
    assert info.value.quota == "samples"
    env.service.submit(make_job(samples=40, seed=331), ALICE)
    env.service.submit(make_job(samples=90, seed=332), ROOT)  # admins are not limited
    estimate = env.service.estimate(make_job(samples=10, seed=333), ALICE)
    assert not estimate["accepted"] and estimate["refusals"][0]["code"] == "quota_exceeded"


# ----------------------------------------------------------------------------- 7: memory limits
def test_limits_bound_the_memory_of_a_shard_and_the_size_of_a_batch():
    settings = Settings()
    big = make_job(n=512, samples=76_000, shard_samples=76_000)
    assert shard_memory_bytes(big) > 10**11
    with pytest.raises(LimitExceeded, match=r"use output.shard_samples <= \d+") as info:
        check_limits(big, settings)
    assert info.value.field == "output.shard_samples" and info.value.limit == settings.max_shard_bytes
    fitting = int(str(info.value).rsplit("<= ", 1)[1])
    check_limits(make_job(n=512, samples=76_000, shard_samples=fitting), settings)
    with pytest.raises(LimitExceeded, match="samples per batch") as info:
        check_batch_limits([make_job(n=8, samples=10**6, seed=i) for i in range(200)], settings)
    assert info.value.field == "specs"


def test_estimate_states_samples_bytes_memory_and_time(env):
    job = make_job(n=32, samples=40, shard_samples=10, seed=340)
    est = env.service.estimate(job, ALICE)
    assert est["samples"] == 40 and est["shards"] >= 4 and est["accepted"]
    assert est["bytes"] == 40 * 32 * 32 * 2 * 4  # a and y in float32
    assert est["shard_memory_bytes"] == shard_memory_bytes(job) and est["core_seconds"] > 0
    assert not env.sent and not env.store.exists(job.dataset_id)  # nothing queued


# ----------------------------------------------------------------------------- 9: errors, readiness
def test_public_messages_carry_no_traceback_and_no_server_path():
    exc = OSError(28, "No space left on device", "/srv/pdeforge/tmp/pdeforge-shard-x.h5")
    text = public_message(exc)
    assert text == "OSError: [Errno 28] No space left on device: '<path>'"
    tb = 'ValueError: bad\nTraceback (most recent call last):\n  File "/usr/lib/python3/x.py", line 1'
    assert public_message(tb) == "ValueError: bad"
    assert public_message("key datasets/abc/x on http://minio:9000/bucket") == \
        "key datasets/abc/x on http://minio:9000/bucket"


def test_a_failing_task_stores_a_one_line_error_with_a_code(env, monkeypatch):
    job = make_job(samples=4, seed=341)
    env.service.submit(job, ALICE)
    monkeypatch.setattr(services, "store", lambda: env.store)
    monkeypatch.setattr(services, "storage", lambda: env.storage)
    try:
        raise FileNotFoundError(2, "No such file", "/var/lib/secret/x.h5")
    except FileNotFoundError as exc:
        tasks._fail(job.dataset_id, "shard_failed", f"shard train/00000: {public_message(exc)}\n"
                                                    "Traceback (most recent call last): ...")
    rec = env.store.get(job.dataset_id)
    assert rec["status"] == "failed" and rec["error_code"] == "shard_failed"
    assert "Traceback" not in rec["error"] and "/var/lib" not in rec["error"], rec["error"]
    assert ledger.read_state(env.storage, job.dataset_id)["error_code"] == "shard_failed"


def test_readiness_reports_storage_that_cannot_be_written(env, monkeypatch):
    from pdeforge.workers.errors import StorageError

    assert env.service.readiness() == {"redis": "ok", "storage": "ok"}

    def full(*args, **kwargs):
        raise StorageError("cannot write: No space left on device", code="ENOSPC")

    monkeypatch.setattr(env.storage, "put_bytes", full)
    assert env.service.readiness() == {"redis": "ok", "storage": "not writable: ENOSPC"}


# ----------------------------------------------------------------------------- principals
def test_token_entries_name_principals_and_sessions_expire():
    principals = parse_tokens(["alice:tokA", "plainTok"], {"alice"})
    assert principals["tokA"] == Principal("alice", admin=True)
    assert principals["plainTok"].name.startswith("token-") and not principals["plainTok"].admin
    with pytest.raises(ValueError, match="twice"):
        parse_tokens(["a:x", "b:x"], set())
    with pytest.raises(ValueError, match="unknown principals"):
        parse_tokens(["a:x"], {"zed"})
    key = b"k" * 32
    value = sign_session("alice", time.time() + 60, key)
    assert verify_session(value, key) == "alice"
    assert verify_session(value, b"other" * 8) is None
    assert verify_session(value.replace("alice", "mallory"), key) is None
    assert verify_session(sign_session("alice", time.time() - 1, key), key) is None


def test_batches_belong_to_their_principal_and_survive_redis_loss(env):
    from pdeforge.workers.errors import BatchNotFound

    batch_id, recs = env.service.submit_batch([make_job(samples=4, seed=350), make_job(samples=4, seed=351)], ALICE)
    assert [r["status"] for r in env.service.batch(batch_id, ALICE)] == ["queued", "queued"]
    with pytest.raises(BatchNotFound):
        env.service.batch(batch_id, BOB)
    assert len(env.service.batch(batch_id, ROOT)) == 2
    other_id, _ = env.service.submit_batch([make_job(samples=4, seed=350), make_job(samples=4, seed=351)], BOB)
    assert other_id != batch_id  # the same specs by another principal: another batch
    wipe(env)
    assert [r["id"] for r in env.service.batch(batch_id, ALICE)] == [r["id"] for r in recs]
