"""Units of work of a job and the task that runs each: ``@plan``, one per shard (``train/00003``),
``@finalize``.  :func:`send` is the one place a unit is (re)sent to the broker: it marks the unit
``queued`` in Redis first, so a message lost on the way is re-sent by the recovery sweep."""

from __future__ import annotations

import time
from collections.abc import Callable

from .state import JobStore, Unit

PLAN = "@plan"
FINALIZE = "@finalize"


def task_for(job_id: str, unit: str) -> tuple[str, list]:
    """``(task name, args)`` of the task that runs ``unit``."""
    if unit == PLAN:
        return "pdeforge.plan", [job_id]
    if unit == FINALIZE:
        return "pdeforge.finalize", [job_id]
    split, _, k = unit.partition("/")
    return "pdeforge.solve_shard", [job_id, split, int(k)]


def send(store: JobStore, enqueue: Callable[..., None], job_id: str, units: list[str], *, retries: int = 0,
         mark: bool = True, now: float | None = None) -> None:
    """Mark ``units`` queued at ``now`` (unless ``mark`` is False: the caller already did, atomically) and
    enqueue one task for each."""
    if mark:
        now = time.time() if now is None else now
        store.set_units(job_id, [Unit(u, "queued", now, retries) for u in units])
    for unit in units:
        name, args = task_for(job_id, unit)
        enqueue(name, *args)
