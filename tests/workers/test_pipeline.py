"""Plan, solve_shard and finalize as plain functions (no Celery, no Redis).

Storage is a local folder, or -- through the ``storage`` fixture, where it is cheap --
both the local folder and a prefix on the real SeaweedFS server.  Every stored array
is read back from the stored bytes and compared with an independent computation:
split counts by largest remainders, statistics by NumPy over the train shards, and
solutions by SuperLU on the same (seed, index) system.
"""

from __future__ import annotations

import hashlib
import io
import json
import math

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from pdeforge.solvers import __version__
from pdeforge.solvers.families import get_family
from pdeforge.workers import keys, pipeline
from pdeforge.workers.config import Settings
from pdeforge.workers.errors import JobCancelled, StorageError
from pdeforge.workers.jobs import LimitExceeded, check_limits
from pdeforge.workers.storage import LocalStorage, open_storage

from tests.cluster import make_job


@pytest.fixture
def local(tmp_path):
    return open_storage((tmp_path / "store").as_uri())


def shards_of(plan):
    return plan.shards()


def stored_plan(storage, job):
    pipeline.write_spec(storage, job)
    return pipeline.load_or_make_plan(storage, job)


def read_h5(storage, key: str) -> h5py.File:
    return h5py.File(io.BytesIO(storage.get_bytes(key)), "r")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------- split
@pytest.mark.parametrize("samples, fractions, expected", [
    (10, (0.8, 0.1, 0.1), (8, 1, 1)),
    (1000, (0.7, 0.2, 0.1), (700, 200, 100)),
    (7, (0.5, 0.25, 0.25), (3, 2, 2)),        # 3.5, 1.75, 1.75: the two .75 remainders win
    (11, (1 / 3, 1 / 3, 1 / 3), (4, 4, 3)),    # tie between equal remainders: split order
    (3, (0.8, 0.1, 0.1), (3, 0, 0)),          # 2.4, 0.3, 0.3
    (1, (0.8, 0.1, 0.1), (1, 0, 0)),
    (9, (0.0, 0.5, 0.5), (0, 5, 4)),
    (5, (1.0, 0.0, 0.0), (5, 0, 0)),
])
def test_split_counts_follow_largest_remainders(samples, fractions, expected):
    job = make_job(samples=samples, split=dict(zip(keys.SPLITS, fractions)))
    parts = pipeline.split_indices(job)
    assert tuple(len(parts[name]) for name in keys.SPLITS) == expected
    for name, fraction in zip(keys.SPLITS, fractions):
        assert abs(len(parts[name]) - fraction * samples) < 1
    together = np.concatenate([parts[name] for name in keys.SPLITS])
    assert sorted(together.tolist()) == list(range(samples)), "splits must be disjoint and cover all samples"


def test_split_is_deterministic_and_depends_only_on_seed_and_size():
    job = make_job(samples=200, seed=7)
    first = pipeline.split_indices(job)
    again = pipeline.split_indices(make_job(samples=200, seed=7, shard_samples=13, solver={"engine": "gmres"}))
    for name in keys.SPLITS:
        assert np.array_equal(first[name], again[name])
        assert np.array_equal(first[name], np.sort(first[name]))
    other = pipeline.split_indices(make_job(samples=200, seed=8))
    assert not np.array_equal(first["train"], other["train"])
    # not simply the first 80 %: the assignment is a seeded permutation
    assert first["train"].tolist() != list(range(160))


# ----------------------------------------------------------------------------- plan
def path_length(job, indices) -> float:
    feats = get_family(job.family).features(job.family_spec(), job.seed, np.asarray(indices))
    return float(np.linalg.norm(np.diff(feats, axis=0), axis=1).sum())


