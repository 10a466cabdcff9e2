"""End to end: real Redis (DB 13), real Celery worker processes, real SeaweedFS S3.

The test process submits through :class:`~pdeforge.workers.jobs.JobService` (tasks sent to the
cluster's own queue), polls the job record in Redis and checks the stored dataset
object by object: checksums against the manifest, residuals, every sample index
exactly once, solutions against an independent direct solve.  Crash tests kill the
pool child or the whole worker with SIGKILL in the middle of a shard.

No wall-clock assertions: everything waits by polling with generous timeouts and
fails with the job record and the worker logs.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import time

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from pdeforge.solvers.families import get_family
from pdeforge.workers import keys, pipeline
from pdeforge.workers.spec import JobBase

from tests.cluster import SLOW_SOLVER, Cluster, make_job

pytestmark = pytest.mark.timeout(400)


# ----------------------------------------------------------------------------- checkers
def load_shards(storage, job: JobBase, plan) -> dict[str, dict]:
    """Every planned shard's arrays, read from the stored objects."""
    out = {}
    for shard in plan.shards():
        with h5py.File(io.BytesIO(storage.get_bytes(shard.key)), "r") as h5:
            out[keys.shard_name(shard.split, shard.shard)] = {
                "plan": shard, "sample_index": h5["sample_index"][:], "x": h5["x"][:], "y": h5["y"][:],
                "residual": h5["solver/residual"][:], "converged": h5["solver/converged"][:],
                "dataset_id": h5.attrs["dataset_id"],
            }
    return out


def check_dataset(cluster: Cluster, job: JobBase) -> tuple[dict, dict]:
    """Manifest and checksums, every index exactly once, residuals; returns (manifest, shards)."""
    storage, dataset_id = cluster.storage, job.dataset_id
    manifest = storage.get_json(keys.manifest(dataset_id))
    plan = pipeline.read_plan(storage, dataset_id)
    assert manifest["dataset_id"] == dataset_id and manifest["samples"] == job.samples
    for entry in manifest["files"]:
        data = storage.get_bytes(keys.prefix(dataset_id) + entry["path"])
        assert len(data) == entry["bytes"], entry["path"]
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], f"checksum mismatch: {entry['path']}"
    listed = {e["path"] for e in manifest["files"] if "shard" in e}
    shards = load_shards(storage, job, plan)
    assert listed == {s["plan"].key.removeprefix(keys.prefix(dataset_id)) for s in shards.values()}
    indices = np.concatenate([s["sample_index"] for s in shards.values()])
    assert len(indices) == job.samples and len(set(indices.tolist())) == job.samples, \
        f"duplicate or missing samples: {sorted(indices.tolist())}"
    assert sorted(indices.tolist()) == list(range(job.samples))
    for name, s in shards.items():
        assert s["sample_index"].tolist() == s["plan"].indices, f"{name} not in planned order"
        assert s["dataset_id"] == dataset_id
        assert np.all(s["residual"] <= job.solver.rtol), f"{name}: residuals {s['residual'].max():.3e}"
        assert s["converged"].all()
    for split in keys.SPLITS:
        in_split = [s for s in shards.values() if s["plan"].split == split]
        assert manifest["splits"][split] == {"samples": sum(len(s["sample_index"]) for s in in_split),
                                             "shards": len(in_split), "shards_planned": len(in_split)}
    return manifest, shards


def check_direct_solves(job: JobBase, shards: dict, *, rel: float = 1e-6) -> None:
    """y (stored as float32) against SuperLU on the same (seed, index) system."""
    family, spec = get_family(job.family), job.family_spec()
    for name, s in shards.items():
        for pos, index in enumerate(s["sample_index"].tolist()):
            sample = family.sample(spec, job.seed, index)
            A, b = family.assemble(spec, sample)
            reference = spla.spsolve(sp.csc_matrix(A), b)
            y = s["y"][pos].astype(np.float64).ravel()
            err = np.linalg.norm(y - reference) / np.linalg.norm(reference)
            assert err <= rel, f"{name}[{pos}] (sample {index}): |y - y_direct|/|y_direct| = {err:.2e}"


def shard_versions(cluster: Cluster, job: JobBase) -> dict[str, tuple]:
    """(etag, modified, size) of every stored shard object and shard record of ``job``."""
    out = {}
    for info in cluster.storage.list(keys.prefix(job.dataset_id)):
        if "/data/" in info.key or "/shards/" in info.key:
            out[info.key] = (info.etag, info.modified, info.size)
    return out


def plan_of(cluster: Cluster, job: JobBase):
    return pipeline.read_plan(cluster.storage, job.dataset_id)


def shard_sizes(plan) -> dict[str, int]:
    return {s.name: len(s.indices) for s in plan.shards()}


