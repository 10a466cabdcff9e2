"""The HTTP API live: a real ``uvicorn pdeforge.app.main:app`` process, real Celery workers, plain HTTP.

Each test runs against two deployments (module-scoped, parametrized): datasets in
SeaweedFS (S3; file downloads are 307 redirects to presigned URLs, samples are read with
ranged GETs) and datasets in a local folder (files streamed with HTTP Range support).
Both servers run with bearer tokens and small job/body limits, so the error cases of the
README ("HTTP API", "Configuration") can be provoked; every request goes through a real
socket with ``httpx`` (or ``http.client`` where a path must reach the server unnormalised).

No wall-clock assertions: waits poll with generous timeouts and fail with the job record,
the worker logs and the server log.  After every test the server log is checked for 5xx
answers and tracebacks: no request of this module may cause one.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import itertools
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import h5py
import httpx
import numpy as np
import pytest

from tests.cluster import Cluster, make_cluster
from pdeforge.workers import keys
from pdeforge.workers.spec import parse_spec
from pdeforge.workers.status import TERMINAL

from .conftest import ApiServer, start_api

pytestmark = pytest.mark.timeout(300)

TOKEN, OTHER_TOKEN, ADMIN_TOKEN = (f"{who}-{uuid.uuid4().hex}" for who in ("live", "other", "ops"))
#: three principals: "live" (the tests' own), "other", and the admin "ops"
TOKENS = {"api_tokens": f"live:{TOKEN}, other:{OTHER_TOKEN}, ops:{ADMIN_TOKEN}", "api_admins": "ops"}
#: small limits so that 413s are cheap to provoke: n <= 90 (n**2 <= 8192), samples x n**2 <= 5e5;
#: request bodies must arrive within 2 s
LIMITS = {"max_samples": 100, "max_unknowns": 8192, "max_work": 500_000, "max_body_bytes": 4096, "body_timeout": 2}
_seeds = itertools.count(1)


def spec(*, samples: int = 6, shard_samples: int = 2, n: int = 16, **extra) -> dict:
    """A tiny darcy spec; every call names a new dataset (a fresh seed)."""
    return {"family": "darcy", "grid": {"n": n}, "samples": samples, "seed": next(_seeds),
            "output": {"shard_samples": shard_samples}, **extra}


def dataset_id(body: dict) -> str:
    return parse_spec(body).dataset_id


# ----------------------------------------------------------------------------- the deployment
@dataclass
class Live:
    kind: str  # "s3" or "local"
    cluster: Cluster
    server: ApiServer
    http: httpx.Client  # authorised, base_url = the server

    @property
    def url(self) -> str:
        return self.server.url

    def logs(self) -> str:
        return f"{self.cluster.logs()}\n--- api ---\n{self.server.log_tail(3000)}"

    def job(self, job_id: str) -> dict:
        r = self.http.get(f"/v1/jobs/{job_id}")
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()

    def wait(self, job_id: str, predicate: Callable[[dict], bool], *, timeout: float = 120.0,
             what: str = "condition", interval: float = 0.05) -> dict:
        """Poll ``GET /v1/jobs/{id}`` until ``predicate(job)``."""
        deadline, job = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if predicate(job):
                return job
            time.sleep(interval)
        raise AssertionError(f"job {job_id}: no {what} within {timeout:.0f} s; last: {job}\n{self.logs()}")

    def wait_succeeded(self, job_id: str, timeout: float = 120.0) -> dict:
        job = self.wait(job_id, lambda j: j["status"] in TERMINAL, timeout=timeout, what="terminal status")
        assert job["status"] == "succeeded", f"{job}\n{self.logs()}"
        return job

    def submit(self, body: dict, expect: int = 202) -> httpx.Response:
        r = self.http.post("/v1/jobs", json=body)
        assert r.status_code == expect, (r.status_code, r.text)
        return r

    def download(self, job_id: str, path: str) -> bytes:
        """A file of the dataset through the API (following a presigned redirect, unauthenticated)."""
        r = self.http.get(f"/v1/datasets/{job_id}/files/{path}")
        if self.kind == "s3":
            assert r.status_code == 307, (r.status_code, r.text)
            r = httpx.get(r.headers["location"], timeout=30)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        return r.content

    def raw_get(self, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
        """GET ``path`` sent byte for byte (no client-side normalisation of ``..`` or ``%2e``)."""
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        try:
            conn.putrequest("GET", path, skip_accept_encoding=True)
            for k, v in {"Authorization": f"Bearer {TOKEN}", **(headers or {})}.items():
                conn.putheader(k, v)
            conn.endheaders()
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()


@pytest.fixture(scope="module", params=["s3", "local"])
def live(request, redis_client, tmp_path_factory) -> Iterator[Live]:
    """API + one worker (``-c 2``) over S3 (SeaweedFS) or a local folder, tokens and limits set."""
    log_dir = tmp_path_factory.mktemp(f"live-{request.param}")
    where = ({"s3_server": request.getfixturevalue("s3_server")} if request.param == "s3"
             else {"local_root": log_dir / "store"})
    with make_cluster(redis_client, log_dir, **where) as cluster:
        cluster.start_worker(concurrency=2)
        server = start_api(cluster, **TOKENS, **LIMITS)
        try:
            with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"},
                              timeout=30) as client:
                yield Live(request.param, cluster, server, client)
        finally:
            server.stop()


def server_errors(server: ApiServer, start: int) -> str | None:
    """The server log since byte ``start`` if it shows a 5xx answer or a traceback, else None."""
    with open(server.log_path, "rb") as fh:
        fh.seek(start)
        text = fh.read().decode(errors="replace")
    if re.search(r'HTTP/1\.[01]" 5\d\d', text) or "Traceback" in text:
        return text[-6000:]
    return None


@pytest.fixture(autouse=True)
def no_server_errors(request) -> Iterator[None]:
    """Fail a test during which the server answered 5xx or logged a traceback."""
    name = next((f for f in ("live", "fuzz_api") if f in request.fixturenames), None)
    if name is None:
        yield
        return
    fixture = request.getfixturevalue(name)
    server = fixture.server if isinstance(fixture, Live) else fixture
    start = server.log_path.stat().st_size
    yield
    errors = server_errors(server, start)
    assert errors is None, f"server errors:\n{errors}"


@pytest.fixture(scope="module")
def dataset(live) -> dict:
    """A small finished dataset: the spec, the submit response and the final job."""
    body = spec(samples=7, shard_samples=3)
    r = live.submit(body)
    job = live.wait_succeeded(r.json()["id"])
    return {"spec": body, "id": job["id"], "submitted": r, "job": job}


def metrics(live) -> dict[str, float]:
    r = httpx.get(f"{live.url}/metrics", timeout=30)  # open without a token
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r
    out = {}
    for line in r.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def error_body(r: httpx.Response, status: int) -> dict:
    """The documented error shape: JSON with a ``detail`` string and a machine-readable ``code``."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body["detail"], str) and body["detail"], body
    assert isinstance(body["code"], str) and body["code"], body
    assert "Traceback" not in r.text
    return body


