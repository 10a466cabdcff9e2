"""Python client of the PDEForge HTTP API (used by the ``pdeforge`` CLI).

::

    from pdeforge.app.client import PDEForgeClient

    with PDEForgeClient("http://127.0.0.1:8000", token="...") as api:
        job = api.submit({"family": "darcy", "grid": {"n": 64}, "samples": 1000})
        job = api.wait(job["id"], on_update=lambda j: print(j["progress"]["samples_done"]))
        api.download(job["id"], "darcy64")          # resumable, sha256-verified
        x = api.sample(job["id"], 0, format="npy")   # one sample, without the shards

``base_url`` defaults to ``$PDEFORGE_URL`` (else ``http://127.0.0.1:8000``), ``token``
to ``$PDEFORGE_TOKEN``; the token goes out as ``Authorization: Bearer`` to the API's
own origin only -- never to a redirect target such as an S3 presigned URL.

Downloads write each file of the manifest to ``dest_dir/<path>`` through a
``<path>.part`` file: an interrupted download resumes with an HTTP ``Range`` request
(from the start again if the server answers 200 instead of 206), every file is checked
against the manifest's sha256 before it is renamed into place, files already present
with the right sha256 are skipped, and ``manifest.json`` is written last, so a folder
with a ``manifest.json`` holds a complete, verified dataset.

The exception tree::

    PDEForgeError(Exception)                  base of everything raised here
    ├── PDEForgeHTTPError                     non-2xx answer: status, detail, errors (field list)
    ├── PDEForgeConnectionError               the server (or a redirect target) is unreachable
    └── DownloadError                         a downloaded file is not what the manifest says
        └── ChecksumMismatch                  sha256 or size differs (the file was deleted)
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import httpx

from pdeforge.workers.status import TERMINAL

__all__ = [
    "PDEForgeClient", "PDEForgeError", "PDEForgeHTTPError", "PDEForgeConnectionError",
    "DownloadError", "ChecksumMismatch", "TERMINAL", "DEFAULT_URL",
]

DEFAULT_URL = "http://127.0.0.1:8000"
MAX_REDIRECTS = 5
_CHUNK = 1 << 20

#: ``on_progress(path, bytes_done, bytes_total)`` during :meth:`PDEForgeClient.download`
ProgressCallback = Callable[[str, int, int], None]


# ----------------------------------------------------------------------------- errors
class PDEForgeError(Exception):
    """Base class of the client's errors."""


class PDEForgeHTTPError(PDEForgeError):
    """The server answered with a non-2xx status.

    ``detail`` is the server's message; ``errors`` lists field errors as the server sent
    them (``{"field", "value", "message", "allowed"?}`` for 422; for 413 one entry with
    ``field`` and ``limit``); ``body`` is the whole decoded JSON body (or ``None``).
    """

    def __init__(self, status: int, detail: str, errors: list[dict] | None = None, *,
                 method: str = "", url: str = "", body: Any = None) -> None:
        self.status, self.detail, self.errors = status, detail, list(errors or [])
        self.method, self.url, self.body = method, url, body
        super().__init__(f"HTTP {status}: {detail}")


class PDEForgeConnectionError(PDEForgeError):
    """No answer from ``url`` (connection refused, DNS, timeout, connection dropped)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url, self.reason = url, reason
        super().__init__(f"cannot reach {url}: {reason}")


class DownloadError(PDEForgeError):
    """A dataset file could not be downloaded as the manifest describes it."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class ChecksumMismatch(DownloadError):
    """A downloaded file's sha256 (or size) differs from the manifest; it was deleted."""

    def __init__(self, path: str, *, expected: str, actual: str) -> None:
        super().__init__(f"{path}: sha256 {actual} does not match the manifest's {expected}; "
                         "the file was deleted, download again", path=path)
        self.expected, self.actual = expected, actual