def wait_plan(cluster: Cluster, job: JobBase, timeout: float = 60.0):
    cluster.wait_for(job.dataset_id, lambda r: r["status"] not in ("queued", "planning"), timeout=timeout,
                     what="plan")
    return plan_of(cluster, job)


def lease_keys(cluster: Cluster, job_id: str) -> list[str]:
    return list(cluster.store.r.scan_iter(match=cluster.store._k(job_id, "lease:*")))


def slow_job(seed: int, *, samples: int = 80, shard_samples: int = 20, **extra) -> JobBase:
    """64^2 darcy solved by unpreconditioned GMRES(20): a shard of 20 takes seconds."""
    return make_job(n=64, samples=samples, seed=seed, shard_samples=shard_samples, solver=SLOW_SOLVER, **extra)


# ----------------------------------------------------------------------------- happy path
def test_small_job_completes_with_verified_shards(cluster):
    job = make_job(n=32, samples=40, seed=101, shard_samples=14, solver={"rtol": 1e-11})
    rec, created = cluster.service.submit(job)
    assert created and rec["id"] == job.dataset_id and rec["status"] == "queued"
    rec = cluster.wait_succeeded(job.dataset_id)

    manifest, shards = check_dataset(cluster, job)
    assert len(shards) >= 3 and manifest["splits"]["train"]["shards"] == 3  # 32 train samples / 14
    assert rec["shards_total"] == rec["shards_done"] == len(shards)
    assert rec["samples_done"] == job.samples
    assert rec["summary"]["samples"] == job.samples and rec["summary"]["unconverged"] == 0
    check_direct_solves(job, shards)
    assert not lease_keys(cluster, job.dataset_id), "leases must be released after each shard"


def test_resubmit_returns_same_job_and_recomputes_nothing(cluster):
    job = make_job(n=32, samples=40, seed=102, shard_samples=14)
    first, created = cluster.service.submit(job)
    assert created
    cluster.wait_succeeded(job.dataset_id)
    before = shard_versions(cluster, job)
    manifest_before = cluster.storage.stat(keys.manifest(job.dataset_id))
    assert len(before) == 2 * 5  # five shard objects and their records

    again, created = cluster.service.submit(job)
    assert not created and again["id"] == first["id"] == job.dataset_id
    assert again["status"] == "succeeded"
    time.sleep(1.0)  # would-be tasks have had time to start; none may have been sent
    assert shard_versions(cluster, job) == before
    assert cluster.storage.stat(keys.manifest(job.dataset_id)) == manifest_before
    assert cluster.store.get(job.dataset_id)["status"] == "succeeded"


def test_lost_record_of_finished_job_is_recovered_from_storage(cluster):
    job = make_job(n=32, samples=40, seed=103, shard_samples=14)
    cluster.service.submit(job)
    done = cluster.wait_succeeded(job.dataset_id)
    before = shard_versions(cluster, job)

    cluster.store.delete(job.dataset_id)
    assert cluster.store.get(job.dataset_id) is None
    rec = cluster.service.get(job.dataset_id)
    assert rec["status"] == "succeeded", rec
    assert rec["shards_done"] == rec["shards_total"] == done["shards_total"]
    assert rec["samples_done"] == job.samples
    assert rec["summary"]["samples"] == job.samples
    assert job.dataset_id in cluster.store.ids()
    time.sleep(1.0)
    assert shard_versions(cluster, job) == before


# ----------------------------------------------------------------------------- cancel, resume
def test_cancel_stops_running_shards_and_writes_no_manifest(cluster):
    job = slow_job(seed=104, samples=60, shard_samples=20)
    cluster.service.submit(job)
    sizes = shard_sizes(wait_plan(cluster, job))
    cluster.wait_mid_shard(job.dataset_id, sizes)

    rec = cluster.service.cancel(job.dataset_id)
    assert rec["status"] == "cancelled" and rec["cancel_requested"], rec
    # read after the flag is set: a running shard may still finish the sample in flight
    at_cancel = cluster.progress(job.dataset_id)
    done_at_cancel = cluster.store.done_shards(job.dataset_id)

    # progress settles: each running shard stops after at most the sample it was solving
    settled, last, stable_since = None, None, time.monotonic()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = cluster.progress(job.dataset_id)
        if now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since > 3.0 and not lease_keys(cluster, job.dataset_id):
            settled = now
            break
        time.sleep(0.1)
    assert settled is not None, f"progress kept changing after cancel: {last}\n{cluster.logs()}"
    for name, count in settled.items():
        if name in cluster.store.done_shards(job.dataset_id):
            continue
        assert count <= at_cancel.get(name, 0) + 1, f"shard {name} went on: {at_cancel} -> {settled}"
    rec = cluster.store.get(job.dataset_id)
    assert rec["status"] == "cancelled", rec
    assert len(cluster.store.done_shards(job.dataset_id)) < len(sizes)
    assert not cluster.storage.exists(keys.manifest(job.dataset_id))
    stopped = [name for name in at_cancel if name not in cluster.store.done_shards(job.dataset_id)]
    for name in stopped:  # a stopped shard leaves neither object nor record
        split, k = name.split("/")
        assert not cluster.storage.exists(keys.shard_record(job.dataset_id, split, int(k)))
        assert not cluster.storage.exists(keys.shard(job.dataset_id, split, int(k)))

    # submitting again restarts the job and keeps the shards finished before the cancel
    finished = shard_versions(cluster, job)
    assert len(done_at_cancel) <= len([k for k in finished if "/data/" in k])
    rec, created = cluster.service.submit(job)
    assert created and rec["status"] == "queued"
    cluster.wait_succeeded(job.dataset_id, timeout=180)
    after = shard_versions(cluster, job)
    assert all(after[k] == v for k, v in finished.items()), "finished shards were recomputed"
    check_dataset(cluster, job)


