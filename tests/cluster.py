"""A real Redis + Celery + storage cluster for tests (used by tests/workers and tests/app).

Isolation on the shared Redis server (``redis://127.0.0.1:6379/13``): every test session
draws a prefix ``t<8 hex>``; each cluster gets ``<session>-<n>`` as its Redis key prefix
and ``<session>-<n>-q`` as its Celery queue, and its datasets live under
``s3://<bucket>/<session>-<n>`` (or in a folder of its own).  Kombu's keys (queue lists,
bindings, ``unacked``) are namespaced with ``<prefix>:kombu:`` by
:meth:`Settings.broker_transport_options`, so teardown deletes keys matching
``<session>-<n>*`` -- plus, for safety, the unprefixed kombu entries an older kombu would
write for our queue and worker names.  Nothing is flushed.

Workers (and the API server of tests/app) are real subprocesses started in their own
session (process group); teardown kills the whole group and checks that no process of it
survives.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from celery import Celery

from pdeforge.workers.config import Settings
from pdeforge.workers.jobs import JobService
from pdeforge.workers.services import make_storage
from pdeforge.workers.spec import JobBase, parse_spec
from pdeforge.workers.state import JobStore
from pdeforge.workers.status import TERMINAL
from pdeforge.workers.storage import Storage, open_storage

REDIS_URL = "redis://127.0.0.1:6379/13"
REPO = Path(__file__).resolve().parents[1]
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
def connect_redis(url: str = REDIS_URL) -> redis.Redis:
    """A client of the test Redis DB; skips the test when no Redis answers."""
    client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=10)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        client.close()
        pytest.fail(f"the service tests need a Redis at {url} (.ci/run starts one): {exc}")
    return client


def cleanup_redis(client: redis.Redis, prefix: str, queues: set[str], nodes: set[str]) -> int:
    """Delete the keys and kombu entries created for ``prefix`` (never anything else)."""
    count = 0
    for key in list(client.scan_iter(match=f"{prefix}*", count=1000)):
        count += client.delete(key)
    for queue in queues:
        count += client.delete(f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
    # an unprefixed kombu keeps every consumer's unacknowledged messages in one shared hash
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


# ----------------------------------------------------------------------------- processes
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
class GroupProcess:
    """A subprocess started by a test as the leader of its own process group."""

    name: str
    process: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def group_pids(self) -> list[int]:
        """Every live process of the group (leader, children, orphans)."""
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
        """SIGTERM the group (graceful shutdown), SIGKILL it if it lingers; reap; check none is left."""
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
        assert not left, f"{self.name}: processes {left} of group {self.pid} survived"


def spawn(name: str, cmd: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """Start ``cmd`` in the repository, in a new session, output appended to ``log_path``."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)


@dataclass
class Worker(GroupProcess):
    """A Celery worker started by a test (its own process group)."""

    def children(self) -> list[int]:
        return [pid for pid, (ppid, _) in _processes().items() if ppid == self.pid]

    def pool_children(self) -> list[int]:
        """The prefork pool processes (children of the worker's main process but its sweep)."""
        return [pid for pid in self.children() if not _is_sweeper(pid)]

    def sweepers(self) -> list[int]:
        """The recovery sweep process the worker started (:mod:`pdeforge.workers.recovery`)."""
        return [pid for pid in self.children() if _is_sweeper(pid)]


def _is_sweeper(pid: int) -> bool:
    try:
        return b"pdeforge.workers.recovery" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


# ----------------------------------------------------------------------------- cluster
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
        """The environment of a subprocess of this cluster; ``overrides`` are PDEForge settings."""
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
        cmd = [sys.executable, "-m", "celery", "-A", "pdeforge.workers.celery_app", "worker", "-Q", self.queue,
               "-c", str(concurrency), "--loglevel=info", "-P", "prefork", "-n", f"{name}@%h",
               "--without-mingle", "--without-gossip", "--without-heartbeat"]
        worker = Worker(name, spawn(name, cmd, self.worker_env(**settings), log_path), log_path)
        self.workers.append(worker)
        if wait_ready:
            deadline = time.monotonic() + 90
            while "ready." not in worker.log_tail(100_000):
                if worker.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"worker {name} did not start (rc={worker.process.poll()}):\n"
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


def s3_env_of(s3_server) -> dict[str, str]:
    """The PDEFORGE_S3_* variables pointing at a :class:`tests.s3server.SeaweedS3Server`."""
    return {"PDEFORGE_S3_ENDPOINT_URL": s3_server.endpoint_url, "PDEFORGE_S3_ACCESS_KEY": s3_server.access_key,
            "PDEFORGE_S3_SECRET_KEY": s3_server.secret_key}


_counter = iter(range(1_000_000))


@contextmanager
def make_cluster(redis_client: redis.Redis, log_dir: Path, *, s3_server=None,
                 local_root: Path | None = None) -> Iterator[Cluster]:
    """A cluster (no workers yet) storing datasets under a fresh prefix of ``s3_server``'s
    bucket, or in the fresh folder ``local_root``; everything it made is removed on exit."""
    if (s3_server is None) == (local_root is None):
        raise ValueError("give exactly one of s3_server and local_root")
    prefix = f"{SESSION_PREFIX}-{next(_counter)}"
    queue = f"{prefix}-q"
    if s3_server is not None:
        s3_env = s3_env_of(s3_server)
        settings = Settings(broker_url=REDIS_URL, key_prefix=prefix, queue=queue,
                            storage_url=f"s3://{s3_server.bucket}/{prefix}",
                            s3_endpoint_url=s3_server.endpoint_url, s3_access_key=s3_server.access_key,
                            s3_secret_key=s3_server.secret_key)
    else:
        s3_env = {}
        settings = Settings(broker_url=REDIS_URL, key_prefix=prefix, queue=queue,
                            storage_url=Path(local_root).resolve().as_uri())
    store = JobStore.from_url(REDIS_URL, prefix)
    storage = make_storage(settings)
    # A separate sending app: pdeforge.workers.celery_app reads the environment once, at import time.
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
        if s3_server is not None:
            open_storage(f"s3://{s3_server.bucket}", **s3_server.storage_options()).delete_prefix(prefix)
        else:
            shutil.rmtree(local_root, ignore_errors=True)
        assert not errors, errors
