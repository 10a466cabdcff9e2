"""The PyTorch loader: tensors equal what h5py reads, DataLoader workers, normalisation, complex
handling, a tiny model that learns, and neuraloperator's FNO on a batch."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pdeforge import PDEDataset
from pdeforge.workers.dataset import FormatError
from pdeforge.workers.standalone import generate_local
from tests.cluster import make_job


@pytest.fixture(scope="module")
def darcy(tmp_path_factory):
    root = tmp_path_factory.mktemp("darcy")
    job = make_job("darcy", n=16, samples=40, seed=3, output={"shard_samples": 8},
                   params={"coefficient": {"kind": "lognormal"}, "forcing": {"kind": "grf"}})
    return root, generate_local(job, root, workers=1)


@pytest.fixture(scope="module")
def helmholtz(tmp_path_factory):
    root = tmp_path_factory.mktemp("helmholtz")
    job = make_job("helmholtz", n=16, samples=12, seed=3, output={"shard_samples": 4},
                   params={"k_min": 5.0, "k_max": 8.0})
    return root, generate_local(job, root, workers=1)


def h5_samples(root, manifest, split) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for f in manifest["files"]:
        if f.get("split") == split:
            with h5py.File(root / f["path"], "r") as h5:
                for pos, index in enumerate(h5["sample_index"][:]):
                    out[int(index)] = (h5["x"][pos], h5["y"][pos])
    return out


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_tensors_equal_the_arrays_h5py_reads_in_index_order(darcy, split):
    root, manifest = darcy
    ds = PDEDataset(root, split=split)
    stored = h5_samples(root, manifest, split)
    assert len(ds) == len(stored) == manifest["splits"][split]["samples"]
    assert ds.sample_index.tolist() == sorted(stored)  # index order: a prefix is an unbiased subset
    for i in range(len(ds)):
        item = ds[i]
        x, y = stored[item["index"]]
        assert item["x"].shape == (2, 16, 16) and item["y"].shape == (1, 16, 16)
        assert torch.equal(item["x"], torch.from_numpy(x)) and torch.equal(item["y"], torch.from_numpy(y))
    solve_order = PDEDataset(root, split=split, order="solve")
    assert sorted(solve_order.sample_index.tolist()) == sorted(stored)


@pytest.mark.parametrize("order", ["index", "solve"])
def test_in_memory_items_equal_the_items_read_from_hdf5(darcy, helmholtz, order):
    for root, _ in (darcy, helmholtz):
        for options in ({}, {"normalize": True, "complex": "channels"}):
            lazy = PDEDataset(root, order=order, **options)
            held = PDEDataset(root, order=order, in_memory=True, **options)
            assert len(held) == len(lazy) and held._memory is not None
            for i in range(len(lazy)):
                a, b = lazy[i], held[i]
                assert a["index"] == b["index"] and torch.equal(a["x"], b["x"]) and torch.equal(a["y"], b["y"])
            with pytest.raises(IndexError):
                held[len(held)]


def test_dataloader_with_two_worker_processes_sees_every_sample_once(darcy):
    root, manifest = darcy
    ds = PDEDataset(root, split="train")
    loader = DataLoader(ds, batch_size=5, shuffle=True, num_workers=2, generator=torch.Generator().manual_seed(0))
    seen, stored = [], h5_samples(root, manifest, "train")
    for batch in loader:
        assert batch["x"].shape[1:] == (2, 16, 16) and batch["y"].shape[1:] == (1, 16, 16)
        for k, index in enumerate(batch["index"].tolist()):
            assert torch.equal(batch["y"][k], torch.from_numpy(stored[index][1]))
            seen.append(index)
    assert sorted(seen) == sorted(stored)


def test_normalisation_uses_the_train_statistics_and_decodes_back(darcy):
    root, _ = darcy
    stats = json.loads((root / "stats.json").read_text())["fields"]
    raw, norm = PDEDataset(root, split="train"), PDEDataset(root, split="train", normalize=True)
    xs = torch.stack([norm[i]["x"] for i in range(len(norm))]).double()
    ys = torch.stack([norm[i]["y"] for i in range(len(norm))]).double()
    for c in range(2):  # over the train split the encoded channels have mean 0 and std 1
        assert abs(xs[:, c].mean()) < 1e-5 and abs(xs[:, c].std(unbiased=False) - 1) < 1e-4
    assert abs(ys.mean()) < 1e-5 and abs(ys.std(unbiased=False) - 1) < 1e-4
    assert norm.normalizer.y_mean.item() == pytest.approx(stats["y/u"]["mean"])
    decoded = norm.normalizer.decode_y(ys[:3].float())
    expected = torch.stack([raw[i]["y"] for i in range(3)])
    assert torch.allclose(decoded, expected, rtol=1e-5, atol=1e-6)


def test_complex_solutions_as_complex_or_as_two_real_channels(helmholtz):
    root, manifest = helmholtz
    stored = h5_samples(root, manifest, "train")
    as_complex, as_channels = PDEDataset(root), PDEDataset(root, complex="channels", normalize=True)
    item = as_complex[0]
    y = stored[item["index"]][1]
    assert item["y"].dtype == torch.complex64 and torch.equal(item["y"], torch.from_numpy(y))
    assert item["x"].shape == (2, 16, 16)  # c and the varying k as a constant channel
    two = as_channels[0]["y"]
    assert two.shape == (2, 16, 16) and two.dtype == torch.float32
    back = as_channels.normalizer.decode_y(two[None])[0]
    assert torch.allclose(back[0] + 1j * back[1], item["y"], rtol=1e-4, atol=1e-6)


def test_a_tiny_model_learns_from_the_loader(darcy):
    root, _ = darcy
    torch.manual_seed(0)
    loader = DataLoader(PDEDataset(root, normalize=True), batch_size=8, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 16, 3, padding=1), torch.nn.GELU(),
                                torch.nn.Conv2d(16, 1, 3, padding=1))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        for batch in loader:
            loss = torch.nn.functional.mse_loss(model(batch["x"]), batch["y"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert np.mean(losses[-4:]) < 0.5 * np.mean(losses[:4])


def test_neuraloperator_fno_runs_a_forward_pass_on_a_batch(darcy):
    from neuralop.models import FNO

    root, _ = darcy
    batch = next(iter(DataLoader(PDEDataset(root, normalize=True), batch_size=4)))
    model = FNO(n_modes=(8, 8), hidden_channels=16, in_channels=2, out_channels=1)
    out = model(batch["x"])
    assert out.shape == batch["y"].shape and torch.isfinite(out).all()


def test_an_old_format_dataset_is_refused_with_the_reason(tmp_path, darcy):
    root, manifest = darcy
    old = dict(manifest, format_version=1, pdeforge_version="0.1.0")
    (tmp_path / "manifest.json").write_text(json.dumps(old))
    with pytest.raises(FormatError, match="format 1 .* regenerate"):
        PDEDataset(tmp_path)
