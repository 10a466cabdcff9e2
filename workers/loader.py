"""A PyTorch ``Dataset`` over a PDEForge dataset (``pip install pdeforge[torch]``)::

    from torch.utils.data import DataLoader
    from pdeforge import PDEDataset

    train = PDEDataset("my-dataset", split="train", normalize=True)
    loader = DataLoader(train, batch_size=32, shuffle=True, num_workers=2)
    for batch in loader:                      # {"x": (B, C_in, *grid), "y": (B, C_out, *grid), "index": (B,)}
        loss = ((model(batch["x"]) - batch["y"]) ** 2).mean()

* Tensors are channel-first, as stored: ``x`` (C_in, *grid), ``y`` (C_out, *grid), trajectories
  (T, C_out, *grid); samples are dicts, the shape neuraloperator's training loops take.
* Order: index order by default (sorted by sample index: a prefix is an unbiased subset);
  ``order="solve"`` keeps the stored solve order, where neighbours are similar -- shuffle
  (``DataLoader(shuffle=True)``) before training either way.
* ``normalize=True``: channel-wise ``(v - mean) / std`` with the train split's statistics from
  ``stats.json`` (``self.normalizer`` also decodes predictions back).
* Complex solutions: ``complex="complex"`` (a complex tensor) or ``"channels"`` (real and
  imaginary parts as two channels, what real-valued models need).
* ``num_workers > 0`` works: HDF5 files are opened lazily, once per worker process.
* ``in_memory=True`` reads the split once (each shard in one go) and keeps ready tensors: for
  datasets that fit in memory, 25-70x the samples/s of reading HDF5 per sample (``bench.loader``).
* A remote dataset: ``PDEDataset.remote(url, dataset_id, token=...)`` reads the chunks of the
  samples you touch with HTTP Range requests through the API.
* Paired datasets (``grid.resolutions``): ``PDEDataset(root, resolution=64)`` is one resolution
  (the finest by default, each normalised with its own statistics);
  :class:`PairedDataset` gives the same sample at several: ``{"x": {64: ..., 256: ...},
  "y": {...}, "index": i}`` (coarse/fine pairs, multilevel training).
"""

from __future__ import annotations

import os

import numpy as np

try:
    import torch
    from torch.utils.data import Dataset
except ImportError as exc:  # pragma: no cover - depends on the extra
    raise ImportError("the PyTorch loader needs PyTorch: pip install 'pdeforge[torch]' (a CPU build: "
                      "pip install torch --index-url https://download.pytorch.org/whl/cpu)") from exc

from .reader import DatasetReader

COMPLEX_MODES = ("complex", "channels")


