"""The Python client and the client commands of the CLI against the real API.

The real FastAPI app (:func:`pdeforge.app.main.create_app`) runs in a real uvicorn server on a
free loopback port, in a thread, with job state in real Redis (DB 14, a unique key
prefix, deleted at teardown -- nothing is flushed) and datasets in a tmp folder.
Instead of Celery, ``enqueue`` hands the task to :class:`InlineWorker`: one thread that
runs the bodies of the real tasks (``pdeforge.workers.tasks.plan.run(job_id)`` ...) in order, with
their follow-up ``enqueue`` calls routed back to it.  The worker can be paused (to catch
a job while it is queued) and told to fail the shards of chosen seeds.

One test also runs the API over a real SeaweedFS S3 server, where file downloads are
307 redirects to presigned URLs on another port.
"""

from __future__ import annotations

import hashlib
import json
import queue
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
import uvicorn
from typer.testing import CliRunner

import pdeforge.workers.pipeline
import pdeforge.workers.services
import pdeforge.workers.tasks
from pdeforge.app.cli import cli
from pdeforge.app.client import ChecksumMismatch, PDEForgeClient, PDEForgeConnectionError, PDEForgeHTTPError
from pdeforge.app.main import create_app
from pdeforge.workers.config import Settings
from pdeforge.workers.services import make_storage, make_store
from pdeforge.workers.storage import open_storage

REDIS_URL = "redis://127.0.0.1:6379/14"
TOKEN = "s3cret-token"
_seeds = count(1000)


def spec(seed: int | None = None, *, samples: int = 6, shard_samples: int = 2, n: int = 16) -> dict:
    """A tiny darcy spec; every call without ``seed`` names a new dataset."""
    return {"family": "darcy", "grid": {"n": n}, "samples": samples,
            "seed": next(_seeds) if seed is None else seed, "output": {"shard_samples": shard_samples}}


# ----------------------------------------------------------------------------- fixtures' pieces
class InlineWorker:
    """Runs the real Celery task bodies, in order, on one thread (no broker)."""

    TASKS = {"pdeforge.plan": pdeforge.workers.tasks.plan, "pdeforge.solve_shard": pdeforge.workers.tasks.solve_shard,
             "pdeforge.finalize": pdeforge.workers.tasks.finalize}

    def __init__(self) -> None:
        self.queue: queue.Queue = queue.Queue()
        self.gate = threading.Event()
        self.gate.set()
        self.errors: list[str] = []
        self.fail_seeds: set[int] = set()
        self.thread = threading.Thread(target=self._loop, name="inline-worker", daemon=True)
        self.thread.start()

    def enqueue(self, name: str, *args) -> None:
        self.queue.put((name, args))

    def _loop(self) -> None:
        while (item := self.queue.get()) is not None:
            self.gate.wait()
            name, args = item
            try:
                self.TASKS[name].run(*args)
            except Exception:  # the tasks handle their own errors; anything else is a bug
                self.errors.append(traceback.format_exc())

    @contextmanager
    def paused(self) -> Iterator[None]:
        self.gate.clear()
        try:
            yield
        finally:
            self.gate.set()

    def solve_shard(self, original):
        def solve(storage, job, shard, **kwargs):
            if job.seed in self.fail_seeds:
                raise RuntimeError(f"injected failure for seed {job.seed}")
            return original(storage, job, shard, **kwargs)
        return solve

    def stop(self) -> None:
        self.gate.set()
        self.queue.put(None)
        self.thread.join(30)


class ServerThread:
    """A uvicorn server on a free 127.0.0.1 port, in a background thread."""

    def __init__(self, app) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if not self.thread.is_alive():
                break
            time.sleep(0.05)
        raise RuntimeError(f"uvicorn did not start on {self.url}")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()