@pytest.mark.parametrize("ordering", ["greedy", "none", "hilbert"])
def test_plan_cuts_the_ordered_split_into_contiguous_shards(ordering):
    job = make_job(samples=50, seed=3, shard_samples=7, solver={"ordering": ordering})
    plan = pipeline.make_plan(job)
    parts = pipeline.split_indices(job)
    assert plan.dataset_id == job.dataset_id and plan.samples == 50
    total = 0
    for name in keys.SPLITS:
        shards = plan.splits[name]
        n = len(parts[name])
        assert len(shards) == math.ceil(n / 7)
        assert [s.shard for s in shards] == list(range(len(shards)))
        ordered = [i for s in shards for i in s.indices]
        assert sorted(ordered) == parts[name].tolist(), f"{name}: shards must hold exactly the split"
        for s in shards:
            assert s.split == name and s.key == keys.shard(job.dataset_id, name, s.shard)
            assert 1 <= len(s.indices) <= job.output.shard_samples
        assert max(map(len, (s.indices for s in shards))) - min(map(len, (s.indices for s in shards))) <= 1
        total += len(shards)
        if ordering == "none":
            assert ordered == parts[name].tolist()
        elif n > 2:
            assert ordered != parts[name].tolist(), f"{ordering} ordering was not applied to {name}"
        assert plan.ordering[name]["method"] == ordering
    assert plan.shards_total == total
    if ordering != "none":  # ordering puts similar samples next to each other
        train = [i for s in plan.splits["train"] for i in s.indices]
        assert path_length(job, train) < 0.8 * path_length(job, parts["train"])


def test_same_spec_gives_the_same_plan():
    job = make_job(samples=60, seed=11, shard_samples=9)

    def essence(plan) -> dict:  # everything but the timings (and the auto pilot's, measured)
        data = plan.to_json()
        splits = {name: [{k: v for k, v in s.items() if k != "engine"} for s in shards]
                  for name, shards in data["splits"].items()}
        return {**data, "seconds": None, "ordering": {k: v["method"] for k, v in data["ordering"].items()},
                "engine": data["engine"]["requested"], "splits": splits}

    first = pipeline.make_plan(job)
    assert essence(pipeline.make_plan(make_job(samples=60, seed=11, shard_samples=9))) == essence(first)
    assert essence(pipeline.make_plan(make_job(samples=60, seed=12, shard_samples=9))) != essence(first)


def test_stored_plan_is_reused(local):
    job = make_job(samples=20, seed=2)
    plan = stored_plan(local, job)
    before = local.stat(keys.plan(job.dataset_id))
    assert pipeline.load_or_make_plan(local, job) == plan
    assert local.stat(keys.plan(job.dataset_id)) == before


# ----------------------------------------------------------------------------- solve_shard
def test_solve_shard_writes_the_documented_hdf5(storage):
    job = make_job(samples=12, seed=5, shard_samples=4)
    plan = stored_plan(storage, job)
    shard = plan.splits["train"][1]
    record = pipeline.solve_shard(storage, job, shard)

    data = storage.get_bytes(shard.key)
    assert record.bytes == len(data) and record.sha256 == sha256(data)
    assert record.key == shard.key and (record.split, record.shard) == ("train", 1)
    assert storage.get_json(keys.shard_record(job.dataset_id, "train", 1)) == record.to_json()
    S, n = len(shard.indices), job.grid.n
    with read_h5(storage, shard.key) as h5:
        assert set(h5) == {"x", "y", "sample_index", "grid_x", "grid_y", "channel_in", "channel_out", "solver"}
        for name in ("x", "y"):
            assert h5[name].shape == (S, 1, n, n) and h5[name].dtype == np.float32
            assert h5[name].chunks == (1, 1, n, n)
        assert [c.decode() for c in h5["channel_in"][:]] == ["a"] and [c.decode() for c in h5["channel_out"][:]] == ["u"]
        assert h5["sample_index"].dtype == np.int64 and h5["sample_index"][:].tolist() == shard.indices
        for axis in ("grid_x", "grid_y"):
            assert np.allclose(h5[axis][:], (np.arange(n) + 0.5) / n)
        assert set(h5["solver"]) == {"iterations", "matvecs", "residual", "residual_stored", "seconds", "converged",
                                     "fallback", "engine"}
        assert h5["solver/residual"].dtype == np.float64
        assert h5["solver/iterations"].dtype == np.int64 and h5["solver/converged"].dtype == bool
        assert all(len(h5["solver"][k]) == S for k in h5["solver"])
        assert [e.decode() for e in h5["solver/engine"][:]] == [shard.engine] * S  # auto: the pilot's choice
        # every axis is a dimension scale
        assert [dim[0].name for dim in h5["x"].dims] == ["/sample_index", "/channel_in", "/grid_x", "/grid_y"]
        attrs = dict(h5.attrs)
    assert attrs["spec"] == job.canonical_json() and attrs["dataset_id"] == job.dataset_id
    assert attrs["pdeforge_version"] == __version__ and attrs["family"] == "darcy" and attrs["format_version"] == 2
    assert json.loads(attrs["grid"]) == [n, n] and json.loads(attrs["input_channels"]) == ["a"]
    assert attrs["split"] == "train" and attrs["shard"] == 1
    assert "u = 0 on every boundary face" in attrs["boundary_conditions"]
    assert "rounded to float32" in attrs["claims"] and "solve order" in attrs["sample_order"]
    assert record.samples == S and record.first_index == shard.indices[0]
    assert record.x == {"shape": [S, 1, n, n], "dtype": "float32"}
    assert record.solver["samples"] == S and record.solver["unconverged"] == 0