# ----------------------------------------------------------------------------- happy path
def test_submit_poll_manifest_and_download_every_file(live, dataset):
    r, job_id = dataset["submitted"], dataset["id"]
    assert r.status_code == 202 and job_id == dataset_id(dataset["spec"])
    assert r.headers["location"] == f"/v1/jobs/{job_id}" and int(r.headers["retry-after"]) > 0
    assert r.json()["status"] == "queued"

    job = dataset["job"]
    assert job["progress"]["samples_done"] == job["progress"]["samples_total"] == 7
    assert job["progress"]["fraction"] == 1.0
    assert job["progress"]["shards_done"] == job["progress"]["shards_total"] >= 3
    assert job["solver"]["residual_max"] <= 1e-8 and job["finished"]

    manifest = live.http.get(f"/v1/datasets/{job_id}").json()
    assert manifest["dataset_id"] == job_id and manifest["samples"] == 7
    assert sum(f["samples"] for f in manifest["files"] if "shard" in f) == 7
    for entry in manifest["files"]:
        r = live.http.get(f"/v1/datasets/{job_id}/files/{entry['path']}")
        if live.kind == "s3":
            assert r.status_code == 307, r.text
            location = r.headers["location"]
            assert location.startswith(live.cluster.settings.s3_endpoint_url + "/")
            assert "X-Amz-Signature=" in location
            r = httpx.get(location, timeout=30)  # presigned: no credentials needed
            assert r.status_code == 200, r.text
        else:
            assert r.status_code == 200, r.text
            assert r.headers["etag"] == f'"{entry["sha256"]}"'
            assert int(r.headers["content-length"]) == entry["bytes"]
            media = {"h5": "application/x-hdf5", "md": "text/markdown"}.get(entry["path"].rsplit(".", 1)[-1],
                                                                             "application/json")
            assert r.headers["content-type"].startswith(media)
        assert len(r.content) == entry["bytes"], entry["path"]
        assert hashlib.sha256(r.content).hexdigest() == entry["sha256"], f"checksum mismatch: {entry['path']}"

    # manifest.json itself is served too and is the manifest
    assert json.loads(live.download(job_id, "manifest.json")) == manifest


def test_range_requests_return_exactly_the_requested_bytes(live, dataset):
    job_id = dataset["id"]
    manifest = live.http.get(f"/v1/datasets/{job_id}").json()
    entry = max((f for f in manifest["files"] if "shard" in f), key=lambda f: f["bytes"])
    whole = live.download(job_id, entry["path"])
    size = len(whole)
    for header, (lo, hi) in {"bytes=10-99": (10, 99), "bytes=-16": (size - 16, size - 1),
                             f"bytes={size - 5}-": (size - 5, size - 1), "bytes=0-0": (0, 0)}.items():
        r = live.http.get(f"/v1/datasets/{job_id}/files/{entry['path']}", headers={"Range": header})
        if live.kind == "s3":  # the redirect carries no range; the client repeats it to S3
            assert r.status_code == 307
            r = httpx.get(r.headers["location"], headers={"Range": header}, timeout=30)
        assert r.status_code == 206, (header, r.status_code, r.text[:200])
        assert r.headers["content-range"] == f"bytes {lo}-{hi}/{size}", (header, r.headers)
        assert r.content == whole[lo:hi + 1], header
    if live.kind == "local":  # a range beyond the end is not satisfiable
        r = live.http.get(f"/v1/datasets/{job_id}/files/{entry['path']}", headers={"Range": f"bytes={size}-"})
        assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{size}", (r.status_code, r.headers)


def _shard_arrays(live, job_id: str, cache: dict, split: str, shard: int) -> dict:
    path = f"data/{split}/shard_{shard:05d}.h5"
    if path not in cache:
        with h5py.File(io.BytesIO(live.download(job_id, path)), "r") as h5:
            cache[path] = {"sample_index": h5["sample_index"][:], "x": h5["x"][:], "y": h5["y"][:],
                           "residual": h5["solver/residual"][:], "iterations": h5["solver/iterations"][:]}
    return cache[path]


