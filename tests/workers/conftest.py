"""Fixtures for the dataset pipeline: job specs, and a real Redis + Celery + SeaweedFS cluster.

Isolation on the shared Redis server (``redis://127.0.0.1:6379/13``): every test session
draws a prefix ``t<8 hex>``; each cluster gets ``<session>-<n>`` as its Redis key prefix
and ``<session>-<n>-q`` as its Celery queue, and its datasets live under
``s3://<bucket>/<session>-<n>``.  Teardown deletes only what the session created: keys
matching ``<session>*`` (job state, the queue lists), ``_kombu.binding.<our queue>`` and
``_kombu.binding_permanent.<our queue>``, the
entries of kombu's shared ``unacked`` hash whose routing key is one of our queues, and
our workers' members of the ``celery.pidbox`` binding set.  Nothing is flushed.

Workers are real ``python -m celery -A workers.celery_app worker`` processes started in
their own session (process group); teardown kills the whole group and checks that no
process of it survives.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from celery import Celery

from workers.config import Settings
from workers.jobs import JobService
from workers.services import make_storage
from workers.spec import JobBase, parse_spec
from workers.state import TERMINAL, JobStore
from workers.storage import Storage, open_storage

REDIS_URL = "redis://127.0.0.1:6379/13"
REPO = Path(__file__).resolve().parents[2]
SESSION_PREFIX = f"t{uuid.uuid4().hex[:8]}"


# ----------------------------------------------------------------------------- specs
def make_job(family: str = "darcy", *, n: int = 16, samples: int = 12, seed: int = 0,
             shard_samples: int = 4, **extra) -> JobBase:
    """A validated job spec; ``extra`` entries (solver, output, split, params) are merged in."""
    data: dict = {"family": family, "grid": {"n": n}, "samples": samples, "seed": seed,
                  "output": {"shard_samples": shard_samples}}
    for key, value in extra.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_spec(data)


#: ~0.1-0.2 s per 64^2 darcy sample on one core: slow enough to act in the middle of a shard
SLOW_SOLVER = {"engine": "gmres", "preconditioner": "none", "restart": 20, "recycle": 10}


# ----------------------------------------------------------------------------- redis
@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True, socket_timeout=10)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.skip(f"no Redis at {REDIS_URL}: {exc}")
    yield client
    client.close()


def cleanup_redis(client: redis.Redis, prefix: str, queues: set[str], nodes: set[str]) -> int:
    """Delete the keys and kombu entries created for ``prefix`` (never anything else)."""
    count = 0
    for key in list(client.scan_iter(match=f"{prefix}*", count=1000)):
        count += client.delete(key)
    for queue in queues:
        count += client.delete(f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
    # kombu keeps every consumer's unacknowledged messages in one shared hash
    for tag, payload in list(client.hscan_iter("unacked", count=1000)):
        try:
            routing_key = json.loads(payload)[2]
        except (ValueError, IndexError, TypeError):
            continue
        if routing_key in queues:
            count += client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)
    for member in list(client.sscan_iter("_kombu.binding.celery.pidbox")):
        if any(node in member for node in nodes):
            count += client.srem("_kombu.binding.celery.pidbox", member)
    return count


# ----------------------------------------------------------------------------- workers
def _processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) of every live (non-zombie) process, from /proc."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited meanwhile
        if fields[0] != "Z":
            out[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return out


@dataclass
class Worker:
    """A Celery worker started by a test (its own process group)."""

    name: str
    process: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def pool_children(self) -> list[int]:
        """The prefork pool processes (children of the worker's main process)."""
        return [pid for pid, (ppid, _) in _processes().items() if ppid == self.pid]

    def group_pids(self) -> list[int]:
        """Every live process of the worker's process group (main, pool, orphans)."""
        return [pid for pid, (_, pgrp) in _processes().items() if pgrp == self.pid]

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the group (warm shutdown), SIGKILL it if it lingers; reap; check none is left."""
        if self.process.poll() is None:
            self.kill_group(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill_group(signal.SIGKILL)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            pass
        deadline = time.monotonic() + 10
        while self.group_pids() and time.monotonic() < deadline:
            self.kill_group(signal.SIGKILL)
            time.sleep(0.1)
        left = self.group_pids()
        assert not left, f"worker {self.name}: processes {left} of group {self.pid} survived"


@dataclass
class Cluster:
    """Job store, storage, a JobService and workers sharing one key prefix and queue."""

    prefix: str
    queue: str
    settings: Settings
    store: JobStore
    storage: Storage
    service: JobService
    sender: Celery
    s3_env: dict[str, str]
    log_dir: Path
    workers: list[Worker] = field(default_factory=list)

    def worker_env(self, **overrides) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PDEFORGE_")}
        env.update({
            "PDEFORGE_BROKER_URL": REDIS_URL,
            "PDEFORGE_KEY_PREFIX": self.prefix,
            "PDEFORGE_QUEUE": self.queue,
            "PDEFORGE_STORAGE_URL": self.settings.storage_url,
            **self.s3_env,
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
        })
        env.update({f"PDEFORGE_{k.upper()}": str(v) for k, v in overrides.items()})
        return env

    def start_worker(self, concurrency: int = 1, *, wait_ready: bool = True, **settings) -> Worker:
        """Start ``celery worker`` with PDEForge settings ``settings`` (e.g. max_attempts=1)."""
        name = f"{self.prefix}-w{len(self.workers)}"
        log_path = self.log_dir / f"{name}.log"
        cmd = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker", "-Q", self.queue,
               "-c", str(concurrency), "--loglevel=info", "-P", "prefork", "-n", f"{name}@%h",
               "--without-mingle", "--without-gossip", "--without-heartbeat"]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(cmd, cwd=REPO, env=self.worker_env(**settings), stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        worker = Worker(name, process, log_path)
        self.workers.append(worker)
        if wait_ready:
            deadline = time.monotonic() + 90
            while "ready." not in worker.log_tail(100_000):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"worker {name} did not start (rc={process.poll()}):\n"
                                         f"{worker.log_tail()}")
                time.sleep(0.2)
        return worker

    def logs(self) -> str:
        return "\n".join(f"--- {w.name} ---\n{w.log_tail(3000)}" for w in self.workers)

    # ----- polling -------------------------------------------------------------------------
    def wait_for(self, job_id: str, predicate: Callable[[dict], bool], *, timeout: float = 120.0,
                 what: str = "condition", interval: float = 0.05) -> dict:
        """Poll the job record until ``predicate(record)``; fail with the record and worker logs."""
        deadline = time.monotonic() + timeout
        rec: dict | None = None
        while time.monotonic() < deadline:
            rec = self.store.get(job_id)
            if rec is not None and predicate(rec):
                return rec
            time.sleep(interval)
        raise AssertionError(f"job {job_id}: no {what} within {timeout:.0f} s; record: {rec}\n{self.logs()}")

    def wait_terminal(self, job_id: str, timeout: float = 120.0) -> dict:
        return self.wait_for(job_id, lambda r: r["status"] in TERMINAL, timeout=timeout,
                             what="terminal status")

    def wait_succeeded(self, job_id: str, timeout: float = 120.0) -> dict:
        rec = self.wait_terminal(job_id, timeout)
        assert rec["status"] == "succeeded", f"job {job_id} did not succeed: {rec}\n{self.logs()}"
        return rec

    def progress(self, job_id: str) -> dict[str, int]:
        """Samples finished per shard name (the job's progress hash)."""
        return {k: int(v) for k, v in self.store.r.hgetall(self.store._k(job_id, "progress")).items()}

    def wait_mid_shard(self, job_id: str, shard_sizes: dict[str, int], timeout: float = 120.0) -> str:
        """Wait until one of the shards ``shard_sizes`` (name -> samples) is part-way done
        (0 < progress < size - 1); returns its name."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, done in self.progress(job_id).items():
                if name in shard_sizes and 0 < done < shard_sizes[name] - 1:
                    return name
            time.sleep(0.02)
        raise AssertionError(f"job {job_id}: no shard caught mid-way; progress {self.progress(job_id)}; "
                             f"record {self.store.get(job_id)}\n{self.logs()}")


@pytest.fixture(scope="session")
def s3_env(s3_server) -> dict[str, str]:
    return {"PDEFORGE_S3_ENDPOINT_URL": s3_server.endpoint_url, "PDEFORGE_S3_ACCESS_KEY": s3_server.access_key,
            "PDEFORGE_S3_SECRET_KEY": s3_server.secret_key}


_counter = iter(range(1_000_000))


@contextmanager
def _make_cluster(redis_client, s3_server, s3_env, log_dir: Path) -> Iterator[Cluster]:
    prefix = f"{SESSION_PREFIX}-{next(_counter)}"
    queue = f"{prefix}-q"
    settings = Settings(broker_url=REDIS_URL, key_prefix=prefix, queue=queue,
                        storage_url=f"s3://{s3_server.bucket}/{prefix}",
                        s3_endpoint_url=s3_server.endpoint_url, s3_access_key=s3_server.access_key,
                        s3_secret_key=s3_server.secret_key)
    store = JobStore.from_url(REDIS_URL, prefix)
    storage = make_storage(settings)
    # A separate sending app: workers.celery_app reads the environment once, at import time.
    sender = Celery(f"{prefix}-sender", broker=REDIS_URL, set_as_current=False)
    sender.conf.update(task_serializer="json", accept_content=["json"], broker_connection_retry_on_startup=True,
                       broker_transport_options=settings.broker_transport_options())

    def enqueue(name: str, *args) -> None:
        sender.send_task(name, args=list(args), queue=queue)

    cluster = Cluster(prefix, queue, settings, store, storage, JobService(store, storage, enqueue), sender,
                      s3_env, log_dir)
    try:
        yield cluster
    finally:
        errors = []
        for worker in cluster.workers:
            try:
                worker.stop()
            except AssertionError as exc:
                errors.append(str(exc))
        sender.close()
        cleanup_redis(redis_client, prefix, {queue}, {w.name for w in cluster.workers})
        store.r.close()
        open_storage(f"s3://{s3_server.bucket}", **s3_server.storage_options()).delete_prefix(prefix)
        assert not errors, errors


@pytest.fixture(scope="module")
def cluster(redis_client, s3_server, s3_env, tmp_path_factory) -> Iterator[Cluster]:
    """A cluster with one default-settings worker (``-c 2``), shared by a test module."""
    with _make_cluster(redis_client, s3_server, s3_env, tmp_path_factory.mktemp("workers")) as c:
        c.start_worker(concurrency=2)
        yield c


@pytest.fixture
def new_cluster(redis_client, s3_server, s3_env, tmp_path) -> Iterator[Cluster]:
    """A cluster of this test only, without workers (the test starts them with its settings)."""
    with _make_cluster(redis_client, s3_server, s3_env, tmp_path) as c:
        yield c
