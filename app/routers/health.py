"""Health, readiness and Prometheus metrics (open even when API tokens are configured)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse

from ..deps import ServiceDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict:
    """The API process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(service: ServiceDep):
    """Redis is reachable and object storage is writable (503 naming what is not)."""
    checks = service.readiness()
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(service: ServiceDep) -> str:
    """Prometheus text format: jobs by status, samples solved, solve seconds."""
    store = service.store
    lines = ["# HELP pdeforge_jobs Jobs by status.", "# TYPE pdeforge_jobs gauge"]
    for status, count in store.status_counts().items():
        lines.append(f'pdeforge_jobs{{status="{status}"}} {count}')
    m = store.metrics()
    lines += ["# HELP pdeforge_samples_solved_total Samples solved and stored.",
              "# TYPE pdeforge_samples_solved_total counter",
              f"pdeforge_samples_solved_total {int(m.get('samples_solved', 0))}",
              "# HELP pdeforge_shards_solved_total Shards solved and stored.",
              "# TYPE pdeforge_shards_solved_total counter",
              f"pdeforge_shards_solved_total {int(m.get('shards_solved', 0))}",
              "# HELP pdeforge_solve_seconds_total Wall time spent solving samples (all workers).",
              "# TYPE pdeforge_solve_seconds_total counter",
              f"pdeforge_solve_seconds_total {m.get('solve_seconds', 0.0):.6f}"]
    return "\n".join(lines) + "\n"
