"""A trajectory job through the real service (Redis, Celery worker processes, SeaweedFS S3): a pool
child is killed mid-shard, the job completes, every stored file matches its sha256, every trajectory
is there once, and -- the engine pinned -- the frames are bit-identical to `pdeforge generate`'s."""

from __future__ import annotations

import hashlib
import io
import os
import signal

import h5py
import numpy as np

from pdeforge.workers import keys, pipeline
from pdeforge.workers.standalone import generate_local
from tests.cluster import make_job


def test_a_trajectory_job_survives_a_killed_worker_and_matches_local_generation(new_cluster, tmp_path):
    c = new_cluster
    worker = c.start_worker(concurrency=1, lease_seconds=8)
    # heat 48^2, 400 Crank-Nicolson steps per trajectory: a shard of 6 takes about a second
    job = make_job("heat", n=48, samples=18, seed=7, shard_samples=6, solver={"engine": "direct"},
                   time={"t_end": 0.1, "dt": 2.5e-4, "frames": 6}, split={"train": 1.0, "valid": 0.0, "test": 0.0})
    c.service.submit(job)
    c.wait_for(job.dataset_id, lambda r: r["status"] not in ("queued", "planning"), what="plan")
    plan = pipeline.read_plan(c.storage, job.dataset_id)
    sizes = {s.name: len(s.indices) for s in plan.shards()}
    victim = c.wait_mid_shard(job.dataset_id, sizes)
    children = worker.pool_children()
    os.kill(children[0], signal.SIGKILL)
    rec = c.wait_succeeded(job.dataset_id, timeout=180)
    assert rec["samples_done"] == job.samples
    attempts = c.store.r.hgetall(c.store._k(job.dataset_id, "attempts"))
    assert int(attempts[victim]) >= 2, attempts

    manifest = c.storage.get_json(keys.manifest(job.dataset_id))
    assert manifest["time"]["frames"] == 6 and manifest["complete"]
    remote: dict[int, np.ndarray] = {}
    for entry in manifest["files"]:
        data = c.storage.get_bytes(keys.prefix(job.dataset_id) + entry["path"])
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["path"]
        if "shard" in entry:
            with h5py.File(io.BytesIO(data), "r") as h5:
                assert h5["y"].shape[1:] == (6, 1, 48, 48)
                assert np.all(h5["solver/residual"][:] <= job.solver.rtol) and h5["solver/steps"][0] == 400
                for pos, index in enumerate(h5["sample_index"][:]):
                    assert int(index) not in remote, f"trajectory {index} stored twice"
                    remote[int(index)] = h5["y"][pos]
    assert sorted(remote) == list(range(job.samples))

    local_manifest = generate_local(job, tmp_path, workers=1)
    for entry in (f for f in local_manifest["files"] if "shard" in f):
        with h5py.File(tmp_path / entry["path"], "r") as h5:
            for pos, index in enumerate(h5["sample_index"][:]):
                assert np.array_equal(h5["y"][pos], remote[int(index)]), index


def test_a_trajectory_longer_than_the_lease_keeps_its_shard(new_cluster):
    """One Navier-Stokes trajectory of several lease periods (lease 2 s): the stored frames renew the
    lease, so the sweep never re-sends the shard -- one delivery, one attempt, the job succeeds."""
    c = new_cluster
    c.start_worker(concurrency=1, lease_seconds=2)
    # 12000 steps at 64^2 (several seconds), a frame every 200 steps
    job = make_job("navier_stokes", n=64, samples=1, seed=1, shard_samples=1,
                   time={"t_end": 60.0, "dt": 5e-3, "frames": 61}, split={"train": 1.0, "valid": 0.0, "test": 0.0})
    c.service.submit(job)
    rec = c.wait_succeeded(job.dataset_id, timeout=240)
    assert rec["samples_done"] == 1
    attempts = c.store.r.hgetall(c.store._k(job.dataset_id, "attempts"))
    assert all(int(v) == 1 for v in attempts.values()), attempts  # without the frames' renewals: train/00000 = 2