def test_solve_shard_float64_with_channels_scalars_and_extra_inputs(local):
    job = make_job("advection_diffusion", samples=6, seed=9, shard_samples=6,
                   params={"nu_min": 0.005, "nu_max": 0.05}, output={"dtype": "float64"}, split={
                       "train": 1.0, "valid": 0.0, "test": 0.0})
    shard = stored_plan(local, job).splits["train"][0]
    record = pipeline.solve_shard(local, job, shard)
    n = job.grid.n
    with read_h5(local, shard.key) as h5:
        assert h5["x"].shape == (6, 3, n, n) and h5["x"].chunks == (1, 3, n, n)
        assert json.loads(h5.attrs["input_channels"]) == ["vx", "vy", "nu"]
        assert h5["x"].dtype == h5["y"].dtype == np.float64
        nu = h5["scalars/nu"][:]
        assert nu.dtype == np.float64 and np.all((0.005 <= nu) & (nu <= 0.05)) and np.ptp(nu) > 0
        assert h5["inputs/psi"].shape == (6, n + 1, n + 1)
        family, spec = get_family(job.family), job.family_spec()
        for pos, index in enumerate(h5["sample_index"][:]):
            sample = family.sample(spec, job.seed, int(index))
            assert nu[pos] == sample.scalars["nu"] and np.all(h5["x"][pos, 2] == nu[pos])
            np.testing.assert_array_equal(h5["inputs/psi"][pos], sample.extras["psi"])
            assert np.array_equal(h5["x"][pos], family.inputs(spec, sample))
    assert record.x["dtype"] == record.y["dtype"] == "float64"


def test_solve_shard_does_not_recompute_a_finished_shard(storage, monkeypatch):
    job = make_job(samples=8, seed=6, shard_samples=4)
    shard = stored_plan(storage, job).splits["train"][0]
    record = pipeline.solve_shard(storage, job, shard)
    versions = {k: storage.stat(k) for k in (shard.key, keys.shard_record(job.dataset_id, "train", 0))}

    def boom(*args, **kwargs):
        raise AssertionError("a finished shard was solved again")

    monkeypatch.setattr(pipeline, "solve_sequence", boom)
    assert pipeline.solve_shard(storage, job, shard) == record
    assert pipeline.existing_shard(storage, job.dataset_id, "train", 0) == record
    assert {k: storage.stat(k) for k in versions} == versions


