"""The one list of job statuses (importable without Redis, Celery or FastAPI).

``queued -> planning -> running -> finalizing -> succeeded | failed | cancelled``
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    PLANNING = "planning"
    RUNNING = "running"
    FINALIZING = "finalizing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


#: a job in one of these states may still produce data
ACTIVE: frozenset[JobStatus] = frozenset({JobStatus.QUEUED, JobStatus.PLANNING, JobStatus.RUNNING,
                                          JobStatus.FINALIZING})
#: a job in one of these states is over
TERMINAL: frozenset[JobStatus] = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
#: every status, in lifecycle order (for schemas and listings)
STATUSES: tuple[str, ...] = tuple(s.value for s in JobStatus)