def test_samples_json_and_npy_agree_with_the_stored_shards(live, dataset):
    job_id, shards = dataset["id"], {}
    for index in range(7):
        r = live.http.get(f"/v1/datasets/{job_id}/samples/{index}")
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["index"] == index and got["dataset_id"] == job_id
        stored = _shard_arrays(live, job_id, shards, got["split"], got["shard"])
        (pos,) = np.flatnonzero(stored["sample_index"] == index)
        x, y = stored["x"][pos], stored["y"][pos]
        assert np.array_equal(np.asarray(got["x"], dtype=x.dtype), x)
        assert np.array_equal(np.asarray(got["y"], dtype=y.dtype), y)
        assert got["solver"]["residual"] == stored["residual"][pos] <= 1e-8
        assert got["solver"]["iterations"] == stored["iterations"][pos]

        r = live.http.get(f"/v1/datasets/{job_id}/samples/{index}", params={"format": "npy"})
        assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream", r.text
        arr = np.load(io.BytesIO(r.content), allow_pickle=False)
        assert arr["x"].dtype == x.dtype and np.array_equal(arr["x"], x)
        assert arr["y"].dtype == y.dtype and np.array_equal(arr["y"], y)
        assert int(arr["index"]) == index and float(arr["residual"]) == stored["residual"][pos]
    # every sample was found in some shard, and all the dataset's shards were read
    assert sum(len(s["sample_index"]) for s in shards.values()) == 7

    for bad, status in (("7", 404), ("-1", 404), ("99999999999", 404), ("abc", 422), ("1.5", 422)):
        error_body(live.http.get(f"/v1/datasets/{job_id}/samples/{bad}"), status)
    error_body(live.http.get(f"/v1/datasets/{job_id}/samples/0", params={"format": "xml"}), 422)


def test_the_pytorch_loader_reads_a_remote_dataset_with_range_requests(live, dataset):
    """``PDEDataset.remote``: the samples of a finished dataset on the server, read chunk by chunk through
    the API (S3: the presigned redirect), equal to the downloaded shards' arrays."""
    from pdeforge import PDEDataset

    job_id, shards = dataset["id"], {}
    manifest = live.http.get(f"/v1/datasets/{job_id}").json()
    for split in ("train", "valid", "test"):
        remote = PDEDataset.remote(live.url, job_id, split, token=TOKEN)
        assert len(remote) == manifest["splits"][split]["samples"]
        for i in range(len(remote)):
            item = remote[i]
            found = [(f["split"], f["shard"]) for f in manifest["files"] if f.get("split") == split]
            arrays = [_shard_arrays(live, job_id, shards, *where) for where in found]
            stored = next(a for a in arrays if item["index"] in a["sample_index"])
            (pos,) = np.flatnonzero(stored["sample_index"] == item["index"])
            assert np.array_equal(item["x"].numpy(), stored["x"][pos])
            assert np.array_equal(item["y"].numpy(), stored["y"][pos])


def test_a_paired_dataset_through_the_service(live):
    """``grid.resolutions``: one job, every sample at each resolution; the sample endpoint and the remote
    loader take a resolution; a resolution the dataset does not hold is a 422 naming it."""
    from pdeforge import PDEDataset

    body = spec(samples=5, shard_samples=3, n=16)
    body["grid"] = {"resolutions": [8, 16]}
    job_id = live.submit(body).json()["id"]
    live.wait_succeeded(job_id)
    manifest = live.http.get(f"/v1/datasets/{job_id}").json()
    assert manifest["resolutions"] == [8, 16] and manifest["grid"] == [16, 16] and manifest["sampling"] == 2
    assert {f["resolution"] for f in manifest["files"] if "shard" in f} == {8, 16}
    for n in (8, 16):
        got = live.http.get(f"/v1/datasets/{job_id}/samples/0", params={"resolution": n}).json()
        assert np.asarray(got["x"]).shape == (1, n, n) and got["solver"]["residual"] <= 1e-8
        remote = PDEDataset.remote(live.url, job_id, "train", token=TOKEN, resolution=n)
        assert remote[0]["y"].shape == (1, n, n)
    finest = live.http.get(f"/v1/datasets/{job_id}/samples/0").json()
    assert np.asarray(finest["x"]).shape == (1, 16, 16)
    from pdeforge.app.client import PDEForgeClient

    with PDEForgeClient(live.url, TOKEN) as api:  # what `pdeforge preview ID 0 --resolution 8` calls
        coarse = api.sample(job_id, 0, "npy", resolution=8)
        assert coarse["x"].shape == (1, 8, 8) and api.sample(job_id, 0, "png", resolution=8)[:4] == b"\x89PNG"
    body = error_body(live.http.get(f"/v1/datasets/{job_id}/samples/0", params={"resolution": 12}), 422)
    assert body["errors"][0]["field"] == "resolution" and "one of [8, 16]" in body["errors"][0]["allowed"]


def test_identical_resubmission_returns_the_same_job_with_200(live, dataset):
    r = live.submit(dataset["spec"], expect=200)
    assert r.json()["id"] == dataset["id"] and r.json()["status"] == "succeeded"
    assert r.headers["location"] == f"/v1/jobs/{dataset['id']}"
    assert "retry-after" not in r.headers  # nothing to wait for
    # the same spec spelled differently (defaults written out, other key order) is the same job
    full = parse_spec(dataset["spec"]).model_dump(mode="json")
    r = live.submit(dict(reversed(list(full.items()))), expect=200)
    assert r.json()["id"] == dataset["id"]

    other = live.submit(spec())
    assert other.json()["id"] != dataset["id"] and other.json()["status"] in ("queued", "planning", "running")
    assert other.headers["location"] == f"/v1/jobs/{other.json()['id']}" and other.headers["retry-after"]
    live.wait_succeeded(other.json()["id"])


