"""Paired multi-resolution datasets (``grid.resolutions``) and the sampling version in the identity.

* one dataset, one file per (shard, resolution): the same samples at every resolution;
* resolution n of a paired dataset has bit-identical inputs to a plain dataset at n with the same
  seed, and (pinned direct engine) bit-identical solutions;
* every file's claims hold at its own resolution (the system rebuilt from the file);
* an iterative engine starts each finer solve from the interpolated coarser solution: fewer matvecs
  than the same samples solved cold (counts, not clocks);
* the reader, the PyTorch loaders and the exports know the resolutions.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from pydantic import ValidationError

from pdeforge.workers.jobs import LimitExceeded, check_limits
from pdeforge.workers.config import Settings
from pdeforge.workers.reader import DatasetReader
from pdeforge.workers.spec import parse_spec
from pdeforge.workers.standalone import generate_local
from tests.cluster import make_job
from tests.workers.test_dataset import arrays_by_index, stored_solution, stored_system

SPLIT = {"train": 0.5, "valid": 0.25, "test": 0.25}


def paired(engine: str, resolutions=(16, 32), **extra):
    return make_job("darcy", n=resolutions[-1], samples=8, seed=7, shard_samples=3, split=SPLIT,
                    grid={"resolutions": list(resolutions)}, solver={"engine": engine, "rtol": 1e-10},
                    params={"coefficient": {"kind": "lognormal"}}, **extra)


def plain(engine: str, n: int):
    return make_job("darcy", n=n, samples=8, seed=7, shard_samples=3, split=SPLIT,
                    solver={"engine": engine, "rtol": 1e-10}, params={"coefficient": {"kind": "lognormal"}})


def by_resolution(root, manifest) -> dict[int, dict]:
    out: dict[int, dict] = {}
    for f in (f for f in manifest["files"] if "shard" in f):
        with h5py.File(root / f["path"], "r") as h5:
            assert int(h5.attrs["resolution"]) == f["resolution"] and h5["x"].shape[-1] == f["resolution"]
            for pos, index in enumerate(h5["sample_index"][:]):
                out.setdefault(f["resolution"], {})[int(index)] = (h5["x"][pos], h5["y"][pos])
    return out


@pytest.fixture(scope="module")
def direct_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("paired")
    job = paired("direct")
    return job, generate_local(job, root / "pair", workers=1), root


def test_a_paired_dataset_holds_every_sample_at_every_resolution(direct_pair):
    job, manifest, root = direct_pair
    assert manifest["resolutions"] == [16, 32] and manifest["grid"] == [32, 32] and manifest["sampling"] == 2
    shards = [f for f in manifest["files"] if "shard" in f]
    assert {f["resolution"] for f in shards} == {16, 32}
    assert all(f["path"].startswith(f"data/{f['split']}/r{f['resolution']}/") for f in shards)
    arrays = by_resolution(root / "pair", manifest)
    assert sorted(arrays[16]) == sorted(arrays[32]) == list(range(8))


def test_each_resolution_equals_a_plain_dataset_at_that_resolution(direct_pair, tmp_path):
    job, manifest, root = direct_pair
    arrays = by_resolution(root / "pair", manifest)
    for n in (16, 32):
        alone = plain("direct", n)
        single = generate_local(alone, tmp_path / f"n{n}", workers=1)
        reference = arrays_by_index(tmp_path / f"n{n}", single)
        for i, (x, y) in reference.items():
            assert np.array_equal(arrays[n][i][0], x), (n, i)   # inputs: bit for bit
            assert np.array_equal(arrays[n][i][1], y), (n, i)   # pinned direct engine: solutions too


def test_every_file_s_claims_hold_at_its_resolution(direct_pair):
    job, manifest, root = direct_pair
    for f in (f for f in manifest["files"] if "shard" in f):
        with h5py.File(root / "pair" / f["path"], "r") as h5:
            for pos in range(h5["x"].shape[0]):
                fam, spec, A, b, _ = stored_system(h5, pos)
                assert spec.n == f["resolution"]
                y64 = stored_solution(h5, pos)
                stored = np.linalg.norm(b - A @ y64) / np.linalg.norm(b)
                assert stored == pytest.approx(h5["solver/residual_stored"][pos], rel=1e-6)
                assert h5["solver/residual"][pos] <= 1e-10


def test_the_reader_the_loaders_and_the_exports_know_the_resolutions(direct_pair, tmp_path):
    from pdeforge import PairedDataset, PDEDataset
    from pdeforge.workers.export import export

    job, manifest, root = direct_pair
    folder = root / "pair"
    assert DatasetReader(folder).grid == (32, 32) and DatasetReader(folder, resolution=16).grid == (16, 16)
    with pytest.raises(ValueError, match=r"resolution=24 is not allowed; allowed: one of \[16, 32\]"):
        DatasetReader(folder, resolution=24)
    coarse = PDEDataset(folder, "train", resolution=16, normalize=True)
    stats = coarse.reader.stats()
    assert stats["fields"] == stats["by_resolution"]["16"]["fields"] != stats["by_resolution"]["32"]["fields"]
    pairs = PairedDataset(folder, "train")
    item = pairs[1]
    assert item["x"][16].shape == (1, 16, 16) and item["y"][32].shape == (1, 32, 32)
    assert item["index"] == coarse[1]["index"] == int(pairs.sample_index[1])
    files = export(folder, "neuralop", tmp_path / "nop")
    assert sorted(p.name.rsplit("_", 1)[1] for p in files) == sorted(["16.pt", "32.pt"] * 3)
    only = export(folder, "pdebench", tmp_path / "pb", resolution=16)
    assert all(p.name.endswith("_16.hdf5") for p in only) and len(only) == 3


def test_a_coarse_solution_starts_the_fine_solve(tmp_path):
    """GMRES on 64 cells started from the interpolated 32-cell solution needs fewer matvecs than GMRES from
    zero on the same samples in the same order (the fine-level counts of the two datasets; measured
    415 against 557 per sample)."""
    warm = generate_local(paired("gmres", (32, 64)), tmp_path / "warm", workers=1)
    cold = generate_local(plain("gmres", 64), tmp_path / "cold", workers=1)
    stats = json.loads((tmp_path / "warm" / "stats.json").read_text())
    fine_warm = stats["by_resolution"]["64"]["solver"]["mean_matvecs"]
    fine_cold = json.loads((tmp_path / "cold" / "stats.json").read_text())["solver"]["mean_matvecs"]
    assert fine_warm < 0.85 * fine_cold, (fine_warm, fine_cold)
    a, b = by_resolution(tmp_path / "warm", warm)[64], arrays_by_index(tmp_path / "cold", cold)
    for i in b:  # the same solutions within the tolerance, and the same inputs bit for bit
        assert np.array_equal(a[i][0], b[i][0])
        assert np.linalg.norm(a[i][1] - b[i][1]) <= 1e-5 * np.linalg.norm(b[i][1])


def test_the_sampling_version_is_part_of_the_identity(tmp_path):
    two, one = make_job("darcy", n=16, samples=4), make_job("darcy", n=16, samples=4, sampling=1)
    assert two.sampling == 2 and one.sampling == 1 and two.dataset_id != one.dataset_id
    manifest = generate_local(one, tmp_path, workers=1)
    assert manifest["sampling"] == 1
    shard = next(f for f in manifest["files"] if "shard" in f)
    with h5py.File(tmp_path / shard["path"], "r") as h5:
        assert h5.attrs["sampling"] == 1 and "resolution" not in h5.attrs


@pytest.mark.parametrize("grid, message", [
    ({"resolutions": [64, 32]}, "strictly ascending"),
    ({"n": 64, "resolutions": [32, 128]}, r"n = 128 \(the finest resolution\)"),
    ({"resolutions": [4, 16]}, "grid.resolutions=4 is out of range"),
    ({"resolutions": [64]}, "at least 2 items"),
    ({"resolutions": [16, 32, 64, 128, 256]}, "at most 4 items"),
    ({"dim": 3, "resolutions": [128, 300]}, "grid.n=300 is out of range for dim=3"),
])
def test_bad_resolutions_are_refused_naming_the_field(grid, message):
    with pytest.raises(ValidationError, match=message):
        parse_spec({"family": "darcy", "grid": grid})


def test_the_size_limits_count_every_resolution():
    job = parse_spec({"family": "darcy", "grid": {"resolutions": [64, 128]}, "samples": 10})
    assert job.unknowns == 64**2 + 128**2
    with pytest.raises(LimitExceeded, match=r"resolutions \[64, 128\] gives 20480 unknowns"):
        check_limits(job, Settings(max_unknowns=128**2))


def test_hugging_face_loads_each_resolution_as_a_config_and_croissant_validates(direct_pair, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets
    import mlcroissant as mlc

    job, manifest, root = direct_pair
    folder = root / "pair"
    for n, default in ((16, False), (32, True)):
        loaded = datasets.load_dataset(str(folder), *([] if default else [f"r{n}"]), cache_dir=str(tmp_path / "hf"))
        train = loaded["train"].with_format("numpy")
        reader = DatasetReader(folder, resolution=n, order="solve")
        assert np.stack(train["x"]).shape[-2:] == (n, n) and len(train) == len(reader)
        assert sorted(np.asarray(train["sample_index"]).tolist()) == sorted(reader.sample_index.tolist())
    mlc.Dataset(jsonld=str(folder / "croissant.json"))  # raises on a validation error
    meta = json.loads((folder / "croissant.json").read_text())
    sets = {o["@id"]: o["includes"] for o in meta["distribution"] if o["@type"] == "cr:FileSet"}
    assert sets["shards-train-r16"] == "data/train/r16/*.h5" and sets["shards-test-r32"] == "data/test/r32/*.h5"
