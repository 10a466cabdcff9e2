"""Service overhead: throughput of a dataset job through Celery + Redis + storage vs in-process.

    python -m bench.service                  # 500 samples of darcy 64^2, 2 worker processes
    python -m bench.service --samples 100 --engine direct

Compares, on the same spec: ``generate()`` in one process (no I/O), ``pdeforge generate``
(process pool, HDF5 to a local folder), and the distributed service (``--workers``
Celery worker processes on a real Redis, local-folder storage), each in samples/s.
Needs a Redis at ``--redis`` (default redis://127.0.0.1:6379/12; only keys under a fresh
prefix are written and deleted afterwards).  Prints markdown and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from pdeforge.solvers.generate import generate
from pdeforge.solvers.threads import single_threaded_blas
from pdeforge.workers.config import Settings
from pdeforge.workers.spec import parse_spec
from pdeforge.workers.standalone import generate_local

single_threaded_blas()


def run_service(job, workers: int, redis_url: str, root: Path) -> float:
    from celery import Celery

    from pdeforge.workers.jobs import JobService
    from pdeforge.workers.services import make_storage, make_store

    prefix = f"bench{uuid.uuid4().hex[:8]}"
    settings = Settings(broker_url=redis_url, key_prefix=prefix, queue=f"{prefix}-q",
                        storage_url=(root / "svc").as_uri())
    env = dict(os.environ, PDEFORGE_BROKER_URL=redis_url, PDEFORGE_KEY_PREFIX=prefix,
               PDEFORGE_QUEUE=settings.queue, PDEFORGE_STORAGE_URL=settings.storage_url)
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "pdeforge.workers.celery_app", "worker", "-Q",
                               settings.queue, "-c", str(workers), "--loglevel", "warning",
                               "-n", f"{prefix}@%h"], env=env, start_new_session=True)
    sender = Celery(prefix, broker=redis_url, set_as_current=False)
    sender.conf.update(task_serializer="json", broker_transport_options=settings.broker_transport_options())
    store = make_store(settings)
    service = JobService(store, make_storage(settings),
                         lambda name, *args: sender.send_task(name, args=list(args), queue=settings.queue))
    try:
        time.sleep(3.0)  # let the worker processes start (not part of a job's time)
        t0 = time.perf_counter()
        service.submit(job)
        while (rec := store.get(job.dataset_id))["status"] not in ("succeeded", "failed", "cancelled"):
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
        if rec["status"] != "succeeded":
            raise RuntimeError(f"job ended {rec['status']}: {rec['error']}")
        return elapsed
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
        for key in store.r.scan_iter(match=f"{prefix}*"):
            store.r.delete(key)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--engine", default="skr")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shard-samples", type=int, default=50)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/12")
    ap.add_argument("--out", default="bench/results/service.json")
    args = ap.parse_args(argv)
    job = parse_spec({"family": "darcy", "grid": {"n": args.n}, "samples": args.samples,
                      "solver": {"engine": args.engine}, "output": {"shard_samples": args.shard_samples}})
    rows = []
    t0 = time.perf_counter()
    generate(job.family, job.family_spec(), range(args.samples), seed=job.seed,
             options=job.solver_options())
    rows.append({"mode": "generate() in one process, no I/O", "processes": 1, "seconds": time.perf_counter() - t0})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        generate_local(job, root / "local", workers=args.workers)
        rows.append({"mode": "pdeforge generate (process pool, HDF5)", "processes": args.workers,
                     "seconds": time.perf_counter() - t0})
        seconds = run_service(job, args.workers, args.redis, root)
        rows.append({"mode": "service: Celery + Redis + storage", "processes": args.workers, "seconds": seconds})
    for r in rows:
        r["samples_per_second"] = args.samples / r["seconds"]
    print(f"\n## Throughput, darcy {args.n}^2, {args.samples} samples, engine {args.engine}\n")
    print("| mode | processes | seconds | samples/s |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['processes']} | {r['seconds']:.1f} | {r['samples_per_second']:.1f} |")
    out = {"rows": rows, "args": vars(args), "cores": os.cpu_count()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