# ----------------------------------------------------------------------------- batches
def test_batch_is_submitted_and_aggregated(live):
    specs = [spec(samples=4), spec(samples=5, n=24)]
    r = live.http.post("/v1/batches", json={"specs": specs})
    assert r.status_code == 202, r.text
    batch = r.json()
    assert r.headers["location"] == f"/v1/batches/{batch['id']}" and r.headers["retry-after"]
    assert [j["id"] for j in batch["jobs"]] == [dataset_id(s) for s in specs]
    assert batch["progress"]["samples_total"] == 9

    deadline = time.monotonic() + 120
    while batch["status"] not in TERMINAL and time.monotonic() < deadline:
        time.sleep(0.1)
        r = live.http.get(f"/v1/batches/{batch['id']}")
        assert r.status_code == 200, r.text
        batch = r.json()
    assert batch["status"] == "succeeded", f"{batch}\n{live.logs()}"
    assert batch["counts"] == {"succeeded": 2}
    assert batch["progress"]["samples_done"] == batch["progress"]["samples_total"] == 9
    assert batch["progress"]["fraction"] == 1.0
    assert batch["progress"]["shards_done"] == batch["progress"]["shards_total"] > 0
    for s in specs:
        assert live.job(dataset_id(s))["status"] == "succeeded"

    # the same batch again: the same id, nothing new
    again = live.http.post("/v1/batches", json={"specs": specs})
    assert again.status_code == 202 and again.json()["id"] == batch["id"]
    assert again.json()["status"] == "succeeded"


def _assert_nothing_queued(live, body: dict) -> None:
    job_id = dataset_id(body)
    error_body(live.http.get(f"/v1/jobs/{job_id}"), 404)
    listed = {j["id"] for j in live.http.get("/v1/jobs", params={"page_size": 200}).json()["data"]}
    assert job_id not in listed
    assert not live.cluster.store.r.exists(live.cluster.store._k(job_id))
    assert not live.cluster.storage.exists(keys.spec(job_id))


def test_batch_with_a_bad_spec_is_rejected_whole(live):
    good = spec()
    for bad in ({"family": "darcy", "grid": {"n": 4}}, {"family": "darcy", "samples": -1},
                {"family": "nope"}, {"family": "darcy", "solver": {"restart": 10, "recycle": 10}}):
        body = error_body(live.http.post("/v1/batches", json={"specs": [good, bad]}), 422)
        assert body["errors"] and all(e["field"].startswith("specs.1.") for e in body["errors"]), body
        _assert_nothing_queued(live, good)

    body = error_body(live.http.post("/v1/batches", json={"specs": [good, spec(samples=101)]}), 413)
    assert body["field"] == "specs.1.samples" and body["limit"] == 100, body
    _assert_nothing_queued(live, good)

    for empty in ({"specs": []}, {}, {"specs": "darcy"}):
        error_body(live.http.post("/v1/batches", json=empty), 422)
    error_body(live.http.get("/v1/batches/0123456789abcdef"), 404)


