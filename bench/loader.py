"""Loader throughput: samples/s of ``pdeforge.PDEDataset`` in a ``DataLoader`` with 0 and 2 workers.

    python -m bench.loader            # darcy 64^2 and 128^2, 1000 samples, batch 32, shuffled
    python -m bench.loader --quick    # 64^2, 200 samples

Compared with ``PDEDataset(in_memory=True)`` (the split read once, shard by shard) and with
reading the same arrays straight from one in-memory tensor (the upper bound a ``TensorDataset``
over pre-loaded data gives) so the cost of reading HDF5 per sample is visible.  Prints markdown and writes ``bench/results/loader.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from pdeforge import PDEDataset
from pdeforge.solvers.threads import single_threaded_blas
from pdeforge.workers.spec import parse_spec
from pdeforge.workers.standalone import generate_local

single_threaded_blas()


def throughput(dataset, workers: int, batch: int, epochs: int = 2) -> float:
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                        persistent_workers=workers > 0, generator=torch.Generator().manual_seed(0))
    next(iter(loader))  # start the workers, open the files
    t0 = time.perf_counter()
    count = 0
    for _ in range(epochs):
        for item in loader:
            count += len(item["x"] if isinstance(item, dict) else item[0])
    return count / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    sizes, samples = ([64], 200) if args.quick else ([64, 128], 1000)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            job = parse_spec({"family": "darcy", "grid": {"n": n}, "samples": samples,
                              "split": {"train": 1.0, "valid": 0.0, "test": 0.0}, "output": {"shard_samples": 100}})
            root = Path(tmp) / str(n)
            generate_local(job, root)
            ds = PDEDataset(root, normalize=True)
            memory = TensorDataset(torch.stack([ds[i]["x"] for i in range(len(ds))]),
                                   torch.stack([ds[i]["y"] for i in range(len(ds))]))
            row = {"n": n, "samples": len(ds), "in_memory": throughput(memory, 0, 32)}
            for workers in (0, 2):
                row[f"workers_{workers}"] = throughput(ds, workers, 32)
            t0 = time.perf_counter()
            held = PDEDataset(root, normalize=True, in_memory=True)
            row["load_seconds"] = time.perf_counter() - t0
            row["pdedataset_in_memory"] = throughput(held, 0, 32)
            rows.append(row)
    lines = ["| grid | samples | PDEDataset, 0 workers | PDEDataset, 2 workers | PDEDataset(in_memory=True) (load s) "
             "| in-memory TensorDataset |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['n']}^2 | {r['samples']} | {r['workers_0']:.0f} samples/s | {r['workers_2']:.0f} samples/s | "
                     f"{r['pdedataset_in_memory']:.0f} samples/s ({r['load_seconds']:.2f} s) | "
                     f"{r['in_memory']:.0f} samples/s |")
    print("\n".join(lines))
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "loader.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
