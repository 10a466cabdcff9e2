"""Exports, each loaded back by the reader it targets: neuraloperator's PTDataset (.pt), h5py the way
PDEBench reads its files, and xarray/zarr for the Zarr store."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from pdeforge.workers.export import export
from pdeforge.workers.reader import DatasetReader
from pdeforge.workers.standalone import generate_local
from tests.cluster import make_job


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    job = make_job("darcy", n=16, samples=20, seed=8, output={"shard_samples": 6},
                   params={"forcing": {"kind": "grf"}}, split={"train": 0.8, "valid": 0.0, "test": 0.2})
    generate_local(job, root, workers=1)
    return root


def index_ordered(root, split):
    reader = DatasetReader(root, split=split)
    samples = [reader.read(i) for i in range(len(reader))]
    return reader, np.stack([s["x"] for s in samples]), np.stack([s["y"] for s in samples])


def test_neuralop_pt_files_load_with_ptdataset(dataset, tmp_path):
    from neuralop.data.datasets.pt_dataset import PTDataset

    files = export(dataset, "neuralop", tmp_path, name="darcy")
    assert sorted(p.name for p in files) == ["darcy_test_16.pt", "darcy_train_16.pt"]
    reader, x, y = index_ordered(dataset, "train")
    _, xt, yt = index_ordered(dataset, "test")
    data = PTDataset(tmp_path, "darcy", n_train=len(x), n_tests=[len(xt)], batch_size=4, test_batch_sizes=[4],
                     train_resolution=16, test_resolutions=[16], channels_squeezed=False, encode_output=False)
    assert len(data.train_db) == len(x)
    for i in (0, len(x) - 1):
        assert torch.equal(data.train_db[i]["x"], torch.from_numpy(x[i]))
        assert torch.equal(data.train_db[i]["y"], torch.from_numpy(y[i]))
    assert torch.equal(data.test_dbs[16][0]["y"], torch.from_numpy(yt[0]))
    saved = torch.load(tmp_path / "darcy_train_16.pt")
    assert saved["sample_index"].tolist() == reader.sample_index.tolist() == sorted(reader.sample_index.tolist())


def test_pdebench_style_hdf5_reads_like_pdebench(dataset, tmp_path):
    (path,) = [p for p in export(dataset, "pdebench", tmp_path, name="darcy") if "train" in p.name]
    reader, x, y = index_ordered(dataset, "train")
    with h5py.File(path, "r") as f:  # PDEBench's readers: f["tensor"], per-field datasets, *-coordinate
        np.testing.assert_array_equal(np.array(f["tensor"], dtype=np.float32), y)
        np.testing.assert_array_equal(np.array(f["a"]), x[:, 0])
        np.testing.assert_array_equal(np.array(f["f"]), x[:, 1])
        np.testing.assert_allclose(np.array(f["x-coordinate"]), (np.arange(16) + 0.5) / 16)
        assert f["tensor"].shape == (len(x), 1, 16, 16)


def test_zarr_store_opens_in_xarray_with_named_dimensions(dataset, tmp_path):
    import xarray as xr

    (path,) = export(dataset, "zarr", tmp_path, name="darcy")
    _, x, y = index_ordered(dataset, "train")
    ds = xr.open_zarr(path, group="train", consolidated=False)
    assert ds["x"].dims == ("sample_index", "channel_in", "grid_x", "grid_y")
    assert list(ds["channel_in"].values) == ["a", "f"]
    np.testing.assert_array_equal(ds["x"].values, x)
    np.testing.assert_array_equal(ds["y"].values, y)


def test_unknown_format_names_the_choices(dataset, tmp_path):
    with pytest.raises(ValueError, match="'neuralop', 'pdebench', 'zarr'"):
        export(dataset, "netcdf", tmp_path)


def test_periodic_trajectories_export_with_their_grid_points_and_frame_times(tmp_path):
    """Burgers 1-D: the Zarr store and the PDEBench file carry x_j = j / n and the frame times."""
    import xarray as xr

    job = make_job("burgers", n=32, samples=3, grid={"dim": 1}, time={"t_end": 0.1, "dt": 1e-3, "frames": 3},
                   split={"train": 1.0, "valid": 0.0, "test": 0.0})
    generate_local(job, tmp_path / "ds", workers=1)
    (store,) = export(tmp_path / "ds", "zarr", tmp_path, name="burgers")
    ds = xr.open_zarr(store, group="train", consolidated=False)
    assert ds["y"].dims == ("sample_index", "time", "channel_out", "grid_x")
    np.testing.assert_array_equal(ds["grid_x"].values, np.arange(32) / 32)
    np.testing.assert_allclose(ds["time"].values, [0.0, 0.05, 0.1])
    (h5path,) = export(tmp_path / "ds", "pdebench", tmp_path, name="burgers")
    with h5py.File(h5path) as f:
        np.testing.assert_array_equal(f["x-coordinate"][:], np.arange(32) / 32)
        assert f["tensor"].shape == (3, 3, 32, 1)
