"""Results while a job runs: finished shards are listed (final), downloadable and readable as samples
before the last shard; unfinished ones answer 409 naming the shard.

Deterministic: the job's record lives in real Redis (DB 14, a unique key prefix, deleted
afterwards), its spec and plan in a tmp folder, and exactly one shard is solved by the
pipeline function itself -- no worker races the assertions.
"""

from __future__ import annotations

import hashlib
import io
import uuid

import h5py
import numpy as np
import pytest
from fastapi.testclient import TestClient

from pdeforge.app.main import create_app
from pdeforge.workers import pipeline
from pdeforge.workers.config import Settings
from pdeforge.workers.principals import ANONYMOUS
from pdeforge.workers.services import make_storage, make_store
from pdeforge.workers.status import JobStatus
from tests.cluster import make_job

REDIS_URL = "redis://127.0.0.1:6379/14"


@pytest.fixture
def running(tmp_path):
    prefix = f"partial-{uuid.uuid4().hex[:8]}"
    settings = Settings(broker_url=REDIS_URL, key_prefix=prefix, storage_url=(tmp_path / "store").as_uri())
    store, storage = make_store(settings), make_storage(settings)
    job = make_job("darcy", n=16, samples=12, seed=5, shard_samples=4,
                   split={"train": 1.0, "valid": 0.0, "test": 0.0})
    pipeline.write_spec(storage, job)
    plan = pipeline.load_or_make_plan(storage, job)
    store.submit(job.dataset_id, ANONYMOUS.name, samples_total=job.samples, family=job.family)
    store.set_status(job.dataset_id, JobStatus.RUNNING)
    done = pipeline.solve_shard(storage, job, plan.splits["train"][1])  # one of three shards is finished
    client = TestClient(create_app(settings, enqueue=lambda *args: None))
    try:
        yield client, job, plan, done, storage
    finally:
        client.close()
        for key in store.r.scan_iter(match=f"{prefix}:*"):
            store.r.delete(key)


def test_the_manifest_lists_the_finished_shards_as_final(running):
    client, job, plan, done, _ = running
    manifest = client.get(f"/v1/datasets/{job.dataset_id}").json()
    assert manifest["complete"] is False and manifest["status"] == "running"
    shards = [f for f in manifest["files"] if "shard" in f]
    assert [(f["split"], f["shard"], f["final"]) for f in shards] == [("train", 1, True)]
    assert manifest["shards_final"] == 1 and manifest["shards_total"] == plan.shards_total == 3
    assert manifest["splits"]["train"] == {"samples": 4, "shards": 1, "shards_planned": 3}
    assert shards[0]["sha256"] == done.sha256


def test_a_finished_shard_downloads_and_its_samples_read_before_the_job_ends(running):
    client, job, plan, done, storage = running
    entry = next(f for f in client.get(f"/v1/datasets/{job.dataset_id}").json()["files"] if "shard" in f)
    data = client.get(f"/v1/datasets/{job.dataset_id}/files/{entry['path']}").content
    assert hashlib.sha256(data).hexdigest() == entry["sha256"] == done.sha256
    with h5py.File(io.BytesIO(data), "r") as h5:
        index, y = int(h5["sample_index"][2]), h5["y"][2]
    sample = client.get(f"/v1/datasets/{job.dataset_id}/samples/{index}").json()
    assert sample["index"] == index and np.array_equal(np.asarray(sample["y"], dtype=np.float32), y)
    png = client.get(f"/v1/datasets/{job.dataset_id}/samples/{index}.png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")


def test_samples_and_files_of_unfinished_shards_are_409_naming_the_shard(running):
    client, job, plan, _, _ = running
    waiting = plan.splits["train"][0]
    r = client.get(f"/v1/datasets/{job.dataset_id}/samples/{waiting.indices[0]}")
    assert r.status_code == 409 and "train/00000" in r.json()["detail"] and "not finished" in r.json()["detail"]
    r = client.get(f"/v1/datasets/{job.dataset_id}/files/{waiting.key.split('/', 2)[2]}")
    assert r.status_code == 404  # not listed: nothing of it is served
    r = client.get(f"/v1/datasets/{job.dataset_id}/files/manifest.json")
    assert r.status_code == 409 and "1/3 shards final" in r.json()["detail"]


def test_the_sample_list_names_the_samples_of_finished_shards(running):
    client, job, plan, done, _ = running
    finished = sorted(plan.splits["train"][1].indices)
    r = client.get(f"/v1/datasets/{job.dataset_id}/samples")
    assert r.status_code == 200, r.text
    assert r.json() == {"dataset_id": job.dataset_id, "complete": False, "available": 4, "indices": finished}
    first = client.get(f"/v1/datasets/{job.dataset_id}/samples", params={"limit": 3}).json()["indices"]
    rest = client.get(f"/v1/datasets/{job.dataset_id}/samples", params={"after": first[-1]}).json()["indices"]
    assert first + rest == finished and len(first) == 3
    for index in finished:  # each one reads; the others are 409
        assert client.get(f"/v1/datasets/{job.dataset_id}/samples/{index}").status_code == 200
    other = next(i for i in range(job.samples) if i not in finished)
    assert client.get(f"/v1/datasets/{job.dataset_id}/samples/{other}").status_code == 409
    for params in ({"limit": 0}, {"limit": 10_001}, {"after": -2}, {"after": 2**63}):
        assert client.get(f"/v1/datasets/{job.dataset_id}/samples", params=params).status_code == 422, params