def _error_from(response: httpx.Response) -> PDEForgeHTTPError:
    """Parse the API's error body ``{"detail": ..., "errors": [...]}`` (or anything else)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    detail: Any = None
    errors: list = []
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(body.get("errors"), list):
            errors = body["errors"]
        elif "field" in body:  # 413: {"detail", "field", "limit"}
            errors = [{"field": body["field"], "message": detail, "limit": body.get("limit")}]
        if isinstance(detail, list):  # FastAPI's default validation shape, just in case
            errors = errors or [{"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg")}
                                for e in detail if isinstance(e, dict)]
            detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    if not detail:
        text = response.text.strip() if body is None else ""
        detail = text[:500] or response.reason_phrase or "error"
    return PDEForgeHTTPError(response.status_code, str(detail), errors, method=response.request.method,
                             url=str(response.request.url), body=body)


def _same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


def _safe_relative(path: str) -> PurePosixPath:
    rel = PurePosixPath(path)
    if not path or rel.is_absolute() or any(p in ("..", ".", "") for p in path.split("/")) or "\\" in path:
        raise DownloadError(f"manifest lists an unsafe path {path!r}", path=path)
    return rel


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- client
class PDEForgeClient:
    """A thin, synchronous client of the PDEForge API on one :class:`httpx.Client`.

    Every method returns the server's JSON as plain dicts/lists (see the OpenAPI
    schema at ``/docs``) and raises :class:`PDEForgeHTTPError` for a non-2xx answer
    and :class:`PDEForgeConnectionError` when the server cannot be reached.
    ``transport`` is handed to httpx (tests record requests through it).
    """

    def __init__(self, base_url: str | None = None, token: str | None = None, timeout: float = 30, *,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = (base_url or os.environ.get("PDEFORGE_URL") or DEFAULT_URL).rstrip("/")
        self.token = token if token is not None else os.environ.get("PDEFORGE_TOKEN")
        self.token = self.token or None
        self._origin = httpx.URL(self.base_url)
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport,
                                  follow_redirects=False, headers={"User-Agent": "pdeforge-client"})

    # ----- plumbing -------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PDEForgeClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PDEForgeClient({self.base_url!r})"

    def _headers(self, url: httpx.URL, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.token and _same_origin(url, self._origin):  # the token is for the API only
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def _send(self, method: str, url: str | httpx.URL, *, stream: bool = False,
              headers: Mapping[str, str] | None = None, **kwargs) -> httpx.Response:
        request = self._http.build_request(method, url, **kwargs)
        request.headers.update(self._headers(request.url, headers))
        try:
            return self._http.send(request, stream=stream)
        except httpx.TransportError as exc:
            raise PDEForgeConnectionError(str(request.url), _reason(exc)) from exc

    def _call(self, method: str, path: str, **kwargs) -> httpx.Response:
        response = self._send(method, path, **kwargs)
        if not response.is_success:
            raise _error_from(response)
        return response

    def _json(self, method: str, path: str, **kwargs) -> Any:
        return self._call(method, path, **kwargs).json()

    # ----- service --------------------------------------------------------------------------
    def ready(self) -> bool:
        """Whether the service answers ``/readyz`` with 200 (Redis and storage reachable)."""
        try:
            return self._send("GET", "/readyz").status_code == 200
        except PDEForgeConnectionError:
            return False

    def wait_ready(self, timeout: float = 120.0, poll: float = 0.5) -> None:
        """Block until :meth:`ready`; :class:`TimeoutError` after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.base_url} is not ready after {timeout:g} s")
            time.sleep(poll)

    # ----- families -------------------------------------------------------------------------
    def families(self) -> list[dict]:
        """Every PDE family with its parameters (defaults, ranges) and an example spec."""
        return self._json("GET", "/v1/families")

    def family(self, name: str) -> dict:
        """One family's description, parameter schema and example spec."""
        return self._json("GET", f"/v1/families/{quote(name, safe='')}")

    # ----- jobs -----------------------------------------------------------------------------
    def submit(self, spec: Mapping[str, Any] | Any) -> dict:
        """Submit one spec (a dict, or a :class:`pdeforge.workers.spec.JobBase`); returns the job.

        Submitting a spec that was submitted before returns the existing job (the job id
        is a hash of the canonical spec).
        """
        return self._json("POST", "/v1/jobs", json=_spec_json(spec))

    def submit_batch(self, specs: list) -> dict:
        """Submit many specs at once (validated together); returns the batch with its jobs."""
        return self._json("POST", "/v1/batches", json={"specs": [_spec_json(s) for s in specs]})

    def job(self, job_id: str) -> dict:
        """Status, progress, timings and solver summary of one job."""
        return self._json("GET", f"/v1/jobs/{quote(job_id, safe='')}")

    def jobs(self, status: str | None = None, page_size: int = 50) -> Iterator[dict]:
        """All jobs, newest first (optionally only those with ``status``), across all pages."""
        token: str | None = None
        while True:
            params: dict[str, Any] = {"page_size": page_size}
            if status:
                params["status"] = status
            if token:
                params["page_token"] = token
            page = self._json("GET", "/v1/jobs", params=params)
            yield from page["data"]
            token = page.get("next_page_token")
            if not token:
                return

    def cancel(self, job_id: str) -> dict:
        """Cancel a job (finished shards are kept); returns the job."""
        return self._json("POST", f"/v1/jobs/{quote(job_id, safe='')}/cancel")

    def batch(self, batch_id: str) -> dict:
        """Aggregated status of a batch and the status of each of its jobs."""
        return self._json("GET", f"/v1/batches/{quote(batch_id, safe='')}")

    def wait(self, job_id: str, poll: float = 1.0, timeout: float | None = None,
             on_update: Callable[[dict], None] | None = None) -> dict:
        """Poll the job every ``poll`` s until it is succeeded, failed or cancelled; returns it.

        ``on_update(job)`` sees every polled state; :class:`TimeoutError` after ``timeout`` s.
        """
        return self._wait(self.job, job_id, poll, timeout, on_update, "job")

    def wait_batch(self, batch_id: str, poll: float = 1.0, timeout: float | None = None,
                   on_update: Callable[[dict], None] | None = None) -> dict:
        """Like :meth:`wait`, for a batch (terminal once every job is, or one failed/cancelled)."""
        def done(batch: dict) -> bool:
            return all(j["status"] in TERMINAL for j in batch["jobs"])

        return self._wait(self.batch, batch_id, poll, timeout, on_update, "batch", done)

    @staticmethod
    def _wait(get, ident, poll, timeout, on_update, what, done=None) -> dict:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            state = get(ident)
            if on_update is not None:
                on_update(state)
            if (done(state) if done else state["status"] in TERMINAL):
                return state
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{what} {ident} is still {state['status']} after {timeout} s")
                time.sleep(min(poll, left))
            else:
                time.sleep(poll)

    # ----- datasets -------------------------------------------------------------------------
    def manifest(self, dataset_id: str) -> dict:
        """The dataset's manifest: files (path, bytes, sha256), shapes, splits, solver summary."""
        return self._json("GET", f"/v1/datasets/{quote(dataset_id, safe='')}")

    def sample(self, dataset_id: str, index: int, format: str = "json", *, resolution: int | None = None):
        """One sample by global index: a dict (``json``), a NumPy structured array (``npy``,
        fields ``x``, ``y``, ``index``, ``residual``) or the bytes of a PNG preview (``png``);
        ``resolution``: of a paired dataset, which one (the finest by default)."""
        if format not in ("json", "npy", "png"):
            raise ValueError(f"format={format!r}; allowed: 'json', 'npy', 'png'")
        params = {"format": format} if resolution is None else {"format": format, "resolution": int(resolution)}
        response = self._call("GET", f"/v1/datasets/{quote(dataset_id, safe='')}/samples/{int(index)}",
                              params=params)
        if format == "json":
            return response.json()
        if format == "png":
            return response.content
        import numpy as np

        return np.load(io.BytesIO(response.content), allow_pickle=False)

    def file_bytes(self, dataset_id: str, path: str) -> bytes:
        """One (small) file of the dataset, e.g. ``stats.json``."""
        response = self._open(self._file_url(dataset_id, path), {})
        try:
            response.read()
            if not response.is_success:
                raise _error_from(response)
            return response.content
        finally:
            response.close()

    def open_file(self, dataset_id: str, path: str, *, size: int | None = None, block: int = 256 * 1024):
        """A read-only, seekable file over one dataset file, read with HTTP Range requests (h5py can
        open it: only the chunks you read travel).  ``size``: the file's size, if known (else the
        manifest is asked)."""
        from pdeforge.workers.remote import RangeFile

        url = self._file_url(dataset_id, path)
        if size is None:
            entry = next((f for f in self.manifest(dataset_id)["files"] if f["path"] == path), None)
            if entry is None:
                raise DownloadError(f"{path} is not a file of dataset {dataset_id}", path=path)
            size = int(entry["bytes"])

        def read_range(start: int, end: int) -> bytes:
            response = self._open(url, {"Range": f"bytes={start}-{end}"})
            try:
                response.read()
                if response.status_code != 206:
                    raise DownloadError(f"{path}: the server answered {response.status_code} to a Range "
                                        "request (206 expected)", path=path)
                return response.content
            finally:
                response.close()

        return RangeFile(read_range, size, block=block)

    def _file_url(self, dataset_id: str, path: str) -> str:
        return f"/v1/datasets/{quote(dataset_id, safe='')}/files/{quote(path, safe='/')}"

    def download(self, dataset_id: str, dest_dir: str | os.PathLike,
                 on_progress: ProgressCallback | None = None) -> Path:
        """Download every file of the dataset into ``dest_dir`` (see the module doc); returns it.

        ``on_progress(path, bytes_done, bytes_total)`` is called when a file starts
        (``bytes_done`` = bytes already there), after every chunk, and once for a file
        skipped because it is already present and verified.
        """
        manifest = self.manifest(dataset_id)
        dest = Path(dest_dir)
        dest.mkdir(parents=True, exist_ok=True)
        for entry in manifest["files"]:
            self._download_file(dataset_id, entry, dest, on_progress)
        tmp = dest / "manifest.json.part"
        tmp.write_text(_dumps(manifest))
        os.replace(tmp, dest / "manifest.json")  # last: the folder is complete iff it exists
        return dest

    def _download_file(self, dataset_id: str, entry: dict, dest: Path,
                       on_progress: ProgressCallback | None) -> Path:
        path, size, sha = entry["path"], int(entry["bytes"]), entry["sha256"]
        target = dest / _safe_relative(path)
        part = target.with_name(target.name + ".part")
        report = on_progress or (lambda *_: None)
        if target.is_file():
            if target.stat().st_size == size and _sha256(target) == sha:
                report(path, size, size)
                return target
            target.unlink()  # stale or corrupted: fetch it again
        target.parent.mkdir(parents=True, exist_ok=True)
        offset = part.stat().st_size if part.is_file() else 0
        if offset > size:
            part.unlink()
            offset = 0
        if offset < size or size == 0:
            self._fetch(self._file_url(dataset_id, path), part, offset, size, path, report)
        actual = _sha256(part)
        if part.stat().st_size != size or actual != sha:
            part.unlink()
            raise ChecksumMismatch(path, expected=sha, actual=actual)
        os.replace(part, target)
        return target

    def _fetch(self, url: str, part: Path, offset: int, size: int, path: str,
               report: ProgressCallback) -> None:
        """Stream ``url`` into ``part``, appending from ``offset`` when the server honours Range."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        response = self._open(url, headers)
        try:
            if offset and response.status_code == 416:  # the part is not a prefix we can extend
                response.close()
                part.unlink()
                offset, headers = 0, {}
                response = self._open(url, headers)
            if response.status_code == 206 and offset:
                start = _content_range_start(response.headers.get("Content-Range"))
                if start != offset:
                    raise DownloadError(f"{path}: asked for bytes from {offset}, got Content-Range "
                                        f"{response.headers.get('Content-Range')!r}", path=path)
                mode = "ab"
            elif response.status_code == 200:
                offset, mode = 0, "wb"  # no Range support here: start over
            else:
                response.read()
                raise _error_from(response)
            done = offset
            report(path, done, size)
            with open(part, mode) as out:
                try:
                    for chunk in response.iter_bytes(_CHUNK):
                        out.write(chunk)
                        done += len(chunk)
                        report(path, done, size)
                except httpx.TransportError as exc:  # the .part stays: the next call resumes
                    raise PDEForgeConnectionError(str(response.request.url), _reason(exc)) from exc
        finally:
            response.close()

    def _open(self, url: str | httpx.URL, headers: dict[str, str]) -> httpx.Response:
        """GET ``url`` as a stream, following redirects by hand so that the bearer token
        is only ever sent to the API's origin (not to e.g. a presigned S3 URL)."""
        for _ in range(MAX_REDIRECTS + 1):
            response = self._send("GET", url, stream=True, headers=headers)
            if not (response.is_redirect and "Location" in response.headers):
                return response
            url = response.request.url.join(response.headers["Location"])
            response.close()
        raise PDEForgeConnectionError(str(url), f"more than {MAX_REDIRECTS} redirects")


# ----------------------------------------------------------------------------- helpers
def _spec_json(spec) -> Any:
    if hasattr(spec, "model_dump"):
        return spec.model_dump(mode="json")
    return spec


def _dumps(obj) -> str:
    import json

    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def _content_range_start(value: str | None) -> int | None:
    # "bytes 100-199/200"
    try:
        unit, rest = value.split(" ", 1)  # type: ignore[union-attr]
        return int(rest.split("-", 1)[0]) if unit == "bytes" else None
    except (AttributeError, ValueError):
        return None


def _reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return f"connection failed ({exc})" if str(exc) else "connection failed"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}"
