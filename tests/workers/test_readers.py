"""Datasets load in the readers users already have, with no glue: Hugging Face ``datasets``
(through the dataset card), xarray (through the dimension scales) and mlcroissant (croissant.json)."""

from __future__ import annotations

import hashlib
import json

import h5py
import numpy as np
import pytest

from pdeforge.workers.standalone import generate_local
from tests.cluster import make_job


@pytest.fixture(scope="module")
def datasets_dir(tmp_path_factory):
    out = {}
    for name, family, params in (("darcy", "darcy", {"forcing": {"kind": "grf"}}),
                                 ("helmholtz", "helmholtz", {"k_min": 5.0, "k_max": 8.0}),
                                 ("advection", "advection_diffusion", {"nu_min": 0.01, "nu_max": 0.1})):
        root = tmp_path_factory.mktemp(name)
        job = make_job(family, n=16, samples=10, seed=1, params=params, output={"shard_samples": 4})
        manifest = generate_local(job, root, workers=1)
        out[name] = (root, manifest)
    root = tmp_path_factory.mktemp("burgers")  # a trajectory dataset on a 1-D periodic grid
    job = make_job("burgers", n=32, samples=10, seed=1, grid={"dim": 1}, params={"nu_min": 0.01, "nu_max": 0.1},
                   time={"t_end": 0.1, "dt": 1e-3, "frames": 3}, output={"shard_samples": 4})
    out["burgers"] = (root, generate_local(job, root, workers=1))
    return out


def shard_arrays(root, manifest, split):
    xs, ys, idx = [], [], []
    for f in manifest["files"]:
        if f.get("split") == split:
            with h5py.File(root / f["path"], "r") as h5:
                xs.append(h5["x"][:])
                ys.append(h5["y"][:])
                idx.append(h5["sample_index"][:])
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(idx)


@pytest.mark.parametrize("name", ["darcy", "helmholtz", "advection", "burgers"])
def test_hugging_face_datasets_loads_the_folder_with_no_arguments(datasets_dir, name, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets

    root, manifest = datasets_dir[name]
    loaded = datasets.load_dataset(str(root), cache_dir=str(tmp_path / "hf"))
    assert set(loaded) == {"train", "validation", "test"}
    x, y, idx = shard_arrays(root, manifest, "train")
    train = loaded["train"].with_format("numpy")
    assert len(train) == len(idx)
    np.testing.assert_array_equal(train["sample_index"], idx)
    np.testing.assert_array_equal(np.stack(train["x"]), x)
    got = train["y"]
    if np.iscomplexobj(y):
        got = np.stack([r["real"] for r in got]) + 1j * np.stack([r["imag"] for r in got])
    np.testing.assert_array_equal(np.asarray(got).reshape(y.shape), y)
    if manifest["time"] is not None:  # trajectories: the per-sample step counts and time-error estimates load too
        assert {"steps", "time_error_estimate", "operators"} <= set(loaded["train"][0]["solver"])


def test_xarray_names_the_axes_of_a_periodic_trajectory(datasets_dir):
    import xarray as xr

    root, manifest = datasets_dir["burgers"]
    path = root / next(f["path"] for f in manifest["files"] if "shard" in f)
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        assert ds["y"].dims == ("sample_index", "time", "channel_out", "grid_x")
        np.testing.assert_array_equal(ds["grid_x"].values, np.arange(32) / 32)
        np.testing.assert_allclose(ds["time"].values, [0.0, 0.05, 0.1])
        assert ds.attrs["grid_type"].startswith("periodic")


def test_xarray_names_every_dimension(datasets_dir):
    import xarray as xr

    root, manifest = datasets_dir["advection"]
    path = root / next(f["path"] for f in manifest["files"] if "shard" in f)
    with xr.open_dataset(path, engine="h5netcdf") as ds, h5py.File(path, "r") as h5:
        assert ds["x"].dims == ("sample_index", "channel_in", "grid_x", "grid_y")
        assert ds["y"].dims == ("sample_index", "channel_out", "grid_x", "grid_y")
        assert list(ds["channel_in"].values) == ["vx", "vy", "nu"]
        np.testing.assert_allclose(ds["grid_x"].values, (np.arange(16) + 0.5) / 16)
        np.testing.assert_array_equal(ds["x"].values, h5["x"][:])
        assert ds["x"].sel(channel_in="nu").values[:, 0, 0].tolist() == h5["scalars/nu"][:].tolist()
    with xr.open_dataset(path, engine="h5netcdf", group="inputs") as inputs:
        assert inputs["psi"].dims == ("sample_index", "vertex_x", "vertex_y")


def test_croissant_metadata_validates_and_lists_every_file_with_its_sha256(datasets_dir):
    import mlcroissant as mlc

    root, manifest = datasets_dir["darcy"]
    path = root / "croissant.json"
    meta = json.loads(path.read_text())
    mlc.Dataset(jsonld=str(path))  # raises on a validation error
    objects = {o["contentUrl"]: o for o in meta["distribution"] if o["@type"] == "cr:FileObject"}
    listed = {f["path"] for f in manifest["files"]} - {"croissant.json"}
    assert set(objects) == listed
    for rel, obj in objects.items():
        assert obj["sha256"] == hashlib.sha256((root / rel).read_bytes()).hexdigest()