# ----------------------------------------------------------------------------- cancel, 409s
def test_cancel_running_job_stops_its_progress(live):
    # 64^2 darcy by unpreconditioned GMRES: each shard of 20 takes seconds
    body = spec(samples=80, shard_samples=20, n=64, solver={"engine": "gmres", "preconditioner": "none"})
    job_id = live.submit(body).json()["id"]
    live.wait(job_id, lambda j: j["status"] == "running" and j["progress"]["samples_done"] >= 1,
              what="running with progress", interval=0.02)

    # while it runs: a partial manifest (finished shards only; tests/app/test_partial_results.py),
    # no manifest.json, no delete; resubmitting returns the job as it is
    partial = live.http.get(f"/v1/datasets/{job_id}").json()
    assert partial["complete"] is False and partial["status"] in ("running", "finalizing")
    assert json.loads(live.download(job_id, "spec.json"))["family"] == "darcy"
    assert "not complete" in error_body(live.http.get(f"/v1/datasets/{job_id}/files/manifest.json"), 409)["detail"]
    error_body(live.http.delete(f"/v1/datasets/{job_id}"), 409)
    again = live.submit(body, expect=200)
    assert again.json()["id"] == job_id and again.json()["status"] in ("running", "finalizing")
    assert again.headers["retry-after"]

    r = live.http.post(f"/v1/jobs/{job_id}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    at_cancel = live.cluster.progress(job_id)  # read after the flag is set

    # progress settles: each running shard stops after at most the sample it was solving
    settled, last, stable_since = None, None, time.monotonic()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = (live.job(job_id)["progress"]["samples_done"], live.cluster.progress(job_id))
        if now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since > 3.0 and not list(
                live.cluster.store.r.scan_iter(match=live.cluster.store._k(job_id, "lease:*"))):
            settled = now
            break
        time.sleep(0.1)
    assert settled is not None, f"progress kept changing after cancel: {last}\n{live.logs()}"
    samples_done, per_shard = settled
    done_shards = live.cluster.store.done_shards(job_id)
    for name, count in per_shard.items():
        if name not in done_shards:
            assert count <= at_cancel.get(name, 0) + 1, f"shard {name} went on: {at_cancel} -> {per_shard}"
    job = live.job(job_id)
    assert job["status"] == "cancelled" and job["progress"]["samples_done"] == samples_done < 80, job
    partial = live.http.get(f"/v1/datasets/{job_id}").json()
    assert partial["complete"] is False and partial["status"] == "cancelled"
    assert partial["shards_final"] == len(done_shards)

    # cancelling again is harmless; a cancelled dataset can be deleted
    assert live.http.post(f"/v1/jobs/{job_id}/cancel").json()["status"] == "cancelled"
    assert live.http.delete(f"/v1/datasets/{job_id}").status_code == 204
    error_body(live.http.get(f"/v1/jobs/{job_id}"), 404)


# ----------------------------------------------------------------------------- listing
def test_pagination_walks_every_job_once_and_filters_by_status(live):
    ids = [live.submit(spec(samples=2, n=8)).json()["id"] for _ in range(5)]
    for job_id in ids:
        live.wait_succeeded(job_id)

    everything = live.http.get("/v1/jobs", params={"page_size": 200}).json()
    assert everything["next_page_token"] is None
    all_ids = [j["id"] for j in everything["data"]]
    assert all_ids[:5] == ids[::-1]  # newest first
    assert len(all_ids) == len(set(all_ids)) >= 5

    def walk(**params) -> list[dict]:
        out, token, pages = [], None, 0
        while True:
            r = live.http.get("/v1/jobs", params={"page_size": 2, **params, **({"page_token": token} if token else {})})
            assert r.status_code == 200, r.text
            page = r.json()
            # a full page, or the last one (which may be empty under a status filter)
            assert len(page["data"]) == 2 or (len(page["data"]) < 2 and page["next_page_token"] is None), page
            out += page["data"]
            pages += 1
            token = page["next_page_token"]
            if token is None:
                return out
            assert pages < 100

    paged = [j["id"] for j in walk()]
    assert paged == all_ids, "pagination lost, duplicated or reordered jobs"

    succeeded = walk(status="succeeded")
    assert all(j["status"] == "succeeded" for j in succeeded)
    assert len({j["id"] for j in succeeded}) == len(succeeded)
    assert set(ids) <= {j["id"] for j in succeeded}
    assert {j["id"] for j in succeeded} == {j["id"] for j in everything["data"] if j["status"] == "succeeded"}
    assert all(j["status"] == "failed" for j in walk(status="failed"))

    for params in ({"status": "bogus"}, {"page_size": 0}, {"page_size": 201}, {"page_size": "x"},
                   {"page_token": "!!!"}, {"page_token": "bm90IGEgbnVtYmVy"}):
        error_body(live.http.get("/v1/jobs", params=params), 422)


# ----------------------------------------------------------------------------- errors
INVALID = [  # (body, field, value, allowed contains)
    ({"family": "darcy", "grid": {"n": 4}}, "grid.n", 4, ">= 8"),
    ({"family": "darcy", "samples": 0}, "samples", 0, ">= 1"),
    ({"family": "nope"}, "family", "nope", "darcy"),
    ({"samples": 5}, "family", None, "darcy"),
    ({"family": "darcy", "samples": "many"}, "samples", "many", None),
    ({"family": "darcy", "grid": {"dim": 4}}, "grid.dim", 4, "2"),
    ({"family": "darcy", "solver": {"engine": "magic"}}, "solver.engine", "magic", "gmres"),
    ({"family": "helmholtz", "grid": {"n": 16}, "params": {"k_min": 20, "k_max": 500}},
     "params.k_max", "500.0", "k_max <="),
    ({"family": "darcy", "solver": {"restart": 10, "recycle": 10}}, "solver.recycle", "10", "recycle < restart"),
    ({"family": "darcy", "split": {"train": 0.5, "valid": 0.1, "test": 0.1}}, "split", None, "exactly 1"),
    ({"family": "darcy", "bogus": 1}, "bogus", 1, None),
    ({"family": "darcy", "grid": {"n": 16, "extra": True}}, "grid.extra", True, None),
]


@pytest.mark.parametrize("body,field,value,allowed", INVALID, ids=[c[1] for c in INVALID])
def test_invalid_spec_is_422_naming_field_value_and_allowed(live, body, field, value, allowed):
    err = error_body(live.http.post("/v1/jobs", json=body), 422)
    assert err["detail"].startswith("invalid request"), err
    match = [e for e in err["errors"] if e["field"] == field]
    assert match, f"no error for {field}: {err}"
    if value is not None:
        assert match[0]["value"] == value, match
    if allowed is not None:
        assert allowed in match[0]["allowed"], match
    assert match[0]["message"]


def test_malformed_bodies_are_422(live):
    for content in (b"{not json", b"[]", b"42", b"null", b"\xff\xfe", b'{"family": "darcy", "samples": 1e999}',
                    b'{"family": "darcy", "samples": NaN}', b'{"family": "darcy", "seed": -Infinity}'):
        err = error_body(live.http.post("/v1/jobs", content=content, headers={"Content-Type": "application/json"}),
                         422)
        assert err["errors"] and all(e["field"] and e["message"] for e in err["errors"]), (content, err)
    err = error_body(live.http.post("/v1/jobs", content=b'{"family": "darcy", "samples": 1e999}',
                                    headers={"Content-Type": "application/json"}), 422)
    assert err["errors"][0]["field"] == "samples" and err["errors"][0]["value"] == "inf", err
    # bytes that are not UTF-8: FastAPI's body parser answers 400 (a JSON detail, no field list)
    error_body(live.http.post("/v1/jobs", content=b"zN\xceR\xb3\xdf", headers={"Content-Type": "application/json"}),
               400)
    error_body(live.http.post("/v1/jobs"), 422)  # no body at all
    error_body(live.http.post("/v1/jobs", json={}), 422)  # no family


def test_limits_are_413_stating_the_limit_before_anything_is_queued(live):
    for body, field, limit in ((spec(samples=101), "samples", 100),
                               (spec(n=128), "grid", 8192),
                               (spec(n=80, samples=100), "samples", 500_000)):
        err = error_body(live.http.post("/v1/jobs", json=body), 413)
        assert err["field"] == field and err["limit"] == limit, err
        assert f"{limit:.3g}" in err["detail"] or str(limit) in err["detail"], err
        _assert_nothing_queued(live, body)


def test_bodies_over_max_body_bytes_are_413(live):
    big = spec()
    big["padding"] = "x" * 5000  # (also an unknown field; the size check comes first)
    raw = json.dumps(big).encode()
    err = error_body(live.http.post("/v1/jobs", content=raw, headers={"Content-Type": "application/json"}), 413)
    assert "4096" in err["detail"]

    def chunks(data: bytes) -> Iterator[bytes]:
        for i in range(0, len(data), 512):
            yield data[i:i + 512]

    # chunked transfer: no Content-Length, the limit is enforced while the body streams in
    r = live.http.post("/v1/jobs", content=chunks(raw), headers={"Content-Type": "application/json"})
    assert "content-length" not in r.request.headers and r.request.headers["transfer-encoding"] == "chunked"
    err = error_body(r, 413)
    assert "4096" in err["detail"]
    r = live.http.post("/v1/batches", content=chunks(json.dumps({"specs": [big, big]}).encode()),
                       headers={"Content-Type": "application/json"})
    error_body(r, 413)

    # a chunked body under the limit is read normally
    small = spec(samples=2, n=8)
    r = live.http.post("/v1/jobs", content=chunks(json.dumps(small).encode()),
                       headers={"Content-Type": "application/json"})
    assert r.status_code == 202 and r.json()["id"] == dataset_id(small), r.text
    live.wait_succeeded(dataset_id(small))


def test_tokens_guard_v1_while_health_routes_stay_open(live):
    plain = httpx.Client(base_url=live.url, timeout=30)
    with plain:
        for method, path in (("GET", "/v1/jobs"), ("GET", "/v1/families"), ("POST", "/v1/jobs"),
                             ("GET", "/v1/jobs/0123456789abcdef"), ("GET", "/v1/datasets/0123456789abcdef"),
                             ("POST", "/v1/batches"), ("DELETE", "/v1/datasets/0123456789abcdef")):
            r = plain.request(method, path)
            assert error_body(r, 401) and r.headers["www-authenticate"] == "Bearer", (method, path)
            error_body(plain.request(method, path, headers={"Authorization": "Bearer wrong"}), 403)
            error_body(plain.request(method, path, headers={"Authorization": f"Basic {TOKEN}"}), 401)
            error_body(plain.request(method, path, headers={"Authorization": f"Bearer {TOKEN}x"}), 403)
        ok = plain.get("/v1/families", headers={"Authorization": f"Bearer {OTHER_TOKEN}"})
        assert ok.status_code == 200 and "darcy" in {f["name"] for f in ok.json()}

        assert plain.get("/healthz").json() == {"status": "ok"}
        ready = plain.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"status": "ok",
                                                             "checks": {"redis": "ok", "storage": "ok"}}
        assert plain.get("/metrics").status_code == 200