def test_resume_after_record_lost_mid_run_keeps_finished_shards(cluster):
    job = slow_job(seed=105, samples=60, shard_samples=10)
    cluster.service.submit(job)
    sizes = shard_sizes(wait_plan(cluster, job))
    assert len(sizes) >= 6
    rec = cluster.wait_for(job.dataset_id, lambda r: r["shards_done"] >= 2, timeout=120,
                           what="two finished shards", interval=0.02)
    finished = shard_versions(cluster, job)
    assert rec["status"] == "running" and rec["shards_done"] < len(sizes), rec

    cluster.store.delete(job.dataset_id)  # the Redis record is lost mid-run
    assert cluster.store.get(job.dataset_id) is None
    rec = cluster.service.resume(job.dataset_id)
    assert rec["id"] == job.dataset_id and rec["status"] == "queued", rec
    rec = cluster.wait_succeeded(job.dataset_id, timeout=180)
    assert rec["shards_done"] == rec["shards_total"] == len(sizes)

    after = shard_versions(cluster, job)
    assert all(after[k] == v for k, v in finished.items()), "shards finished before the loss were recomputed"
    check_dataset(cluster, job)


# ----------------------------------------------------------------------------- crashes
def test_killed_pool_child_shard_is_redelivered_and_job_completes(new_cluster):
    c = new_cluster
    worker = c.start_worker(concurrency=1, lease_seconds=8)
    job = slow_job(seed=106, split={"train": 0.5, "valid": 0.25, "test": 0.25})  # four shards of 20
    c.service.submit(job)
    sizes = shard_sizes(wait_plan(c, job))
    # The last shard in queue order: its redelivery comes at once, while the dead child's
    # lease is still held; the lease of a dead process of this host is taken over at once (and
    # were it not, the recovery sweep would re-send the shard when the lease lapses).
    last = list(sizes)[-1]
    victim = c.wait_mid_shard(job.dataset_id, {last: sizes[last]})
    children = worker.pool_children()
    assert len(children) == 1, children
    os.kill(children[0], signal.SIGKILL)

    rec = c.wait_succeeded(job.dataset_id, timeout=180)
    assert worker.process.poll() is None, "the worker main process must survive its pool child"
    assert worker.pool_children() and worker.pool_children() != children
    attempts = c.store.r.hgetall(c.store._k(job.dataset_id, "attempts"))
    assert int(attempts[victim]) == 2, attempts
    assert rec["samples_done"] == job.samples
    check_dataset(c, job)


def _kill_and_recover(c: Cluster, *, main_only: bool) -> None:
    lease = 4
    first = c.start_worker(concurrency=1, lease_seconds=lease)
    job = slow_job(seed=107 if main_only else 109)
    c.service.submit(job)
    sizes = shard_sizes(wait_plan(c, job))
    victim = c.wait_mid_shard(job.dataset_id, sizes)
    children = first.pool_children() + first.sweepers()
    if main_only:  # its pool child and its sweep die with it (PR_SET_PDEATHSIG)
        os.kill(first.pid, signal.SIGKILL)
    else:
        first.kill_group(signal.SIGKILL)
    first.process.wait(30)
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in children):
        assert time.monotonic() < deadline, f"orphans of the killed worker: {children}"
        time.sleep(0.05)

    # A new worker with the default (6 h) visibility timeout: the dead worker's message stays
    # unacked in the broker, and the recovery sweep re-sends the shard once its lease lapsed.
    started = time.monotonic()
    c.start_worker(concurrency=1, lease_seconds=lease)
    rec = c.wait_succeeded(job.dataset_id, timeout=180)
    assert time.monotonic() - started < 120, "recovery must not wait for the broker's visibility timeout"
    attempts = c.store.r.hgetall(c.store._k(job.dataset_id, "attempts"))
    assert int(attempts[victim]) >= 2, attempts
    assert rec["samples_done"] == job.samples
    check_dataset(c, job)


