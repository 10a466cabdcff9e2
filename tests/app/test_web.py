"""The event stream of the web page, ``GET /v1/events``, over real HTTP and real Redis:

* **the stream**: the app of :func:`create_app` served by uvicorn in a thread of this process (so
  the stream's intervals can be shortened), Redis DB 14 under a key prefix of its own (deleted
  afterwards), jobs submitted through the real :class:`JobService` with no broker -- nothing
  runs, and each test moves progress and status in Redis itself, as a worker would.  Checked:
  the wire format, snapshot then changes, heartbeats, ownership, 503 when Redis is down, riding
  out a Redis restart, the end of the stream when the client goes away;

Nothing waits on the clock: every wait is for an event or a log record, with a
generous limit that only turns a hang into a failure.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from pdeforge.app.main import create_app
from pdeforge.app.routers import events
from pdeforge.workers.config import Settings
from pdeforge.workers.principals import ANONYMOUS, Principal
from pdeforge.workers.state import now_iso
from pdeforge.workers.status import JobStatus
from tests.chaos.harness import RedisServer
from tests.cluster import make_job
from tests.s3server import free_ports


pytestmark = pytest.mark.timeout(300)

REDIS_URL = "redis://127.0.0.1:6379/14"
#: a guard against hangs only: no test expects anything to take this long
PATIENCE = 60.0
ALICE, BOB = Principal("alice"), Principal("bob")
#: tokens of alice, bob and the admin ops (guarded_site)
TOKENS = {name: f"{name}-{uuid.uuid4().hex}" for name in ("alice", "bob", "ops")}


# ----------------------------------------------------------------------------- reading a stream
@dataclass
class Event:
    name: str  # an event name, "comment" or "retry"
    data: dict | None = None
    text: str = ""


class EventReader:
    """Parses ``text/event-stream`` from an ``httpx`` streaming response, block by block."""

    def __init__(self, response: httpx.Response) -> None:
        assert response.status_code == 200, (response.status_code, response.read())
        assert response.headers["content-type"].startswith("text/event-stream"), response.headers
        self.lines = response.iter_lines()

    def next(self) -> Event:
        name, data, text = None, [], None
        for line in self.lines:
            if line == "":
                if name is not None or data:
                    return Event(name or "message", json.loads("\n".join(data)))
                if text is not None:
                    return Event(*text)
                continue
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if key == "":
                text = ("comment", None, value)
            elif key == "retry":
                text = ("retry", None, value)
            elif key == "event":
                name = value
            elif key == "data":
                data.append(value)
            else:
                raise AssertionError(f"not an SSE field: {line!r}")
        raise EOFError("the stream ended")

    def until(self, predicate: Callable[[Event], bool], what: str) -> list[Event]:
        """Events up to and including the first that satisfies ``predicate``."""
        seen, deadline = [], time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            seen.append(self.next())
            if predicate(seen[-1]):
                return seen
        raise AssertionError(f"no {what} within {PATIENCE:.0f} s; got {[(e.name, e.data) for e in seen][-10:]}")

    def next_event(self) -> Event:
        """The next event that is not a comment."""
        return self.until(lambda e: e.name != "comment", "event")[-1]


def job_event(job_id: str, check: Callable[[dict], bool] = lambda job: True) -> Callable[[Event], bool]:
    return lambda e: e.name == "job" and e.data["id"] == job_id and check(e.data)


# ----------------------------------------------------------------------------- the app in a thread
class ThreadServer:
    """``uvicorn`` serving an app object on a loopback port, in a thread of this process."""

    def __init__(self, app) -> None:
        self.app = app
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + PATIENCE
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)

    def stream(self, path: str = "/v1/events", **kwargs):
        return httpx.stream("GET", f"{self.url}{path}", timeout=PATIENCE, **kwargs)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(PATIENCE)


@dataclass
class Deployment:
    """The API in a thread over Redis (a key prefix of its own) and a tmp folder; no broker, no worker."""

    server: ThreadServer
    submitted: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def service(self):
        return self.server.app.state.service

    @property
    def store(self):
        return self.service.store

    def submit(self, principal: Principal = ANONYMOUS, **spec) -> str:
        rec, _ = self.service.submit(make_job(seed=len(self.submitted) + 1, **spec), principal)
        self.submitted.append(rec["id"])
        return rec["id"]


@contextmanager
def deployment(tmp_path: Path, redis_url: str = REDIS_URL, **settings) -> Iterator[Deployment]:
    prefix = f"web-{uuid.uuid4().hex[:8]}"
    app = create_app(Settings(broker_url=redis_url, key_prefix=prefix, storage_url=(tmp_path / "store").as_uri(),
                              **settings), enqueue=lambda *args: None)
    server = ThreadServer(app)
    try:
        yield Deployment(server)
    finally:
        server.close()
        store = app.state.service.store
        for key in store.r.scan_iter(match=f"{prefix}:*"):
            store.r.delete(key)
        store.r.close()


@pytest.fixture
def fast(monkeypatch) -> None:
    """Short stream intervals: the tests wait on events, and these make the events come soon."""
    monkeypatch.setattr(events, "POLL_SECONDS", 0.05)
    monkeypatch.setattr(events, "HEARTBEAT_SECONDS", 0.5)


@pytest.fixture
def open_site(tmp_path, fast) -> Iterator[Deployment]:
    """No tokens: every caller is the anonymous admin."""
    with deployment(tmp_path) as site:
        yield site


@pytest.fixture
def guarded_site(tmp_path, fast) -> Iterator[Deployment]:
    """Tokens for alice, bob and the admin ops."""
    with deployment(tmp_path, api_tokens=",".join(f"{k}:{v}" for k, v in TOKENS.items()), api_admins="ops") as site:
        yield site


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name]}"}


class StreamLog(logging.Handler):
    """The records of ``pdeforge.api.events`` (debug included), waitable."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []
        self.changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        with self.changed:
            self.messages.append(record.getMessage())
            self.changed.notify_all()

    def wait_for(self, text: str) -> str:
        with self.changed:
            if not self.changed.wait_for(lambda: any(text in m for m in self.messages), PATIENCE):
                raise AssertionError(f"no log record with {text!r}: {self.messages}")
        return next(m for m in self.messages if text in m)


