"""The web page at ``/``: the caller's jobs with live progress and a preview grid of a dataset.

Plain files from ``app/static`` (no build step); the page follows ``GET /v1/events`` and reads
``/v1/datasets/...`` with the session cookie.  Nothing is loaded from elsewhere, and the
Content-Security-Policy says so.  With tokens configured, a visitor without a valid session
cookie is sent to the login form (``/login?next=/``), which comes back here.
"""

from __future__ import annotations

from html import escape
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from pdeforge.workers.principals import ANONYMOUS

from ..auth import SESSION_COOKIE

router = APIRouter(include_in_schema=False)

STATIC = Path(__file__).resolve().parent.parent / "static"
#: the files the page loads (name -> media type); nothing else is served from ``static``
ASSETS = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8",
          "favicon.svg": "image/svg+xml"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
LOGIN = "/login?next=/"


@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> Response:
    """The jobs page (with tokens configured: only with a valid session cookie, else the login form)."""
    auth = request.app.state.auth
    principal = ANONYMOUS
    if auth.enabled:
        cookie = request.cookies.get(SESSION_COOKIE)
        principal = auth.from_session(cookie) if cookie else None
        if principal is None:
            return RedirectResponse(LOGIN, status_code=303, headers={"Cache-Control": "no-store"})
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    page = page.replace("{principal}", escape(principal.name)).replace("{auth}", "on" if auth.enabled else "off")
    return HTMLResponse(page, headers={**SECURITY_HEADERS, "Cache-Control": "no-store"})


@router.get("/static/{name}")
def asset(name: str) -> FileResponse:
    """A file of the page (``ASSETS`` only)."""
    if name not in ASSETS:
        raise HTTPException(404, f"no file {name!r}")
    return FileResponse(STATIC / name, media_type=ASSETS[name],
                        headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})
