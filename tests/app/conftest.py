"""Fixtures for live API tests: a real ``uvicorn`` process in front of a real cluster.

The cluster machinery (Redis DB 13 with a key prefix and queue of its own, Celery
worker processes, storage under a fresh prefix or folder) is :mod:`tests.cluster`;
:func:`start_api` adds ``python -m uvicorn pdeforge.app.main:app`` configured through the same
``PDEFORGE_*`` environment as the workers, in its own process group.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis

from tests.cluster import Cluster, GroupProcess, connect_redis, spawn
from tests.s3server import free_ports


@dataclass
class ApiServer(GroupProcess):
    """``uvicorn pdeforge.app.main:app`` on a loopback port (its own process group)."""

    url: str = ""


def start_api(cluster: Cluster, *, name: str = "api", startup_timeout: float = 60.0,
              attempts: int = 3, **settings) -> ApiServer:
    """Start the API for ``cluster`` with extra PDEForge ``settings`` (e.g. ``max_samples=10``)
    and wait until ``/healthz`` answers; retried on another port if the first was taken."""
    log_path = cluster.log_dir / f"{cluster.prefix}-{name}.log"
    env = cluster.worker_env(**settings)
    for attempt in range(attempts):
        port = free_ports(1)[0]
        cmd = [sys.executable, "-m", "uvicorn", "pdeforge.app.main:app", "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "info"]
        server = ApiServer(f"{cluster.prefix}-{name}", spawn(name, cmd, env, log_path), log_path,
                           url=f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + startup_timeout
        while time.monotonic() < deadline and server.process.poll() is None:
            try:
                if httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        early_exit = server.process.poll() is not None
        server.stop()
        if not early_exit or attempt == attempts - 1:  # only early exits (port races) are retried
            raise AssertionError(f"uvicorn did not start on {server.url}:\n{server.log_tail()}")
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    client = connect_redis()
    yield client
    client.close()