@pytest.fixture
def stream_log() -> Iterator[StreamLog]:
    logger = logging.getLogger("pdeforge.api.events")
    handler, level = StreamLog(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def without_clock(job: dict) -> dict:
    return {k: v for k, v in job.items() if k not in ("elapsed_seconds", "throughput")}


# ----------------------------------------------------------------------------- the stream
def test_the_stream_opens_with_a_snapshot_then_sends_each_change(open_site):
    site = open_site
    a, b = site.submit(samples=8), site.submit(samples=4)
    listed = httpx.get(f"{site.url}/v1/jobs").json()["data"]
    with site.server.stream() as response:
        assert response.headers["cache-control"] == "no-store"
        reader = EventReader(response)
        retry = reader.next()
        assert retry.name == "retry" and retry.text == str(events.RETRY_MS)
        snapshot = reader.next()
        assert snapshot.name == "snapshot" and snapshot.data == {"data": listed}
        assert [j["id"] for j in listed] == [b, a]  # newest first, as GET /v1/jobs lists them

        site.store.set_status(a, JobStatus.RUNNING, started=now_iso())
        event = reader.next_event()
        assert event.name == "job" and event.data["id"] == a and event.data["status"] == "running", event

        site.store.progress(a, "train/00000", 3)
        event = reader.next_event()
        assert event.name == "job" and event.data["id"] == a, event
        assert event.data["progress"] == {"samples_done": 3, "samples_total": 8, "fraction": 3 / 8,
                                          "shards_done": 0, "shards_total": 0}
        # the body of GET /v1/jobs/{id}, but for the clock
        assert without_clock(event.data) == without_clock(httpx.get(f"{site.url}/v1/jobs/{a}").json())

        c = site.submit(samples=2)  # a new job enters
        event = reader.next_event()
        assert event.name == "job" and event.data["id"] == c and event.data["status"] == "queued", event

        site.service.cancel(b)  # cancelled, then deleted: it leaves
        event = reader.next_event()
        assert event.name == "job" and event.data["id"] == b and event.data["status"] == "cancelled", event
        site.service.delete(b)
        event = reader.next_event()
        assert event.name == "remove" and event.data == {"id": b}, event


def test_the_stream_follows_a_window_of_the_newest_jobs(open_site):
    site = open_site
    a, b = site.submit(), site.submit()
    with site.server.stream(params={"limit": 2}) as response:
        reader = EventReader(response)
        snapshot = reader.until(lambda e: e.name == "snapshot", "snapshot")[-1]
        assert [j["id"] for j in snapshot.data["data"]] == [b, a]
        c = site.submit()  # pushes the oldest out of the window
        got = reader.until(job_event(c), "the new job")
        assert [(e.name, e.data) for e in got if e.name != "comment"][0] == ("remove", {"id": a}), got
    for bad in (0, 201, "x"):
        r = httpx.get(f"{site.url}/v1/events", params={"limit": bad})
        assert r.status_code == 422 and r.json()["code"] == "validation_error", (bad, r.text)


def test_an_idle_stream_sends_heartbeat_comments(open_site):
    open_site.submit()
    with open_site.server.stream() as response:
        reader = EventReader(response)
        assert [reader.next().name for _ in range(2)] == ["retry", "snapshot"]
        for _ in range(2):  # nothing changes: comments only
            assert reader.next() == Event("comment", None, "heartbeat")


def test_each_caller_follows_only_its_own_jobs(guarded_site):
    site = guarded_site
    mine, theirs = site.submit(ALICE), site.submit(BOB)
    for headers, status in (({}, 401), ({"Authorization": "Bearer nope"}, 403)):
        r = httpx.get(f"{site.url}/v1/events", headers=headers)
        assert r.status_code == status and r.json()["code"] in ("unauthorized", "forbidden"), r.text

    with site.server.stream(headers=bearer("alice")) as response:
        reader = EventReader(response)
        snapshot = reader.until(lambda e: e.name == "snapshot", "snapshot")[-1]
        assert [j["id"] for j in snapshot.data["data"]] == [mine]
        site.store.progress(theirs, "train/00000", 1)  # first bob's change, then alice's
        site.store.progress(mine, "train/00000", 2)
        seen = reader.until(job_event(mine, lambda j: j["progress"]["samples_done"] == 2), "alice's change")
        # a heartbeat comes only after a read that found nothing new: bob's change had its chance
        seen += reader.until(lambda e: e.name == "comment", "a heartbeat")
        assert not [e for e in seen if e.data and theirs in json.dumps(e.data)], seen

    with site.server.stream(headers=bearer("ops")) as response:  # the admin follows everyone
        snapshot = EventReader(response).until(lambda e: e.name == "snapshot", "snapshot")[-1]
        assert [j["id"] for j in snapshot.data["data"]] == [theirs, mine]

    with httpx.Client(base_url=site.url, timeout=PATIENCE) as browser:  # the session cookie, as a page has it
        assert browser.post("/v1/session", json={"token": TOKENS["bob"]}).status_code == 200
        with browser.stream("GET", "/v1/events") as response:
            snapshot = EventReader(response).until(lambda e: e.name == "snapshot", "snapshot")[-1]
            assert [j["id"] for j in snapshot.data["data"]] == [theirs]


def test_a_stream_cannot_open_while_redis_is_down_503(tmp_path):
    dead = f"redis://127.0.0.1:{free_ports(1)[0]}/0"  # nothing listens there
    app = create_app(Settings(broker_url=dead, key_prefix="web-dead", storage_url=(tmp_path / "store").as_uri()),
                     enqueue=lambda *args: None)
    with TestClient(app) as client:
        r = client.get("/v1/events")
        assert r.status_code == 503 and r.headers["retry-after"], r.text
        assert r.json()["code"] == "store_unavailable" and "Traceback" not in r.text


def test_the_stream_rides_out_a_redis_restart(tmp_path, fast):
    redis_server = RedisServer(tmp_path / "redis")
    redis_server.start(aof=True)
    try:
        with deployment(tmp_path, redis_url=redis_server.url) as site:
            job_id = site.submit()
            with site.server.stream() as response:
                reader = EventReader(response)
                reader.until(lambda e: e.name == "snapshot", "snapshot")
                redis_server.stop()
                down = reader.until(lambda e: e.name != "comment", "an event")[-1]
                assert down == Event("unavailable", {"detail": "job store (Redis) unavailable; retrying",
                                                     "code": "store_unavailable"})
                redis_server.start(aof=True)  # the same port, its append-only file kept
                back = reader.until(lambda e: e.name != "comment", "an event")[-1]
                assert back.name == "snapshot" and [j["id"] for j in back.data["data"]] == [job_id], back
                site.store.progress(job_id, "train/00000", 1)  # and changes flow again
                reader.until(job_event(job_id, lambda j: j["progress"]["samples_done"] == 1), "the change")
    finally:
        redis_server.stop()


def test_the_stream_ends_when_the_client_goes_away(open_site, stream_log):
    with open_site.server.stream() as response:
        EventReader(response).until(lambda e: e.name == "snapshot", "snapshot")
    assert stream_log.wait_for("closed: client gone") == "event stream of anonymous closed: client gone"


def test_a_stream_ends_after_its_lifetime(open_site, stream_log, monkeypatch):
    monkeypatch.setattr(events, "STREAM_SECONDS", 0.3)
    with open_site.server.stream() as response:
        reader = EventReader(response)
        reader.until(lambda e: e.name == "snapshot", "snapshot")
        with pytest.raises(EOFError):  # the server ends it; EventSource reconnects after `retry`
            reader.until(lambda e: False, "the end of the stream")
    stream_log.wait_for("closed: lifetime over")
