"""The web page at ``/`` and the event stream it follows, ``GET /v1/events``.

Two levels, both over real HTTP and real Redis:

* **the stream**: the app of :func:`create_app` served by uvicorn in a thread of this process (so
  the stream's intervals can be shortened), Redis DB 14 under a key prefix of its own (deleted
  afterwards), jobs submitted through the real :class:`JobService` with no broker -- nothing
  runs, and each test moves progress and status in Redis itself, as a worker would.  Checked:
  the wire format, snapshot then changes, heartbeats, ownership, 503 when Redis is down, riding
  out a Redis restart, the end of the stream when the client goes away;
* **the page**: Debian's Chromium driven by Playwright against a live deployment (uvicorn and a
  Celery worker as subprocesses, :mod:`tests.cluster`), tokens on: the login flow, job rows
  appearing live, progress advancing while a deliberately slow job runs, preview images that
  load.  Every request the page makes must go to the server under test, and the page must log
  no error.  Screenshots are kept in ``<pytest basetemp>/web*/``: ``login.png``, ``running.png``
  (a job mid-way) and ``jobs.png`` (a finished dataset's preview).

Nothing waits on the clock: every wait is for an event, a DOM state or a log record, with a
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
from urllib.parse import urlsplit

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
from tests.cluster import SLOW_SOLVER, Cluster, make_cluster, make_job
from tests.s3server import free_ports

from .conftest import ApiServer, start_api
from .test_api_live import server_errors

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
        assert client.get("/").status_code == 200  # the page itself needs no Redis


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


# ----------------------------------------------------------------------------- the page, without a browser
def test_the_page_needs_a_session_when_tokens_are_configured(guarded_site):
    site = guarded_site
    with httpx.Client(base_url=site.url, timeout=PATIENCE) as client:
        for cookies in ({}, {"pdeforge_session": "alice.99999999999.forged"}):
            client.cookies.clear()
            client.cookies.update(cookies)
            r = client.get("/")
            assert r.status_code == 303 and r.headers["location"] == "/login?next=/", (cookies, r.status_code)
        client.cookies.clear()
        assert "<form" in client.get("/login", params={"next": "/"}).text
        login = client.post("/v1/session", content=f"token={TOKENS['alice']}&next=/".encode(),
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert login.status_code == 303 and login.headers["location"] == "/"
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert 'data-principal="alice"' in page.text and 'data-auth="on"' in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"


def test_the_page_and_its_files_are_served_with_no_tokens(open_site):
    with httpx.Client(base_url=open_site.url, timeout=PATIENCE) as client:
        page = client.get("/")
        assert page.status_code == 200 and 'data-auth="off"' in page.text
        for name, media in (("app.js", "text/javascript"), ("style.css", "text/css"), ("favicon.svg", "image/svg+xml")):
            r = client.get(f"/static/{name}")
            assert r.status_code == 200 and r.headers["content-type"].startswith(media), (name, r.headers)
            assert f"/static/{name}" in page.text, name
        for missing in ("index.html", "nope.js", "..%2Fmain.py", "%2e%2e%2Frouters%2Fui.py"):
            assert client.get(f"/static/{missing}").status_code == 404, missing


# ----------------------------------------------------------------------------- the page in Chromium
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
WEB_TOKEN = f"web-{uuid.uuid4().hex}"
PREVIEW_SAMPLES = 8  # as app.js shows
_seeds = iter(range(1000, 10**6))


@dataclass
class Site:
    """A live deployment (uvicorn + one worker process) with tokens, and a client of principal ``web``."""

    cluster: Cluster
    server: ApiServer
    http: httpx.Client
    shots: Path

    @property
    def url(self) -> str:
        return self.server.url

    def submit(self, *, samples: int, shard_samples: int, n: int = 16, **extra) -> str:
        job = make_job(n=n, samples=samples, seed=next(_seeds), shard_samples=shard_samples, **extra)
        r = self.http.post("/v1/jobs", json=job.model_dump(mode="json"))
        assert r.status_code == 202, r.text
        return r.json()["id"]


@pytest.fixture(scope="module")
def site(redis_client, tmp_path_factory) -> Iterator[Site]:
    log_dir = tmp_path_factory.mktemp("web")
    with make_cluster(redis_client, log_dir, local_root=log_dir / "store") as cluster:
        cluster.start_worker(concurrency=1)
        server = start_api(cluster, api_tokens=f"web:{WEB_TOKEN}")
        try:
            with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {WEB_TOKEN}"},
                              timeout=PATIENCE) as client:
                yield Site(cluster, server, client, log_dir)
        finally:
            server.stop()


@pytest.fixture(autouse=True)
def no_server_errors(request) -> Iterator[None]:
    """Fail a page test during which the server answered 5xx or logged a traceback."""
    if "site" not in request.fixturenames:
        yield
        return
    server = request.getfixturevalue("site").server
    start = server.log_path.stat().st_size
    yield
    errors = server_errors(server, start)
    assert errors is None, f"server errors:\n{errors}"


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"the page tests need Debian's Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Tab:
    """A page of a fresh browser context; requests anywhere but the site are aborted and recorded."""

    page: object
    context: object
    elsewhere: list[str]
    errors: list[str]

    def log_in(self, url: str) -> None:
        r = self.context.request.post(f"{url}/v1/session", data={"token": WEB_TOKEN})
        assert r.status == 200, r.text()

    def open(self, url: str) -> None:
        self.page.goto(f"{url}/")
        self.page.locator('#connection[data-state="live"]').wait_for(timeout=PATIENCE * 1000)


@pytest.fixture
def tab(browser, site) -> Iterator[Tab]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    elsewhere: list[str] = []
    errors: list[str] = []
    here = urlsplit(site.url).netloc

    def guard(route) -> None:
        if urlsplit(route.request.url).netloc == here:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    page = context.new_page()
    page.set_default_timeout(PATIENCE * 1000)
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield Tab(page, context, elsewhere, errors)
    finally:
        context.close()
    assert not elsewhere, f"the page requested other hosts: {elsewhere}"
    assert not errors, f"errors in the page: {errors}"


def test_without_a_session_the_page_leads_to_the_login_form_and_back(site, tab):
    page = tab.page
    page.goto(f"{site.url}/")
    assert page.url == f"{site.url}/login?next=/"
    page.screenshot(path=site.shots / "login.png")
    page.get_by_label("API token").fill(WEB_TOKEN)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{site.url}/")
    page.locator('#connection[data-state="live"]').wait_for()
    assert page.locator("#principal").text_content() == "web"

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(f"{site.url}/login?next=/")
    page.goto(f"{site.url}/")  # the session is gone
    assert page.url == f"{site.url}/login?next=/"


#: records, per job row, each (status, done, total) the table shows, as it changes
RECORD_ROWS = """() => {
  window.__rows = {};
  const record = () => {
    for (const row of document.querySelectorAll("#jobs tbody tr")) {
      const [done, total] = row.querySelector(".count").textContent.split(" / ").map(Number);
      const seen = (window.__rows[row.dataset.jobId] ||= []);
      const entry = [row.dataset.status, done, total];
      if (!seen.length || seen[seen.length - 1].join() !== entry.join()) seen.push(entry);
    }
  };
  new MutationObserver(record).observe(document.querySelector("#jobs tbody"),
                                       {subtree: true, childList: true, characterData: true, attributes: true});
  record();
}"""


def test_job_rows_appear_and_progress_advances_while_a_job_runs(site, tab):
    tab.log_in(site.url)
    tab.open(site.url)
    page = tab.page
    page.evaluate(RECORD_ROWS)
    page.evaluate("window.__sameDocument = true")  # gone if the page reloaded
    # ~0.1-0.2 s per sample on one core: seconds of progress, read once a second by the stream
    slow = site.submit(samples=60, shard_samples=10, n=64, solver=SLOW_SOLVER)
    row = page.locator(f'tr[data-job-id="{slow}"]')
    row.wait_for()
    assert row.locator(".family").text_content() == "darcy"
    assert row.locator(".job-id").text_content() == slow

    # two different counts shown while the job runs, neither zero nor complete: the bar moves live
    page.wait_for_function("""(id) => new Set((window.__rows[id] || [])
        .filter(([status, done, total]) => status === "running" && done > 0 && done < total)
        .map(([, done]) => done)).size >= 2""", arg=slow)
    page.screenshot(path=site.shots / "running.png")
    row.locator('.badge:text-is("succeeded")').wait_for(timeout=240_000)
    assert row.locator(".count").text_content() == "60 / 60"
    assert row.locator("progress").evaluate("bar => [bar.value, bar.max]") == [60, 60]
    assert row.locator(".rate").text_content() != "–"
    seen = page.evaluate("id => window.__rows[id]", slow)
    done = [d for _, d, _ in seen]
    assert done == sorted(done) and done[-1] == 60, seen  # progress never went back
    assert page.evaluate("window.__sameDocument") is True


def test_a_dataset_previews_its_first_samples(site, tab):
    job_id = site.submit(samples=10, shard_samples=4, n=32)
    site.cluster.wait_succeeded(job_id)
    tab.log_in(site.url)
    tab.open(site.url)
    page = tab.page
    row = page.locator(f'tr[data-job-id="{job_id}"]')
    row.locator('.badge:text-is("succeeded")').wait_for()
    row.get_by_role("button", name=job_id).click()

    preview = page.locator("#preview")
    preview.wait_for(state="visible")
    assert page.evaluate("document.activeElement.id") == "preview-title"
    images = page.locator("#samples img")
    page.wait_for_function("""(count) => {
        const images = [...document.querySelectorAll("#samples img")];
        return images.length === count && images.every((img) => img.complete && img.naturalWidth > 0);
    }""", arg=PREVIEW_SAMPLES)
    expected = [f"/v1/datasets/{job_id}/samples/{i}.png" for i in range(PREVIEW_SAMPLES)]
    assert [urlsplit(src).path for src in images.evaluate_all("imgs => imgs.map((img) => img.src)")] == expected
    assert all(w > 100 for w in images.evaluate_all("imgs => imgs.map((img) => img.naturalWidth)"))

    manifest = site.http.get(f"/v1/datasets/{job_id}").json()
    assert preview.locator("#manifest-link").get_attribute("href") == f"/v1/datasets/{job_id}"
    links = preview.locator("#files a").evaluate_all("links => links.map((a) => a.getAttribute('href'))")
    assert links == [f"/v1/datasets/{job_id}/files/{f['path']}" for f in manifest["files"]]
    shard = next(link for link in links if link.endswith(".h5"))
    assert tab.context.request.get(f"{site.url}{shard}").status == 200  # with the session cookie
    assert "10 samples (complete)" in preview.locator("#preview-summary").text_content()

    page.locator("#files-box summary").click()
    page.screenshot(path=site.shots / "jobs.png", full_page=True)
