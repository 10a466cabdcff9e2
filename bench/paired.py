"""Paired multi-resolution datasets: one paired job against three independent jobs.

    python -m bench.paired            # lognormal Darcy at 64 / 128 / 256, 60 samples (a few minutes)
    python -m bench.paired --quick    # 32 / 64 / 128, 24 samples

For each engine, the same samples (seed, split, order) are produced twice with
``pdeforge generate`` on two worker processes: as one paired dataset
(``grid.resolutions: [64, 128, 256]``) and as three plain datasets, one per resolution.
Reported: wall seconds, solve core-seconds and matvecs per sample at each resolution (the
paired job starts every finer iterative solve from the interpolated coarser solution;
direct engines gain nothing from that), and whether the paired inputs equal the plain
ones bit for bit.  Prints markdown and writes ``bench/results/paired.json``.
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
from pdeforge.workers.spec import parse_spec
from pdeforge.workers.standalone import generate_local

single_threaded_blas()

PARAMS = {"coefficient": {"kind": "lognormal", "grf": {"alpha": 2.5, "tau": 7.0}}}
ENGINES = ("auto", "skr", "amg")


def spec(engine: str, samples: int, grid: dict) -> dict:
    return {"family": "darcy", "grid": grid, "samples": samples, "seed": 7, "params": PARAMS,
            "solver": {"engine": engine}, "output": {"shard_samples": max(1, samples // 4)}}


def inputs(root: Path, resolution: int | None) -> dict[int, np.ndarray]:
    out = {}
    pattern = "data/*/shard_*.h5" if resolution is None else f"data/*/r{resolution}/shard_*.h5"
    for path in root.glob(pattern):
        with h5py.File(path, "r") as h5:
            for pos, i in enumerate(h5["sample_index"][:]):
                out[int(i)] = h5["x"][pos]
    return out


def run(job_spec: dict, root: Path) -> tuple[float, dict]:
    t0 = time.perf_counter()
    manifest = generate_local(parse_spec(job_spec), root, workers=2)
    return time.perf_counter() - t0, manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--engines", default=",".join(ENGINES))
    args = parser.parse_args()
    resolutions, samples = ([32, 64, 128], 24) if args.quick else ([64, 128, 256], 60)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for engine in args.engines.split(","):
            wall, manifest = run(spec(engine, samples, {"resolutions": resolutions}), tmp / f"{engine}-paired")
            stats = json.loads((tmp / f"{engine}-paired" / "stats.json").read_text())
            paired = {"wall": wall, "by": {r: stats["by_resolution"][str(r)]["solver"] for r in resolutions}}
            alone, same = {"wall": 0.0, "by": {}}, True
            for r in resolutions:
                folder = tmp / f"{engine}-{r}"
                seconds, m = run(spec(engine, samples, {"n": r}), folder)
                alone["wall"] += seconds
                alone["by"][r] = m["solver"]
                mine, theirs = inputs(tmp / f"{engine}-paired", r), inputs(folder, None)
                same &= sorted(mine) == sorted(theirs) and all(np.array_equal(mine[i], theirs[i]) for i in mine)
            rows.append({"engine": engine, "paired": paired, "independent": alone, "identical_inputs": same})
    head = "/".join(map(str, resolutions))
    lines = [f"Paired lognormal Darcy {head}, {samples} samples, `pdeforge generate` on 2 processes\n",
             "| engine | job(s) | wall s | " + " | ".join(f"core-s/sample {r}" for r in resolutions) + " | "
             + " | ".join(f"matvecs {r}" for r in resolutions) + " | inputs identical |",
             "|---|---|---|" + "---|" * (2 * len(resolutions)) + "---|"]
    for row in rows:
        for label, part in (("paired", row["paired"]), ("3 independent", row["independent"])):
            per = [part["by"][r]["seconds_per_sample"] for r in resolutions]
            mv = [part["by"][r]["mean_matvecs"] for r in resolutions]
            lines.append(f"| {row['engine']} ({', '.join(sorted(part['by'][resolutions[-1]]['engines']))}) | {label} | "
                         f"{part['wall']:.1f} | " + " | ".join(f"{p:.4f}" for p in per) + " | "
                         + " | ".join(f"{m:.1f}" for m in mv) + f" | {'yes' if row['identical_inputs'] else 'NO'} |")
    print("\n".join(lines))
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "paired.json").write_text(json.dumps({"resolutions": resolutions, "samples": samples, "rows": rows},
                                                indent=2, default=str))


if __name__ == "__main__":
    main()