class Normalizer:
    """Channel-wise ``(v - mean) / std`` for x and y, from ``stats.json`` (train split)."""

    def __init__(self, stats: dict, input_names: list[str], output_names: list[str], complex_channels: bool) -> None:
        fields = stats["fields"]

        def vectors(prefix: str, names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
            mean, std = [], []
            for name in names:
                keys = [f"{prefix}/{name}"] if f"{prefix}/{name}" in fields else \
                    [f"{prefix}/{name}.real", f"{prefix}/{name}.imag"]
                for key in keys:
                    mean.append(fields[key]["mean"])
                    std.append(fields[key]["std"] or 1.0)  # a constant channel: shift only
            return torch.tensor(mean), torch.tensor(std)

        self.x_mean, self.x_std = vectors("x", input_names)
        self.y_mean, self.y_std = vectors("y", output_names)
        self.complex_channels = complex_channels

    @staticmethod
    def _shape(v: torch.Tensor, t: torch.Tensor, channel_axis: int) -> torch.Tensor:
        shape = [1] * t.ndim
        shape[channel_axis] = -1
        return v.to(t.real.dtype).reshape(shape)

    def encode_x(self, x: torch.Tensor, channel_axis: int = 0) -> torch.Tensor:
        return (x - self._shape(self.x_mean, x, channel_axis)) / self._shape(self.x_std, x, channel_axis)

    def encode_y(self, y: torch.Tensor, channel_axis: int = 0) -> torch.Tensor:
        if torch.is_complex(y):  # real and imaginary parts have their own statistics
            m = torch.complex(self._shape(self.y_mean[0::2], y, channel_axis), self._shape(self.y_mean[1::2], y, channel_axis))
            re = (y.real - m.real) / self._shape(self.y_std[0::2], y, channel_axis)
            im = (y.imag - m.imag) / self._shape(self.y_std[1::2], y, channel_axis)
            return torch.complex(re, im)
        return (y - self._shape(self.y_mean, y, channel_axis)) / self._shape(self.y_std, y, channel_axis)

    def decode_y(self, y: torch.Tensor, channel_axis: int = 1) -> torch.Tensor:
        """Undo :meth:`encode_y` (default ``channel_axis=1``: a batch ``(B, C, ...)``)."""
        if torch.is_complex(y):
            re = y.real * self._shape(self.y_std[0::2], y, channel_axis) + self._shape(self.y_mean[0::2], y, channel_axis)
            im = y.imag * self._shape(self.y_std[1::2], y, channel_axis) + self._shape(self.y_mean[1::2], y, channel_axis)
            return torch.complex(re, im)
        return y * self._shape(self.y_std, y, channel_axis) + self._shape(self.y_mean, y, channel_axis)


class PDEDataset(Dataset):
    """One split of a PDEForge dataset as channel-first tensors (see the module docstring)."""

    def __init__(self, root: str | os.PathLike | None = None, split: str = "train", *, normalize: bool = False,
                 complex: str = "complex", dtype: torch.dtype = torch.float32, order: str = "index",
                 resolution: int | None = None, reader: DatasetReader | None = None, in_memory: bool = False) -> None:
        if complex not in COMPLEX_MODES:
            raise ValueError(f"complex={complex!r} is not allowed; allowed: one of 'complex', 'channels'")
        self.reader = reader if reader is not None else DatasetReader(root, split=split, order=order,
                                                                      resolution=resolution)
        self.complex, self.dtype = complex, dtype
        self.normalizer = Normalizer(self.reader.stats(), self.reader.input_names, self.reader.output_names,
                                     complex == "channels") if normalize else None
        # in_memory: every sample read once (each shard in one go) and kept as ready tensors
        self._memory: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        if in_memory and len(self.reader):
            x, y = self.reader.read_all()
            self._memory = [self._tensors(x[i], y[i]) for i in range(len(x))]

    @classmethod
    def remote(cls, url: str, dataset_id: str, split: str = "train", *, token: str | None = None, **options):
        """The dataset on a PDEForge server, read with HTTP Range requests (nothing downloaded up front)."""
        from pdeforge.app.client import PDEForgeClient

        client = PDEForgeClient(url, token)
        reader = DatasetReader(client=client, dataset_id=dataset_id, split=split,
                               order=options.pop("order", "index"), resolution=options.pop("resolution", None))
        return cls(split=split, reader=reader, **options)

    @property
    def sample_index(self) -> np.ndarray:
        """Global sample index of each position."""
        return self.reader.sample_index

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, i: int) -> dict:
        if self._memory is not None:
            if not -len(self) <= i < len(self):
                raise IndexError(f"sample {i} out of range for {len(self)} samples")
            x, y = self._memory[i]
            return {"x": x, "y": y, "index": int(self.reader.sample_index[i])}
        sample = self.reader.read(i)
        x, y = self._tensors(sample["x"], sample["y"])
        return {"x": x, "y": y, "index": sample["index"]}

    def _tensors(self, x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """x and y of one sample as the tensors this dataset yields (dtype, complex mode, normalisation)."""
        x = torch.from_numpy(np.ascontiguousarray(x)).to(self.dtype)
        y = torch.from_numpy(np.ascontiguousarray(y))
        channel_axis = y.ndim - x.ndim  # 0, or 1 for trajectories: y is (T, C, *grid)
        if torch.is_complex(y):
            ctype = torch.complex64 if self.dtype == torch.float32 else torch.complex128
            y = y.to(ctype)
            if self.complex == "channels":  # (..., C, *grid) -> (..., 2C, *grid): real, imag per channel
                y = torch.stack([y.real, y.imag], dim=channel_axis + 1).flatten(channel_axis, channel_axis + 1)
        else:
            y = y.to(self.dtype)
        if self.normalizer is not None:
            x = self.normalizer.encode_x(x)
            y = self.normalizer.encode_y(y, channel_axis)
        return x, y


class PairedDataset(Dataset):
    """The same samples of a paired dataset at several resolutions: item ``i`` is
    ``{"x": {n: (C_in, n, ...)}, "y": {n: ...}, "index": i}`` for each ``n`` in ``resolutions``
    (default: all of the dataset's).  Options as for :class:`PDEDataset`."""

    def __init__(self, root: str | os.PathLike, split: str = "train", *, resolutions=None, **options) -> None:
        first = DatasetReader(root, split=split)
        self.resolutions = list(resolutions or first.resolutions)
        self.levels = {n: PDEDataset(root, split, resolution=n, **options) for n in self.resolutions}
        indices = [level.sample_index for level in self.levels.values()]
        if any(not np.array_equal(indices[0], other) for other in indices[1:]):
            raise ValueError(f"the resolutions of {root} do not hold the same samples of split {split!r}")
        first.close()

    @property
    def sample_index(self) -> np.ndarray:
        return next(iter(self.levels.values())).sample_index

    def __len__(self) -> int:
        return len(self.sample_index)

    def __getitem__(self, i: int) -> dict:
        items = {n: level[i] for n, level in self.levels.items()}
        return {"x": {n: it["x"] for n, it in items.items()}, "y": {n: it["y"] for n, it in items.items()},
                "index": next(iter(items.values()))["index"]}