def alive(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_killed_worker_shard_is_resent_by_the_sweep_not_the_broker(new_cluster):
    """Defect 2: kill -9 of a whole worker used to stall the job for the 6 h visibility timeout."""
    _kill_and_recover(new_cluster, main_only=False)


def test_killed_worker_main_process_takes_its_pool_and_sweep_along(new_cluster):
    _kill_and_recover(new_cluster, main_only=True)


def test_shard_that_keeps_killing_its_worker_fails_the_job(new_cluster):
    c = new_cluster
    worker = c.start_worker(concurrency=1, max_attempts=1)
    job = slow_job(seed=108, samples=40)
    c.service.submit(job)
    sizes = shard_sizes(wait_plan(c, job))
    victim = c.wait_mid_shard(job.dataset_id, sizes)
    os.kill(worker.pool_children()[0], signal.SIGKILL)

    rec = c.wait_terminal(job.dataset_id, timeout=120)
    assert rec["status"] == "failed", rec
    assert victim in rec["error"] and "max_attempts=1" in rec["error"], rec["error"]
    assert not c.storage.exists(keys.manifest(job.dataset_id))


def test_pdeforge_generate_writes_the_same_dataset_as_the_service(cluster, tmp_path):
    """`pdeforge generate` (no server) produces the same layout, and the same (seed, index)
    gives the same y as the distributed run, to solver tolerance."""
    import subprocess
    import sys

    job = make_job(n=24, samples=30, seed=202, shard_samples=8)
    cluster.service.submit(job)
    cluster.wait_succeeded(job.dataset_id)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(job.model_dump(mode="json")))
    out = tmp_path / "local"
    subprocess.run([sys.executable, "-m", "pdeforge.app.cli", "generate", str(spec_file), "--out", str(out),
                    "--workers", "2", "--quiet"], check=True, timeout=300)
    root = out  # generate --out DIR writes the dataset into DIR, like download
    local = json.loads((root / "manifest.json").read_text())
    remote = cluster.storage.get_json(keys.manifest(job.dataset_id))
    assert sorted(f["path"] for f in local["files"]) == sorted(f["path"] for f in remote["files"])
    assert local["splits"] == remote["splits"] and local["dataset_id"] == remote["dataset_id"]

    def solutions(read) -> dict[int, np.ndarray]:
        ys = {}
        for entry in (f for f in remote["files"] if "shard" in f):
            with h5py.File(read(entry["path"]), "r") as h5:
                for i, y in zip(h5["sample_index"][:], h5["y"][:]):
                    ys[int(i)] = y.astype(np.float64)
        return ys

    ours = solutions(lambda path: root / path)
    theirs = solutions(lambda path: io.BytesIO(cluster.storage.get_bytes(keys.prefix(job.dataset_id) + path)))
    assert sorted(ours) == sorted(theirs) == list(range(job.samples))
    for i, y in ours.items():
        assert np.linalg.norm(y - theirs[i]) <= 1e-6 * np.linalg.norm(theirs[i]), i


def test_a_pseudo_spectral_trajectory_job_runs_through_the_service(cluster, tmp_path):
    """Navier-Stokes through Redis, Celery worker processes and S3: every trajectory once, sha256-verified
    files, and frames bit-identical to `pdeforge generate` (the stepper is deterministic)."""
    from pdeforge.workers.standalone import generate_local

    job = make_job("navier_stokes", n=16, samples=10, seed=3, shard_samples=4,
                   time={"t_end": 0.2, "dt": 0.01, "frames": 3}, split={"train": 1.0, "valid": 0.0, "test": 0.0})
    cluster.service.submit(job)
    cluster.wait_succeeded(job.dataset_id)
    manifest = cluster.storage.get_json(keys.manifest(job.dataset_id))
    assert manifest["engine"]["chosen"] == "pseudo_spectral" and manifest["grid_type"].startswith("periodic")
    remote = {}
    for entry in manifest["files"]:
        data = cluster.storage.get_bytes(keys.prefix(job.dataset_id) + entry["path"])
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["path"]
        if "shard" in entry:
            with h5py.File(io.BytesIO(data), "r") as h5:
                assert h5["y"].shape[1:] == (3, 1, 16, 16) and np.all(h5["solver/residual"][:] <= 1e-14)
                for i, y in zip(h5["sample_index"][:], h5["y"][:]):
                    assert int(i) not in remote
                    remote[int(i)] = y
    assert sorted(remote) == list(range(job.samples))
    local = generate_local(job, tmp_path, workers=1)
    for entry in (f for f in local["files"] if "shard" in f):
        with h5py.File(tmp_path / entry["path"], "r") as h5:
            for i, y in zip(h5["sample_index"][:], h5["y"][:]):
                assert np.array_equal(y, remote[int(i)]), i
