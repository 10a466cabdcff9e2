"""Server-sent events: the caller's jobs as they change (``GET /v1/events``; the web page at ``/`` listens).

The stream (``text/event-stream``) opens with ``retry:`` and a ``snapshot`` event, ``{"data": [job,
...]}``: the caller's ``limit`` newest jobs as ``GET /v1/jobs`` lists them (an admin: everyone's).
It then reads that window again every :data:`POLL_SECONDS` (one pipelined Redis round trip; Redis is
called from the thread pool, never on the event loop) and sends what changed:

* ``job``: a job that entered the window or changed (status, progress, shards, error); the body of
  ``GET /v1/jobs/{id}``;
* ``remove``: ``{"id": ...}`` of a job that left the window (deleted, or pushed out by newer ones);
* ``unavailable``: ``{"detail", "code"}`` when the job store stops answering; the stream stays open,
  and a fresh ``snapshot`` follows once Redis answers again;
* a ``: heartbeat`` comment after :data:`HEARTBEAT_SECONDS` without an event, so idle proxies keep
  the connection.

The stream ends when the client goes away, or after :data:`STREAM_SECONDS`: the browser's
``EventSource`` reconnects after ``retry`` milliseconds, which checks its credential again (an
expired session does not listen on).  A job store that does not answer when the stream opens is a
503, as on every other route.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated

import redis
from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from ..deps import CallerService, ServiceDep
from ..schemas import JobPublic, job_public

log = logging.getLogger("pdeforge.api.events")

router = APIRouter(prefix="/v1/events", tags=["jobs"])

#: seconds between two reads of the caller's jobs
POLL_SECONDS = 1.0
#: seconds without an event before a heartbeat comment
HEARTBEAT_SECONDS = 15.0
#: seconds a stream lasts before the client reconnects (and is authenticated again)
STREAM_SECONDS = 300.0
#: the client's reconnection delay (milliseconds), sent as ``retry:``
RETRY_MS = 2000
#: the body of an ``unavailable`` event (that of a 503)
UNAVAILABLE = json.dumps({"detail": "job store (Redis) unavailable; retrying", "code": "store_unavailable"})
#: fields that change with the clock alone; a change of them is not an event
_CLOCK_FIELDS = {"elapsed_seconds", "throughput"}


def encode(event: str, data: str) -> bytes:
    """One event in the SSE wire format; ``data`` is one line of JSON."""
    return f"event: {event}\ndata: {data}\n\n".encode()


def _newest_jobs(service: CallerService, limit: int) -> dict[str, JobPublic]:
    """The caller's ``limit`` newest jobs, by id (newest first)."""
    records, _ = service.list_jobs(limit=limit)
    return {rec["id"]: job_public(rec) for rec in records}


def _fingerprint(job: JobPublic) -> str:
    return job.model_dump_json(exclude=_CLOCK_FIELDS)


def _snapshot(window: dict[str, JobPublic]) -> bytes:
    return encode("snapshot", '{"data":[%s]}' % ",".join(job.model_dump_json() for job in window.values()))


class _Told:
    """What the client was last told: fingerprints of the jobs in its window."""

    def __init__(self, window: dict[str, JobPublic]) -> None:
        self.seen = {job_id: _fingerprint(job) for job_id, job in window.items()}

    def changes(self, window: dict[str, JobPublic]) -> list[bytes]:
        """Events that bring the client from what it was told to ``window``."""
        events = [encode("remove", json.dumps({"id": job_id})) for job_id in self.seen if job_id not in window]
        current = {}
        for job_id, job in window.items():
            current[job_id] = _fingerprint(job)
            if self.seen.get(job_id) != current[job_id]:
                events.append(encode("job", job.model_dump_json()))
        self.seen = current
        return events


async def _stream(service: CallerService, limit: int, first: dict[str, JobPublic]) -> AsyncIterator[bytes]:
    started = last_sent = time.monotonic()
    yield f"retry: {RETRY_MS}\n\n".encode() + _snapshot(first)
    told, store_down, reason = _Told(first), False, "lifetime over"
    try:
        while time.monotonic() - started < STREAM_SECONDS:
            await asyncio.sleep(POLL_SECONDS)
            try:
                window = await run_in_threadpool(_newest_jobs, service, limit)
            except redis.RedisError as exc:
                events = []
                if not store_down:
                    log.warning("event stream: job store unavailable (%s)", type(exc).__name__)
                    events = [encode("unavailable", UNAVAILABLE)]
                store_down = True
            else:
                if store_down:  # what happened meanwhile is unknown: start over
                    told, store_down, events = _Told(window), False, [_snapshot(window)]
                else:
                    events = told.changes(window)
            now = time.monotonic()
            if events:
                yield b"".join(events)
                last_sent = now
            elif now - last_sent >= HEARTBEAT_SECONDS:
                yield b": heartbeat\n\n"
                last_sent = now
    except asyncio.CancelledError:
        reason = "client gone"
        raise
    finally:
        log.debug("event stream of %s closed: %s", service.principal.name, reason)


@router.get("", response_class=StreamingResponse, responses={
    200: {"description": "`text/event-stream`: `snapshot`, then `job`, `remove` and `unavailable` events and "
                         "`: heartbeat` comments (see the README, \"Web page\")",
          "content": {"text/event-stream": {"schema": {"type": "string"}}}}})
async def job_events(
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=200, description="how many of the newest jobs to follow")] = 50,
) -> StreamingResponse:
    """Server-sent events: a snapshot of the caller's newest jobs, then every change of status or progress."""
    first = await run_in_threadpool(_newest_jobs, service, limit)  # a Redis failure here is a 503
    return StreamingResponse(_stream(service, limit, first), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
