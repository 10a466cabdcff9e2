"""`pdeforge serve` on its embedded default: bundled Redis, workers, API; nothing left after SIGTERM,
nor after SIGKILL (defect 10); a busy port is refused with a one-line hint."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def descendants(pid: int) -> set[int]:
    """All live descendants of ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def serve_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PDEFORGE_")}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return env


@pytest.fixture
def served(tmp_path):
    port = free_port()
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "pdeforge.app.cli", "serve", "--port", str(port), "--workers", "2",
                             "--submit", str(ROOT / "examples" / "quickstart.json")],
                            cwd=tmp_path, env=serve_env(), stdout=log, stderr=subprocess.STDOUT)
    yield proc, f"http://127.0.0.1:{port}", tmp_path
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    log.close()


def ready(url: str) -> bool:
    try:
        r = httpx.get(f"{url}/readyz", timeout=2)
        return r.status_code == 200 and r.json()["checks"] == {"redis": "ok", "storage": "ok"}
    except httpx.HTTPError:
        return False


def wait_for(predicate, timeout: float, what: str, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}; serve log:\n{log.read_text()[-4000:]}")


def test_serve_runs_a_job_on_the_embedded_default_and_stops_cleanly(served):
    proc, url, cwd = served
    log = cwd / "serve.log"
    wait_for(lambda: ready(url), 90, "/readyz", log)
    assert "bundled redis-server" in log.read_text()

    # `--submit` (what `make serve` uses) submitted the first example job
    spec = json.loads((ROOT / "examples" / "quickstart.json").read_text())
    jobs = wait_for(lambda: httpx.get(f"{url}/v1/jobs", timeout=5).json()["data"], 60, "the submitted job", log)
    job_id = jobs[0]["id"]
    r = httpx.post(f"{url}/v1/jobs", json=spec, timeout=10)
    assert r.status_code == 200 and r.json()["id"] == job_id, "resubmission must return the same job"

    def finished():
        job = httpx.get(f"{url}/v1/jobs/{job_id}", timeout=5).json()
        return job if job["status"] in ("succeeded", "failed", "cancelled") else None

    job = wait_for(finished, 180, "the example job", log)
    assert job["status"] == "succeeded", job
    assert job["progress"]["samples_done"] == spec["samples"]
    manifest = httpx.get(f"{url}/v1/datasets/{job_id}", timeout=5).json()
    assert manifest["samples"] == spec["samples"]
    # local storage under ./pdeforge-data of the working directory
    assert (cwd / "pdeforge-data" / "datasets" / job_id / "manifest.json").is_file()

    children = descendants(proc.pid)
    assert len(children) >= 4  # redis-server, celery main + 2 pool processes, uvicorn
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    time.sleep(0.5)
    left = [pid for pid in children if alive(pid)]
    assert not left, f"processes left behind after SIGTERM: {left}"


def test_serve_killed_with_sigkill_leaves_nothing_behind(served):
    proc, url, cwd = served
    log = cwd / "serve.log"
    wait_for(lambda: ready(url), 90, "/readyz", log)
    # redis-server, celery main + 2 pool processes + the recovery sweep, uvicorn
    children = wait_for(lambda: (c if len(c := descendants(proc.pid)) >= 6 else None), 60, "every child", log)
    proc.kill()
    proc.wait()
    left = wait_for(lambda: not [p for p in children if alive(p)] or None, 30,
                    f"the children {sorted(children)} to die with their parent", log)
    assert left
    port = int(url.rsplit(":", 1)[1])
    with socket.socket() as s:  # the port is free again
        s.bind(("127.0.0.1", port))


def test_serve_on_a_busy_port_names_the_option_and_the_variable(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "pdeforge.app.cli", "serve", "--port", str(port)], cwd=tmp_path,
                              env=serve_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--port" in lines[0] and "PDEFORGE_API_PORT" in lines[0], done.stderr
    assert "bundled redis-server" not in done.stderr  # nothing was started