@pytest.mark.parametrize("damage", ["missing object", "truncated object", "missing record"])
def test_solve_shard_recomputes_a_damaged_shard(local, monkeypatch, damage):
    job = make_job(samples=8, seed=6, shard_samples=4)
    shard = stored_plan(local, job).splits["train"][0]
    record = pipeline.solve_shard(local, job, shard)
    record_key = keys.shard_record(job.dataset_id, "train", 0)
    if damage == "missing object":
        local.delete(shard.key)
    elif damage == "truncated object":
        local.put_bytes(shard.key, local.get_bytes(shard.key)[:-100])
    else:
        local.delete(record_key)
    assert pipeline.existing_shard(local, job.dataset_id, "train", 0) is None

    calls = []
    real = pipeline.solve_sequence
    monkeypatch.setattr(pipeline, "solve_sequence", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = pipeline.solve_shard(local, job, shard)
    assert calls == [1]
    data = local.get_bytes(shard.key)
    assert again.sha256 == sha256(data) and again.bytes == len(data) == record.bytes
    assert local.get_json(record_key)["sha256"] == again.sha256
    with read_h5(local, shard.key) as h5:
        assert h5["sample_index"][:].tolist() == shard.indices


def test_cancellation_stops_a_shard_within_one_sample(local, monkeypatch):
    job = make_job(samples=12, seed=4, shard_samples=10, split={"train": 1.0, "valid": 0.0, "test": 0.0})
    shard = stored_plan(local, job).splits["train"][0]
    done = []

    with pytest.raises(JobCancelled) as info:
        pipeline.solve_shard(local, job, shard, on_progress=done.append, should_cancel=lambda: len(done) >= 3)
    assert done == [1, 2, 3], "the flag must be seen right after the sample that raised it"
    assert info.value.job_id == job.dataset_id
    assert not local.exists(shard.key)
    assert not local.exists(keys.shard_record(job.dataset_id, "train", 0))

    def boom(*args, **kwargs):
        raise AssertionError("a cancelled shard must not start solving")

    monkeypatch.setattr(pipeline, "solve_sequence", boom)
    with pytest.raises(JobCancelled):
        pipeline.solve_shard(local, job, shard, should_cancel=lambda: True)


# ----------------------------------------------------------------------------- solutions
@pytest.mark.parametrize("family, params", [("darcy", {}), ("advection_diffusion", {})])
def test_stored_solutions_match_an_independent_direct_solve(local, family, params):
    rtol = 1e-10
    job = make_job(family, samples=10, seed=21, shard_samples=4, params=params, solver={"rtol": rtol})
    plan = stored_plan(local, job)
    fam, spec = get_family(family), job.family_spec()
    seen = []
    for shard in shards_of(plan):
        pipeline.solve_shard(local, job, shard)
        with read_h5(local, shard.key) as h5:
            residual, x, y = h5["solver/residual"][:], h5["x"][:], h5["y"][:]
            indices = h5["sample_index"][:].tolist()
        assert np.all(residual <= rtol), residual
        for pos, index in enumerate(indices):
            sample = fam.sample(spec, job.seed, index).rounded(np.float32)  # what the file stores
            A, b = fam.assemble(spec, sample)
            reference = spla.spsolve(sp.csc_matrix(A), b)
            stored = y[pos].astype(np.float64).ravel()
            err = np.linalg.norm(stored - reference) / np.linalg.norm(reference)
            assert err <= 1e-6, f"sample {index}: relative error {err:.2e} against SuperLU"
            assert np.array_equal(x[pos], fam.inputs(spec, sample).astype(np.float32))
        seen += indices
    assert sorted(seen) == list(range(job.samples))


# ----------------------------------------------------------------------------- finalize
class RecordingStorage(LocalStorage):
    """A local storage that remembers the order of writes."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.writes: list[str] = []

    def put_bytes(self, key, data, *, content_type=None):
        super().put_bytes(key, data, content_type=content_type)
        self.writes.append(key)

    def put_file(self, key, path, *, content_type=None):
        super().put_file(key, path, content_type=content_type)
        self.writes.append(key)

    def put_fileobj(self, key, fileobj, *, content_type=None):
        super().put_fileobj(key, fileobj, content_type=content_type)
        self.writes.append(key)


def solve_all(storage, job) -> dict:
    plan = stored_plan(storage, job)
    for shard in shards_of(plan):
        pipeline.solve_shard(storage, job, shard)
    return plan


def test_finalize_writes_checked_manifest_and_train_statistics(tmp_path):
    storage = RecordingStorage(tmp_path / "store")
    job = make_job(samples=30, seed=13, shard_samples=4)
    plan = solve_all(storage, job)
    manifest = pipeline.finalize(storage, job, plan)
    assert storage.writes[-1] == keys.manifest(job.dataset_id), "the manifest must be written last"
    assert storage.writes.count(keys.manifest(job.dataset_id)) == 1
    assert storage.get_json(keys.manifest(job.dataset_id)) == json.loads(json.dumps(manifest))

    prefix = keys.prefix(job.dataset_id)
    paths = {e["path"] for e in manifest["files"]}
    assert {"spec.json", "plan.json", "stats.json", "README.md", "croissant.json"} <= paths
    assert {s.key.removeprefix(prefix) for s in shards_of(plan)} <= paths
    assert len(paths) == 5 + plan.shards_total
    for entry in manifest["files"]:
        data = storage.get_bytes(prefix + entry["path"])
        assert entry["bytes"] == len(data) and entry["sha256"] == sha256(data), entry["path"]
    parts = pipeline.split_indices(job)
    for name in keys.SPLITS:
        assert manifest["splits"][name] == {"samples": len(parts[name]), "shards": len(plan.splits[name]),
                                            "shards_planned": len(plan.splits[name])}
    assert manifest["samples"] == job.samples and manifest["input_names"] == ["a"]
    assert manifest["solver"]["samples"] == job.samples

    # statistics over the train split, recomputed from the stored (float32) arrays
    stats = storage.get_json(keys.stats(job.dataset_id))
    assert stats["split_used"] == "train"
    xs, ys = [], []
    for shard in plan.splits["train"]:
        with read_h5(storage, shard.key) as h5:
            xs.append(h5["x"][:].astype(np.float64))
            ys.append(h5["y"][:].astype(np.float64))
    for name, values in (("x/a", np.concatenate(xs)), ("y/u", np.concatenate(ys))):
        got = stats["fields"][name]
        assert got["count"] == values.size == len(parts["train"]) * job.grid.n ** 2
        assert got["mean"] == pytest.approx(values.mean(), rel=1e-6), name
        assert got["std"] == pytest.approx(values.std(), rel=1e-6), name


def test_finalize_is_idempotent(local):
    job = make_job(samples=10, seed=14, shard_samples=5)
    plan = solve_all(local, job)
    first = pipeline.finalize(local, job, plan)
    before = local.stat(keys.manifest(job.dataset_id))
    assert pipeline.finalize(local, job, plan) == json.loads(json.dumps(first))
    assert local.stat(keys.manifest(job.dataset_id)) == before


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_finalize_refuses_a_missing_or_damaged_shard(local, damage):
    job = make_job(samples=10, seed=15, shard_samples=3)
    plan = solve_all(local, job)
    victim = plan.splits["train"][1]
    if damage == "missing":
        local.delete(victim.key)
    else:
        local.put_bytes(victim.key, local.get_bytes(victim.key)[:100])
    with pytest.raises(StorageError, match="train/00001"):
        pipeline.finalize(local, job, plan)
    assert not local.exists(keys.manifest(job.dataset_id))
    assert pipeline.storage_manifest(local, job.dataset_id) is None


def test_finalize_on_both_backends(storage):
    job = make_job(samples=10, seed=16, shard_samples=5)
    plan = solve_all(storage, job)
    manifest = pipeline.finalize(storage, job, plan)
    for entry in manifest["files"]:
        data = storage.get_bytes(keys.prefix(job.dataset_id) + entry["path"])
        assert entry["sha256"] == sha256(data)
    assert pipeline.storage_manifest(storage, job.dataset_id) == json.loads(json.dumps(manifest))


# ----------------------------------------------------------------------------- limits
def test_check_limits_names_the_limit():
    limits = Settings(max_samples=100, max_unknowns=32 ** 2, max_work=5e4)
    check_limits(make_job(samples=40, n=32), limits)  # 40 x 1024 = 40960: within every limit

    with pytest.raises(LimitExceeded, match=r"samples=101 exceeds the limit of 100") as info:
        check_limits(make_job(samples=101, n=16), limits)
    assert info.value.field == "samples" and info.value.limit == 100

    with pytest.raises(LimitExceeded, match=r"4096 unknowns.*the limit is 1024") as info:
        check_limits(make_job(samples=1, n=64), limits)
    assert info.value.field == "grid" and info.value.limit == 1024

    with pytest.raises(LimitExceeded, match=r"5\.12e\+04 exceeds the limit of 5e\+04") as info:
        check_limits(make_job(samples=50, n=32), limits)
    assert info.value.limit == 5e4

    with pytest.raises(LimitExceeded, match="unknowns"):
        check_limits(make_job(samples=1, n=16, grid={"dim": 3}), Settings(max_unknowns=16 ** 2))