class RecordingTransport(httpx.BaseTransport):
    """Records every request (URL, headers) and the body bytes received for it."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.records: list[dict] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        record = {"url": request.url, "headers": dict(request.headers), "status": response.status_code,
                  "bytes": 0}
        self.records.append(record)
        return httpx.Response(response.status_code, headers=response.headers,
                              stream=_Counting(response.stream, record), extensions=response.extensions)

    def close(self) -> None:
        self.inner.close()

    def for_file(self, path: str) -> list[dict]:
        return [r for r in self.records if r["url"].path.endswith("/files/" + path)]


class _Counting(httpx.SyncByteStream):
    def __init__(self, inner, record: dict) -> None:
        self.inner, self.record = inner, record

    def __iter__(self):
        for chunk in self.inner:
            self.record["bytes"] += len(chunk)
            yield chunk

    def close(self) -> None:
        self.inner.close()


@dataclass
class Stack:
    """API servers (open, and with a token) over one Redis prefix and one storage."""

    settings: Settings
    storage: object
    worker: InlineWorker
    url: str
    auth_url: str
    clients: list[PDEForgeClient] = field(default_factory=list)

    def client(self, *, auth: bool = False, token: str | None = None, transport=None) -> PDEForgeClient:
        c = PDEForgeClient(self.auth_url if auth else self.url, token=token, timeout=30, transport=transport)
        self.clients.append(c)
        return c

    def stored_bytes(self, dataset_id: str, path: str) -> bytes:
        return self.storage.get_bytes(f"datasets/{dataset_id}/{path}")


def _cleanup_redis(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@contextmanager
def running_stack(storage_url: str, **settings_kw) -> Iterator[Stack]:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.fail(f"the service tests need a Redis at {REDIS_URL} (.ci/run starts one): {exc}")
    prefix = f"tc{uuid.uuid4().hex[:12]}"
    settings = Settings(broker_url=REDIS_URL, key_prefix=prefix, queue=f"{prefix}-q", storage_url=storage_url,
                        **settings_kw)
    store, storage = make_store(settings), make_storage(settings)
    worker = InlineWorker()
    patch = pytest.MonkeyPatch()
    servers: list[ServerThread] = []
    stack = None
    try:
        patch.setattr(pdeforge.workers.tasks, "enqueue", worker.enqueue)
        patch.setattr(pdeforge.workers.tasks, "get_settings", lambda: settings)
        patch.setattr(pdeforge.workers.services, "store", lambda: store)
        patch.setattr(pdeforge.workers.services, "storage", lambda: storage)
        patch.setattr(pdeforge.workers.pipeline, "solve_shard", worker.solve_shard(pdeforge.workers.pipeline.solve_shard))
        open_app = create_app(settings, enqueue=worker.enqueue)
        # an admin token: it sees the jobs submitted through the open app (by the anonymous principal)
        auth_app = create_app(settings.model_copy(update={"api_tokens": f"ops:{TOKEN}", "api_admins": "ops"}),
                              enqueue=worker.enqueue)
        servers = [ServerThread(open_app).start(), ServerThread(auth_app).start()]
        stack = Stack(settings, storage, worker, servers[0].url, servers[1].url)
        yield stack
    finally:
        for c in stack.clients if stack else []:
            c.close()
        for s in servers:
            s.stop()
        worker.stop()
        patch.undo()
        store.r.close()
        _cleanup_redis(prefix)
    assert not worker.errors, worker.errors


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    with running_stack((tmp_path_factory.mktemp("storage")).as_uri()) as s:
        yield s


@pytest.fixture(scope="module")
def dataset(stack) -> tuple[str, dict]:
    """One finished dataset: (id, manifest)."""
    api = stack.client()
    job = api.wait(api.submit(spec(samples=8, shard_samples=3))["id"], poll=0.05, timeout=120)
    assert job["status"] == "succeeded", job
    return job["id"], api.manifest(job["id"])


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_complete(folder: Path, manifest: dict) -> None:
    for entry in manifest["files"]:
        f = folder / entry["path"]
        assert f.is_file(), f
        assert f.stat().st_size == entry["bytes"]
        assert sha256(f) == entry["sha256"]
    assert json.loads((folder / "manifest.json").read_text()) == manifest
    assert not list(folder.rglob("*.part"))


# ----------------------------------------------------------------------------- client
def test_submit_wait_download_round_trip(stack, tmp_path):
    api = stack.client()
    data = spec(samples=7, shard_samples=2)
    job = api.submit(data)
    assert job["status"] in ("queued", "planning", "running", "finalizing", "succeeded")
    seen: list[dict] = []
    final = api.wait(job["id"], poll=0.05, timeout=120, on_update=seen.append)
    assert final["status"] == "succeeded", final
    assert final["progress"]["samples_done"] == 7 and final["progress"]["fraction"] == 1.0
    assert final["solver"]["residual_max"] < 1e-6
    done = [s["progress"]["samples_done"] for s in seen]
    assert done == sorted(done) and seen[-1] == final
    again = api.submit(data)  # the same spec names the same dataset
    assert again["id"] == job["id"] and again["status"] == "succeeded"

    calls: list[tuple[str, int, int]] = []
    folder = api.download(job["id"], tmp_path / "ds", on_progress=lambda *a: calls.append(a))
    manifest = api.manifest(job["id"])
    assert folder == tmp_path / "ds"
    assert_complete(folder, manifest)
    for entry in manifest["files"]:  # byte for byte what the server stored
        assert (folder / entry["path"]).read_bytes() == stack.stored_bytes(job["id"], entry["path"])
        assert (entry["path"], entry["bytes"], entry["bytes"]) in calls
    assert any(e["path"].startswith("data/") for e in manifest["files"])


def test_download_resumes_a_partial_file_with_range(stack, dataset, tmp_path):
    job_id, manifest = dataset
    entry = max(manifest["files"], key=lambda e: e["bytes"])
    full = stack.stored_bytes(job_id, entry["path"])
    half = len(full) // 2
    part = tmp_path / (entry["path"] + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(full[:half])

    recorder = RecordingTransport()
    stack.client(transport=recorder).download(job_id, tmp_path)
    assert_complete(tmp_path, manifest)
    [record] = recorder.for_file(entry["path"])
    assert record["headers"]["range"] == f"bytes={half}-"
    assert record["status"] == 206
    assert record["bytes"] == len(full) - half  # only the remainder came over the wire
    for other in manifest["files"]:
        if other["path"] != entry["path"]:
            [r] = recorder.for_file(other["path"])
            assert r["status"] == 200 and "range" not in r["headers"] and r["bytes"] == other["bytes"]


def test_download_skips_verified_files_and_refetches_a_corrupted_one(stack, dataset, tmp_path):
    job_id, manifest = dataset
    api = stack.client()
    api.download(job_id, tmp_path)
    victim = next(e for e in manifest["files"] if e["path"].endswith(".h5"))
    data = bytearray((tmp_path / victim["path"]).read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, wrong content
    (tmp_path / victim["path"]).write_bytes(bytes(data))

    recorder = RecordingTransport()
    stack.client(transport=recorder).download(job_id, tmp_path)
    assert_complete(tmp_path, manifest)
    file_requests = [r for r in recorder.records if "/files/" in r["url"].path]
    assert len(file_requests) == 1 and file_requests[0]["url"].path.endswith(victim["path"])
    assert "range" not in file_requests[0]["headers"] and file_requests[0]["bytes"] == victim["bytes"]


def test_a_corrupt_partial_file_fails_the_checksum_and_is_deleted(stack, dataset, tmp_path):
    job_id, manifest = dataset
    entry = next(e for e in manifest["files"] if e["path"].endswith(".h5"))
    part = tmp_path / (entry["path"] + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * (entry["bytes"] // 3))  # not a prefix of the real file
    api = stack.client()
    with pytest.raises(ChecksumMismatch) as info:
        api.download(job_id, tmp_path)
    assert info.value.path == entry["path"] and info.value.expected == entry["sha256"]
    assert not part.exists() and not (tmp_path / entry["path"]).exists()
    assert not (tmp_path / "manifest.json").exists()  # an incomplete folder has no manifest
    api.download(job_id, tmp_path)
    assert_complete(tmp_path, manifest)


def test_sample_as_json_and_npy(stack, dataset):
    job_id, manifest = dataset
    api = stack.client()
    for index in (0, manifest["samples"] - 1):
        js = api.sample(job_id, index)
        arr = api.sample(job_id, index, format="npy")
        assert js["index"] == index == int(arr["index"])
        assert arr.dtype.names == ("x", "y", "index", "residual")
        np.testing.assert_allclose(arr["x"], np.asarray(js["x"]), rtol=1e-6)
        np.testing.assert_allclose(arr["y"], np.asarray(js["y"]), rtol=1e-6)
        assert float(arr["residual"]) == pytest.approx(js["solver"]["residual"])
    with pytest.raises(PDEForgeHTTPError) as info:
        api.sample(job_id, manifest["samples"])
    assert info.value.status == 404 and "out of range" in info.value.detail
    with pytest.raises(ValueError):
        api.sample(job_id, 0, format="csv")


def test_jobs_iterates_over_every_page(stack):
    api = stack.client()
    ids = [api.submit(spec(samples=2))["id"] for _ in range(3)]
    for job_id in ids:
        api.wait(job_id, poll=0.05, timeout=120)
    recorder = RecordingTransport()
    paged = [j["id"] for j in stack.client(transport=recorder).jobs(page_size=1)]
    pages = [r for r in recorder.records if r["url"].path == "/v1/jobs"]
    assert len(pages) == len(paged) >= 3  # one job per page, no page fetched twice
    assert "page_token" not in pages[0]["url"].params
    assert all("page_token" in p["url"].params for p in pages[1:])
    assert len(set(paged)) == len(paged)
    assert paged == [j["id"] for j in api.jobs(page_size=200)]
    assert paged[:3] == ids[::-1]  # newest first
    assert set(ids) <= {j["id"] for j in api.jobs(status="succeeded", page_size=2)}
    assert all(j["status"] == "succeeded" for j in api.jobs(status="succeeded"))


def test_http_errors_carry_detail_and_field_errors(stack):
    api = stack.client()
    with pytest.raises(PDEForgeHTTPError) as info:
        api.submit({"family": "darcy", "grid": {"n": 4}, "samples": 0})
    err = info.value
    assert err.status == 422 and err.detail.startswith("invalid request")
    fields = {e["field"] for e in err.errors}
    assert {"grid.n", "samples"} <= fields
    assert any(e.get("allowed") == ">= 8" for e in err.errors if e["field"] == "grid.n")

    with pytest.raises(PDEForgeHTTPError) as info:
        api.submit(spec(samples=2_000_000))
    assert info.value.status == 413 and info.value.errors[0]["field"] == "samples"

    with pytest.raises(PDEForgeHTTPError) as info:
        api.submit_batch([spec(), {"family": "darcy", "samples": -1}])
    assert info.value.status == 422 and any(e["field"].startswith("specs.1") for e in info.value.errors)

    with pytest.raises(PDEForgeHTTPError) as info:
        api.job("0123456789abcdef")
    assert info.value.status == 404
    with pytest.raises(PDEForgeHTTPError) as info:
        api.family("nope")
    assert info.value.status == 404 and "valid names" in info.value.detail
    assert "darcy" in {f["name"] for f in api.families()}


def test_wait_timeout_cancel_and_batches(stack):
    api = stack.client()
    with stack.worker.paused():
        job = api.submit(spec())
        with pytest.raises(TimeoutError):
            api.wait(job["id"], poll=0.02, timeout=0.2)
        assert api.cancel(job["id"])["status"] == "cancelled"
        assert api.wait(job["id"], poll=0.02, timeout=30)["status"] == "cancelled"
    batch = api.submit_batch([spec(samples=2), spec(samples=3)])
    assert len(batch["jobs"]) == 2 and batch["progress"]["samples_total"] == 5
    final = api.wait_batch(batch["id"], poll=0.05, timeout=120)
    assert final["status"] == "succeeded" and final["counts"] == {"succeeded": 2}
    assert api.batch(batch["id"])["progress"]["samples_done"] == 5


def test_bearer_token(stack, dataset):
    job_id, _ = dataset
    with pytest.raises(PDEForgeHTTPError) as info:
        stack.client(auth=True).families()
    assert info.value.status == 401 and info.value.detail == "missing bearer token"
    with pytest.raises(PDEForgeHTTPError) as info:
        stack.client(auth=True, token="wrong").job(job_id)
    assert info.value.status == 403
    recorder = RecordingTransport()
    api = stack.client(auth=True, token=TOKEN, transport=recorder)
    assert api.job(job_id)["status"] == "succeeded"
    assert recorder.records[-1]["headers"]["authorization"] == f"Bearer {TOKEN}"


def test_token_and_url_come_from_the_environment(monkeypatch, stack, dataset):
    monkeypatch.setenv("PDEFORGE_URL", stack.auth_url)
    monkeypatch.setenv("PDEFORGE_TOKEN", TOKEN)
    with PDEForgeClient() as api:
        assert api.base_url == stack.auth_url
        assert api.job(dataset[0])["status"] == "succeeded"


def test_unreachable_server_is_a_connection_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = "http://127.0.0.1:%d" % s.getsockname()[1]
    with PDEForgeClient(url) as api, pytest.raises(PDEForgeConnectionError) as info:
        api.families()
    assert url in str(info.value)


def test_a_server_that_ignores_range_gets_the_whole_file_again(tmp_path):
    """Unit test on a fake server (httpx.MockTransport): a 200 answer to a Range request
    restarts the file instead of appending to the partial one."""
    body = bytes(range(256)) * 40
    manifest = {"files": [{"path": "data/train/shard_00000.h5", "bytes": len(body),
                           "sha256": hashlib.sha256(body).hexdigest()}], "samples": 1}
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/v1/datasets/0123456789abcdef":
            return httpx.Response(200, json=manifest)
        return httpx.Response(200, content=body)  # no Range support

    part = tmp_path / "data/train/shard_00000.h5.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"garbage!" * 100)
    with PDEForgeClient("http://api.test", transport=httpx.MockTransport(handler)) as api:
        api.download("0123456789abcdef", tmp_path)
    assert seen[-1].headers["range"] == "bytes=800-"
    assert (tmp_path / "data/train/shard_00000.h5").read_bytes() == body
    assert not part.exists()


# ----------------------------------------------------------------------------- S3 redirects
def test_download_follows_presigned_redirects_without_the_token(s3_server, tmp_path):
    """S3 storage: files are 307s to presigned URLs on another port; the bearer token goes
    to the API only, and Range resumption works against S3 too."""
    prefix = f"tc-{uuid.uuid4().hex[:12]}"
    try:
        with running_stack(f"s3://{s3_server.bucket}/{prefix}", s3_endpoint_url=s3_server.endpoint_url,
                           s3_access_key=s3_server.access_key, s3_secret_key=s3_server.secret_key) as s3stack:
            api = s3stack.client(auth=True, token=TOKEN)
            job = api.wait(api.submit(spec(samples=5))["id"], poll=0.05, timeout=120)
            assert job["status"] == "succeeded", job
            manifest = api.manifest(job["id"])
            entry = max(manifest["files"], key=lambda e: e["bytes"])
            full = s3stack.stored_bytes(job["id"], entry["path"])
            part = tmp_path / (entry["path"] + ".part")
            part.parent.mkdir(parents=True)
            part.write_bytes(full[:100])

            recorder = RecordingTransport()
            s3stack.client(auth=True, token=TOKEN, transport=recorder).download(job["id"], tmp_path)
            assert_complete(tmp_path, manifest)
            api_origin = httpx.URL(s3stack.auth_url)
            to_api = [r for r in recorder.records if r["url"].port == api_origin.port]
            to_s3 = [r for r in recorder.records if r["url"].port != api_origin.port]
            assert to_api and all(r["headers"]["authorization"] == f"Bearer {TOKEN}" for r in to_api)
            assert all(r["status"] == 307 for r in to_api if "/files/" in r["url"].path)
            assert len(to_s3) == len(manifest["files"])
            assert all("authorization" not in r["headers"] for r in to_s3)
            assert all(r["url"].host == "127.0.0.1" and r["url"].port == httpx.URL(s3_server.endpoint_url).port
                       for r in to_s3)
            [resumed] = [r for r in to_s3 if r["url"].path.endswith(entry["path"])]
            assert resumed["headers"]["range"] == "bytes=100-" and resumed["status"] == 206
            assert resumed["bytes"] == len(full) - 100
    finally:
        open_storage(f"s3://{s3_server.bucket}", **s3_server.storage_options()).delete_prefix(prefix)


# ----------------------------------------------------------------------------- CLI
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(cli, [str(a) for a in args])


def write_spec(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_cli_submit_wait_status_download(stack, tmp_path):
    spec_file = write_spec(tmp_path / "spec.json", spec(samples=5))
    result = invoke("submit", spec_file, "--wait", "--url", stack.url)
    assert result.exit_code == 0, result.output
    job_id = result.stdout.split()[1]
    assert len(job_id) == 16 and "succeeded" in result.stdout and "solver" in result.stdout
    assert "sample" in result.stderr  # the progress bar

    result = invoke("status", job_id, "--url", stack.url)
    assert result.exit_code == 0, result.output
    assert f"job {job_id}" in result.stdout and "succeeded" in result.stdout
    assert "5/5 samples" in result.stdout and "max residual" in result.stdout

    result = invoke("status", "--url", stack.url, "--status", "succeeded")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "FAMILY", "SAMPLES", "CREATED"]
    assert any(line.startswith(job_id) and "succeeded" in line for line in lines[1:])

    dest = tmp_path / "out"
    result = invoke("download", job_id, dest, "--url", stack.url)
    assert result.exit_code == 0, result.output
    assert str(dest.resolve()) in result.stdout and "sha256 verified" in result.stdout
    with PDEForgeClient(stack.url) as api:
        assert_complete(dest, api.manifest(job_id))


def test_cli_submit_batch_and_cancel(stack, tmp_path):
    batch_file = write_spec(tmp_path / "batch.json", {"specs": [spec(samples=2), spec(samples=2)]})
    result = invoke("submit", batch_file, "--wait", "--url", stack.url)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("batch ") and result.stdout.count("succeeded") >= 3
    batch_id = result.stdout.split()[1]
    result = invoke("status", batch_id, "--url", stack.url)
    assert result.exit_code == 0 and f"batch {batch_id}" in result.stdout

    with stack.worker.paused():
        result = invoke("submit", write_spec(tmp_path / "one.json", spec()), "--url", stack.url)
        assert result.exit_code == 0 and "queued" in result.stdout
        job_id = result.stdout.split()[1]
        result = invoke("cancel", job_id, "--url", stack.url)
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == f"job {job_id} cancelled"


def test_cli_failed_job_exits_1_with_the_error(stack, tmp_path):
    data = spec(samples=2)
    stack.worker.fail_seeds.add(data["seed"])
    result = invoke("submit", write_spec(tmp_path / "spec.json", data), "--wait", "--url", stack.url)
    assert result.exit_code == 1, result.output
    assert "failed" in result.stderr and "injected failure" in result.stderr


def test_cli_invalid_spec_exits_2_naming_the_field(stack, tmp_path):
    bad = write_spec(tmp_path / "bad.json", {"family": "darcy", "grid": {"n": 4}, "samples": 3})
    result = invoke("submit", bad, "--url", stack.url)
    assert result.exit_code == 2, result.output
    assert "grid.n" in result.stderr and "HTTP 422" in result.stderr and ">= 8" in result.stderr
    result = invoke("status", "ffffffffffffffff", "--url", stack.url)
    assert result.exit_code == 2 and "HTTP 404" in result.stderr
    result = invoke("submit", write_spec(tmp_path / "junk.json", "x"), "--url", stack.url)
    assert result.exit_code == 2, result.output  # a JSON string is not a spec: the server says so
    (tmp_path / "broken.json").write_text("{not json")
    result = invoke("submit", tmp_path / "broken.json", "--url", stack.url)
    assert result.exit_code == 2 and "cannot read" in result.stderr


def test_cli_auth_and_connection_errors(stack, dataset):
    job_id, _ = dataset
    result = invoke("status", job_id, "--url", stack.auth_url)
    assert result.exit_code == 1 and "HTTP 401" in result.stderr and "PDEFORGE_TOKEN" in result.stderr
    result = invoke("status", job_id, "--url", stack.auth_url, "--token", "wrong")
    assert result.exit_code == 1 and "invalid token" in result.stderr
    result = invoke("status", job_id, "--url", stack.auth_url, "--token", TOKEN)
    assert result.exit_code == 0 and "succeeded" in result.stdout

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = "http://127.0.0.1:%d" % s.getsockname()[1]
    result = invoke("status", "--url", url)
    assert result.exit_code == 1 and url in result.stderr and "cannot reach" in result.stderr


def test_cli_families_table_shows_each_familys_own_defaults():
    """Nested parameter blocks show the family's default (FNO's Burgers GRF), not their class's;
    ``sampling`` is a top-level field of a spec, not a parameter."""
    result = invoke("families", "burgers")
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1] for line in result.output.splitlines()[3:] if line.strip()
            and not line.startswith("example")}
    assert (rows["params.initial.tau"], rows["params.initial.sigma"], rows["grid.n"], rows["sampling"]) == \
        ("5.0", "25.0", "1024", "2")
    assert "params.sampling" not in rows