def test_unknown_things_are_404(live, dataset):
    job_id = dataset["id"]
    unknown = "0123456789abcdef"
    for method, path in (("GET", f"/v1/jobs/{unknown}"), ("GET", "/v1/jobs/not-an-id"),
                         ("POST", f"/v1/jobs/{unknown}/cancel"), ("POST", "/v1/jobs/xyz/cancel"),
                         ("GET", f"/v1/datasets/{unknown}"), ("GET", "/v1/datasets/NOT-AN-ID"),
                         ("GET", f"/v1/datasets/{unknown}/files/spec.json"),
                         ("GET", f"/v1/datasets/{unknown}/samples/0"),
                         ("DELETE", f"/v1/datasets/{unknown}"), ("DELETE", "/v1/datasets/zzz"),
                         ("GET", f"/v1/datasets/{job_id}/files/nope.h5"),
                         ("GET", f"/v1/datasets/{job_id}/files/data/train/shard_99999.h5"),
                         ("GET", f"/v1/datasets/{job_id}/samples/7"),
                         ("GET", "/v1/batches/nope"), ("GET", "/v1/nothing-here")):
        error_body(live.http.request(method, path), 404)
    body = error_body(live.http.get("/v1/families/nope"), 404)
    assert "valid names" in body["detail"] and "darcy" in body["detail"]


TRAVERSALS = [
    "..%2F..%2Fspec.json", "../../etc/passwd", "..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "%2e%2e/%2e%2e/etc/passwd", "%2e%2e%2f%2e%2e%2fspec.json", "/etc/passwd", "%2Fetc%2Fpasswd",
    "data/../spec.json", "data%2F..%2Fspec.json", "data/train/../../spec.json", "./spec.json",
    "..%5C..%5Cspec.json", "data%5C..%5Cspec.json", "spec.json%00", "spec.json%00.h5", "%00",
    "shards/train/shard_00000.json",  # in storage, but not listed in the manifest
    "../{other}/spec.json", "..%2F{other}%2Fmanifest.json", "data//train/shard_00000.h5",
    "DATA/train/shard_00000.h5", "spec.json/", "spec.json%20",
]


def test_path_traversal_on_files_is_404_and_never_leaks(live, dataset):
    job_id = dataset["id"]
    other = live.submit(spec(samples=2, n=8)).json()["id"]  # another dataset in the same storage
    live.wait_succeeded(other)
    secret = live.download(other, "spec.json")
    for attempt in TRAVERSALS:
        path = f"/v1/datasets/{job_id}/files/{attempt.format(other=other)}"
        status, headers, content = live.raw_get(path)
        assert status == 404, (path, status, content[:300])
        assert "location" not in headers, (path, headers)
        assert json.loads(content)["detail"], (path, content)
        assert b"root:" not in content and secret not in content and b"seed" not in content, (path, content)
    # raw (unencoded) backslashes reach the router as they are
    for raw in ("..\\..\\spec.json", "data\\..\\spec.json"):
        status, headers, content = live.raw_get(f"/v1/datasets/{job_id}/files/{raw}")
        assert status == 404 and "location" not in headers and b"seed" not in content, (raw, status)


