"""API latency under a short load from a second process on loopback.

    python -m bench.api_latency                    # 2000 GET /v1/jobs/{id}, 400 POST /v1/jobs, 8 threads

Starts the API (uvicorn, one process) on a free 127.0.0.1 port against Redis
(``--redis``, default redis://127.0.0.1:6379/12, fresh key prefix, deleted afterwards)
and a temporary local storage; no workers run, so submitted jobs stay queued.  A
separate load process sends the requests from ``--threads`` threads (bounded count,
stops by itself) and reports p50/p99 per endpoint.  Prints markdown, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def _load(url: str, job_id: str, gets: int, posts: int, threads: int, out_path: str) -> None:
    """Runs in the second process: fire the requests, record latencies."""
    import httpx

    client = httpx.Client(base_url=url, timeout=30, limits=httpx.Limits(max_connections=threads))

    def get(_):
        t0 = time.perf_counter()
        r = client.get(f"/v1/jobs/{job_id}")
        return "GET /v1/jobs/{id}", time.perf_counter() - t0, r.status_code

    def post(i):
        spec = {"family": "darcy", "grid": {"n": 32}, "samples": 10, "seed": 1000 + i % 50}
        t0 = time.perf_counter()
        r = client.post("/v1/jobs", json=spec)
        return "POST /v1/jobs", time.perf_counter() - t0, r.status_code

    calls = [(get, i) for i in range(gets)] + [(post, i) for i in range(posts)]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(calls))
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(lambda k: calls[k][0](calls[k][1]), order))
    wall = time.perf_counter() - t0
    Path(out_path).write_text(json.dumps({"results": results, "wall": wall}))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gets", type=int, default=2000)
    ap.add_argument("--posts", type=int, default=400)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/12")
    ap.add_argument("--out", default="bench/results/api_latency.json")
    args = ap.parse_args(argv)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    prefix = f"lat{uuid.uuid4().hex[:8]}"
    tmp = tempfile.mkdtemp(prefix="pdeforge-lat-")
    env = dict(os.environ, PDEFORGE_BROKER_URL=args.redis, PDEFORGE_KEY_PREFIX=prefix, PDEFORGE_QUEUE=f"{prefix}-q",
               PDEFORGE_STORAGE_URL=Path(tmp).as_uri())
    api = subprocess.Popen([sys.executable, "-m", "uvicorn", "pdeforge.app.main:app", "--port", str(port), "--log-level",
                            "warning", "--no-access-log"], env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        for _ in range(200):
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        job_id = httpx.post(f"{url}/v1/jobs", json={"family": "darcy", "grid": {"n": 32}, "samples": 10}).json()["id"]
        out_path = Path(tmp) / "latencies.json"
        loader = subprocess.run([sys.executable, "-c", f"from bench.api_latency import _load; _load({url!r}, "
                                 f"{job_id!r}, {args.gets}, {args.posts}, {args.threads}, {str(out_path)!r})"],
                                env=os.environ, check=True)
        del loader
        data = json.loads(out_path.read_text())
    finally:
        os.killpg(api.pid, signal.SIGTERM)
        api.wait(30)
        import redis

        r = redis.Redis.from_url(args.redis)
        for key in r.scan_iter(match=f"{prefix}*"):
            r.delete(key)
    rows = []
    for endpoint in ("GET /v1/jobs/{id}", "POST /v1/jobs"):
        lat = np.array([t for e, t, _ in data["results"] if e == endpoint]) * 1e3
        codes = sorted({c for e, _, c in data["results"] if e == endpoint})
        rows.append({"endpoint": endpoint, "requests": len(lat), "p50_ms": float(np.percentile(lat, 50)),
                     "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max()), "status_codes": codes})
    total = len(data["results"])
    print(f"\n## API latency, {total} requests from {args.threads} threads in a second process "
          f"({total / data['wall']:.0f} req/s overall)\n")
    print("| endpoint | requests | p50 | p99 | max | status codes |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['endpoint']} | {r['requests']} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | "
              f"{r['max_ms']:.1f} ms | {r['status_codes']} |")
    out = {"rows": rows, "wall_seconds": data["wall"], "args": vars(args)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
