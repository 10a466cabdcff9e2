"""Shard compression: size and read speed of ``output.compression`` none / gzip / blosc, per family.

    python -m bench.compression            # 64^2, 200 samples per family (about a minute)
    python -m bench.compression --quick    # 32^2, 40 samples

For each family one dataset is generated uncompressed (float32), then its ``x``/``y`` arrays
are written again with each filter exactly as :class:`pdeforge.workers.dataset.ShardWriter`
writes them (one sample per chunk).  Reported: bytes per sample, ratio to uncompressed,
write seconds, sequential read of all samples (samples/s) and a random single-sample read
(ms, what a shuffled DataLoader does).  Prints markdown and writes
``bench/results/compression.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from pdeforge.solvers.threads import single_threaded_blas
from pdeforge.workers.dataset import _compression
from pdeforge.workers.spec import parse_spec
from pdeforge.workers.standalone import generate_local

single_threaded_blas()

FAMILIES = {
    "darcy threshold (FNO)": ("darcy", {}),
    "darcy lognormal": ("darcy", {"coefficient": {"kind": "lognormal"}}),
    "helmholtz (complex)": ("helmholtz", {"k_min": 10.0, "k_max": 15.0}),
    "advection_diffusion": ("advection_diffusion", {"nu_min": 0.01, "nu_max": 0.1}),
}
FILTERS = ("none", "gzip", "blosc")


def arrays(root: Path) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for path in sorted(root.glob("data/*/shard_*.h5")):
        with h5py.File(path, "r") as h5:
            xs.append(h5["x"][:])
            ys.append(h5["y"][:])
    return np.concatenate(xs), np.concatenate(ys)


def measure(x: np.ndarray, y: np.ndarray, kind: str, folder: Path) -> dict:
    path = folder / f"{kind}.h5"
    t0 = time.perf_counter()
    with h5py.File(path, "w") as h5:
        for name, arr in (("x", x), ("y", y)):
            ds = h5.create_dataset(name, shape=arr.shape, dtype=arr.dtype, chunks=(1, *arr.shape[1:]),
                                   **_compression(kind))
            for i in range(len(arr)):
                ds[i] = arr[i]
    write = time.perf_counter() - t0
    S = len(x)
    t0 = time.perf_counter()
    with h5py.File(path, "r") as h5:
        for i in range(S):
            h5["x"][i], h5["y"][i]
    sequential = S / (time.perf_counter() - t0)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    picks = rng.integers(0, S, size=min(S, 100))
    with h5py.File(path, "r") as h5:
        for i in picks:
            h5["x"][int(i)], h5["y"][int(i)]
    random_ms = (time.perf_counter() - t0) / len(picks) * 1e3
    return {"bytes_per_sample": path.stat().st_size / S, "write_seconds": write,
            "read_samples_per_second": sequential, "random_read_ms": random_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, samples = (32, 40) if args.quick else (64, 200)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for label, (family, params) in FAMILIES.items():
            job = parse_spec({"family": family, "grid": {"n": n}, "samples": samples, "params": params,
                              "output": {"shard_samples": 100}})
            root = tmp / job.dataset_id
            generate_local(job, root)
            x, y = arrays(root)
            rows[label] = {kind: measure(x, y, kind, root) for kind in FILTERS}
    lines = [f"Shard compression, {n}^2, {samples} samples per family, float32 (y complex64 for Helmholtz)\n",
             "| family | filter | bytes/sample | ratio | write s | read samples/s | random read ms |",
             "|---|---|---|---|---|---|---|"]
    for label, by_kind in rows.items():
        base = by_kind["none"]["bytes_per_sample"]
        for kind, r in by_kind.items():
            lines.append(f"| {label} | {kind} | {r['bytes_per_sample']:.0f} | {base / r['bytes_per_sample']:.2f}x | "
                         f"{r['write_seconds']:.3f} | {r['read_samples_per_second']:.0f} | {r['random_read_ms']:.3f} |")
    print("\n".join(lines))
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "compression.json").write_text(json.dumps({"n": n, "samples": samples, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