def test_delete_finished_dataset_is_204_then_404(live):
    job_id = live.submit(spec(samples=3, n=8)).json()["id"]
    live.wait_succeeded(job_id)
    assert any(True for _ in live.cluster.storage.list(keys.prefix(job_id)))

    r = live.http.delete(f"/v1/datasets/{job_id}")
    assert r.status_code == 204 and r.content == b"", r.text
    error_body(live.http.get(f"/v1/datasets/{job_id}"), 404)
    error_body(live.http.get(f"/v1/jobs/{job_id}"), 404)
    error_body(live.http.get(f"/v1/datasets/{job_id}/files/spec.json"), 404)
    error_body(live.http.delete(f"/v1/datasets/{job_id}"), 404)
    assert job_id not in {j["id"] for j in live.http.get("/v1/jobs", params={"page_size": 200}).json()["data"]}
    assert not list(live.cluster.storage.list(keys.prefix(job_id)))


def test_metrics_count_jobs_and_solved_samples(live):
    before = metrics(live)
    job_id = live.submit(spec(samples=5, shard_samples=2, n=8)).json()["id"]
    live.wait_succeeded(job_id)
    after = metrics(live)
    assert after["pdeforge_samples_solved_total"] - before["pdeforge_samples_solved_total"] == 5
    assert after["pdeforge_shards_solved_total"] - before["pdeforge_shards_solved_total"] >= 3
    assert after["pdeforge_solve_seconds_total"] > before["pdeforge_solve_seconds_total"]

    jobs = live.http.get("/v1/jobs", params={"page_size": 200},  # every principal's: the admin's list
                         headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()["data"]
    for status in (*sorted(TERMINAL), "queued", "running"):
        expected = sum(j["status"] == status for j in jobs)
        assert after[f'pdeforge_jobs{{status="{status}"}}'] == expected, (status, after)
    assert after['pdeforge_jobs{status="succeeded"}'] >= 1


# ----------------------------------------------------------------------------- issue 9 regressions
def test_principals_see_and_change_only_their_own_jobs(live, dataset):
    """Defect 8: another token could list, read, cancel and delete a job, and probe a dataset id."""
    job_id = dataset["id"]
    other = {"Authorization": f"Bearer {OTHER_TOKEN}"}
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    unknown = "0123456789abcdef"
    for probe in (job_id, unknown):  # another's job looks exactly like no job
        for method, path in (("GET", f"/v1/jobs/{probe}"), ("POST", f"/v1/jobs/{probe}/cancel"),
                             ("GET", f"/v1/datasets/{probe}"), ("GET", f"/v1/datasets/{probe}/files/spec.json"),
                             ("GET", f"/v1/datasets/{probe}/samples/0"), ("DELETE", f"/v1/datasets/{probe}")):
            body = error_body(live.http.request(method, path, headers=other), 404)
            assert body["code"] == "not_found", (method, path, body)
    assert job_id not in {j["id"] for j in live.http.get("/v1/jobs", headers=other).json()["data"]}
    assert live.job(job_id)["status"] == "succeeded"  # untouched
    assert live.http.get(f"/v1/jobs/{job_id}", headers=admin).status_code == 200  # the admin sees all

    # the same spec by the other principal: its own handle on the shared dataset
    r = live.http.post("/v1/jobs", json=dataset["spec"], headers=other)
    assert r.status_code == 200 and r.json()["id"] == job_id and r.json()["status"] == "succeeded", r.text
    assert live.http.get(f"/v1/datasets/{job_id}", headers=other).status_code == 200
    assert live.http.delete(f"/v1/datasets/{job_id}", headers=other).status_code == 204  # its handle only
    assert live.http.get(f"/v1/datasets/{job_id}").status_code == 200  # still there for its first owner
    error_body(live.http.get(f"/v1/jobs/{job_id}", headers=other), 404)


def test_estimate_is_a_dry_run_stating_cost_and_refusals(live):
    body = spec(samples=40, n=32, shard_samples=10)
    r = live.http.post("/v1/jobs/estimate", json=body)
    assert r.status_code == 200, r.text
    est = r.json()
    assert est["accepted"] and est["samples"] == 40 and est["shards"] >= 4 and est["bytes"] > 0
    assert est["core_seconds"] > 0 and est["quota"]["jobs_limit"] >= 1
    _assert_nothing_queued(live, body)
    big = live.http.post("/v1/jobs/estimate", json=spec(samples=100, n=90)).json()
    assert not big["accepted"] and big["refusals"][0]["code"] == "limit_exceeded"


def test_auth_is_checked_before_the_body_is_read(live):
    """Defect 9: malformed JSON used to be answered 422 before the token was checked."""
    plain = httpx.Client(base_url=live.url, timeout=30)
    with plain:
        for content in (b"{not json", b"x" * 10_000):
            body = error_body(plain.post("/v1/jobs", content=content, headers={"Content-Type": "application/json"}),
                              401)
            assert body["code"] == "unauthorized"
            error_body(plain.post("/v1/jobs", content=content, headers={"Authorization": "Bearer nope"}), 403)


def test_a_body_that_never_comes_is_answered_408_within_the_body_timeout(live):
    """Defect 9: a request promising a body and sending none held a connection for 60 s or more."""
    import socket

    parts = urlsplit(live.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(f"POST /v1/jobs HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Bearer {TOKEN}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"fam".encode())
        started = time.monotonic()
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(4096)
            assert chunk, "connection closed without an answer"
            reply += chunk
        waited = time.monotonic() - started
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert waited < 15, f"answered after {waited:.1f} s; body_timeout is {LIMITS['body_timeout']} s"


def test_a_page_token_beyond_any_list_is_422(live):
    """Defect 6: a huge page token reached Redis and came back as 503."""
    import base64

    for offset in (10**12, 2**62, 2**63, 10**30):
        token = base64.urlsafe_b64encode(str(offset).encode()).decode().rstrip("=")
        body = error_body(live.http.get("/v1/jobs", params={"page_token": token}), 422)
        assert body["code"] == "validation_error"


def test_session_cookie_works_wherever_a_bearer_token_does(live, dataset):
    plain = httpx.Client(base_url=live.url, timeout=30)
    with plain:
        assert "<form" in plain.get("/login").text
        error_body(plain.post("/v1/session", json={"token": "wrong"}), 401)
        r = plain.post("/v1/session", json={"token": TOKEN})
        assert r.status_code == 200 and r.json()["principal"] == "live", r.text
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "max-age=" in cookie
        assert plain.get(f"/v1/jobs/{dataset['id']}").status_code == 200  # the cookie alone
        assert plain.get(f"/v1/datasets/{dataset['id']}/files/spec.json").status_code in (200, 307)
        assert plain.delete("/v1/session").status_code == 204
        plain.cookies.clear()
        error_body(plain.get(f"/v1/jobs/{dataset['id']}"), 401)
        plain.cookies.set("pdeforge_session", "live.99999999999.forged")
        error_body(plain.get(f"/v1/jobs/{dataset['id']}"), 401)
        plain.cookies.clear()
        form = plain.post("/v1/session", content=f"token={TOKEN}&next=/v1/jobs".encode(),
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert form.status_code == 303 and form.headers["location"] == "/v1/jobs"
        assert plain.get("/v1/jobs").status_code == 200


def test_openapi_states_the_enforced_limits_the_error_body_and_auth(live):
    """Defect 7 and 9: the contract allowed 10^7 samples, showed another 422 shape, omitted 404/409/413."""
    doc = httpx.get(f"{live.url}/openapi.json", timeout=30).json()
    schemas = doc["components"]["schemas"]
    assert schemas["DarcyJob"]["properties"]["samples"]["maximum"] == LIMITS["max_samples"]
    for grid in ("DarcyGrid", "HeatGrid", "HelmholtzGrid"):
        assert schemas[grid]["properties"]["n"]["maximum"] == 90  # isqrt(8192)
    assert doc["info"]["x-pdeforge-limits"]["max_samples"] == LIMITS["max_samples"]
    assert "HTTPValidationError" not in schemas and set(schemas["ErrorBody"]["required"]) == {"detail", "code"}
    post = doc["paths"]["/v1/jobs"]["post"]
    for code in ("401", "403", "413", "422", "429"):
        assert post["responses"][code]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    for code in ("404", "409"):
        assert code in doc["paths"]["/v1/datasets/{dataset_id}"]["get"]["responses"]
    assert post["security"] == [{"bearer": []}, {"session": []}]
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "security" not in doc["paths"]["/healthz"]["get"]
    # the real 422 body has the declared shape
    body = error_body(live.http.post("/v1/jobs", json={"family": "darcy", "samples": 0}), 422)
    assert set(body) <= set(schemas["ErrorBody"]["properties"]) and body["errors"][0]["field"] == "samples"


# ----------------------------------------------------------------------------- fuzzing
@pytest.fixture(scope="module", params=["auth", "open"])
def fuzz_api(request, redis_client, tmp_path_factory) -> Iterator[ApiServer]:
    """The API with limits (and tokens, or none) over local storage and NO workers: whatever valid
    spec the fuzzer submits stays queued (cleaned up with the cluster's keys and folder)."""
    log_dir = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    tokens = {"api_tokens": TOKEN} if request.param == "auth" else {}
    with make_cluster(redis_client, log_dir, local_root=log_dir / "store") as cluster:
        server = start_api(cluster, name=f"fuzz-api-{request.param}", **tokens, **LIMITS)
        try:
            yield server
        finally:
            server.stop()


@pytest.mark.timeout(120)
def test_schemathesis_finds_no_server_error(fuzz_api):
    """Property-based requests generated from the live /openapi.json: never a 5xx."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings

    auth = {"Authorization": f"Bearer {TOKEN}"}
    schema = schemathesis.openapi.from_url(f"{fuzz_api.url}/openapi.json", headers=auth)
    doc = httpx.get(f"{fuzz_api.url}/openapi.json", timeout=30).json()
    # Authorization is declared exactly when the server asks for it
    assert ("securitySchemes" in doc["components"]) == ("auth" in fuzz_api.name), doc["components"].keys()
    failures, calls = [], 0
    operations = [result.ok() for result in schema.get_all_operations()]
    # an event stream never ends, so it cannot be called like this (tests/app/test_web.py covers it)
    operations = [op for op in operations
                  if "text/event-stream" not in op.definition.raw["responses"].get("200", {}).get("content", {})]
    for operation, mode in itertools.product(operations, schemathesis.GenerationMode):

        @settings(max_examples=15, deadline=None, database=None, derandomize=True,
                  phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def call(case) -> None:
            nonlocal calls
            response = case.call(headers=auth, timeout=30)
            calls += 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} {case.body!r:.300}: "
                                f"{response.status_code} {response.text[:300]}")

        try:
            call()
        except Exception as exc:  # e.g. hypothesis cannot generate negative data for a parameterless route
            if type(exc).__name__ not in ("Unsatisfiable", "InvalidArgument", "SkipTest"):
                raise
    assert calls > 100
    assert not failures, "\n".join(failures[:20])
