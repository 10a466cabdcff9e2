"""Chaos at full size: every fault scenario of ``tests/chaos`` on jobs like the operator's.

    python -m bench.chaos                        # darcy 64^2, 1200 samples, engine auto (the operator's jobs)
    python -m bench.chaos --engine slow          # the CI suite's slow GMRES at full size (long jobs)
    python -m bench.chaos --samples 200 --n 48   # quicker
    python -m bench.chaos --scenarios "kill -9 redis (AOF)" "disk full"

Each scenario: its own stack (own redis-server with AOF, SeaweedFS or a tmpfs, one worker with
``--workers`` pool processes and its recovery sweep, the API), a job submitted, the fault
injected mid-shard and cleared, the dataset verified independently (indices exactly once,
sha256, recomputed residuals).  Prints the markdown table and writes
``bench/results/chaos.json``.  The disk-full scenario needs root (it mounts a tmpfs).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path

from tests.chaos.harness import NEEDS, SCENARIOS, SLOW, Row, chaos_job, make_stack, run_scenario, table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1200)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--shard-samples", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2, help="pool processes of the worker")
    parser.add_argument("--engine", default="auto", help="solver engine, or `slow` (unpreconditioned GMRES)")
    parser.add_argument("--scenarios", nargs="*", default=list(SCENARIOS), choices=list(SCENARIOS))
    parser.add_argument("--keep", action="store_true", help="keep the stacks' folders (logs) and print where")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="pdeforge-chaos-"))
    rows: list[Row] = []
    try:
        for i, name in enumerate(args.scenarios):
            tmpfs = max(64 << 20, 4 * args.samples * args.n ** 2 * 8 * 2)
            stack = make_stack(root / f"s{i}", NEEDS[name], tmpfs_bytes=tmpfs)
            try:
                stack.start_worker(args.workers)
                stack.start_api()
                solver = SLOW if args.engine == "slow" else {"engine": args.engine}
                job = chaos_job(1000 + i, samples=args.samples, n=args.n, shard_samples=args.shard_samples,
                                solver=solver)
                t0 = time.monotonic()
                row = run_scenario(stack, name, job)
                rows.append(row)
                print(f"{name}: recovered in {row.recovery_seconds:.1f} s (job {time.monotonic() - t0:.0f} s), "
                      f"lost {row.lost}, duplicates {row.duplicates}, {'verified' if row.ok else row.detail}",
                      flush=True)
            finally:
                stack.close()
    finally:
        if args.keep:
            print(f"logs and data kept under {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(table(rows))
    out = Path(__file__).parent / "results" / "chaos.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": [dataclasses.asdict(r) for r in rows]}, indent=2))
    return 0 if rows and all(r.ok and r.lost == 0 and r.duplicates == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
