"""Browser sessions: a login form and a short-lived HttpOnly cookie accepted wherever a bearer token is.

``POST /v1/session`` takes a token (JSON ``{"token": ...}`` or the login form's
``application/x-www-form-urlencoded`` body) and sets ``pdeforge_session`` (HttpOnly,
SameSite=Strict, ``Secure`` over HTTPS, ``PDEFORGE_SESSION_SECONDS`` long); web pages with
server-sent events and images then need no Authorization header.  ``DELETE`` logs out.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from html import escape
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from pdeforge.workers.principals import ANONYMOUS, sign_session

from ..auth import SESSION_COOKIE
from ..deps import SettingsDep
from ..schemas import SessionCreate, SessionPublic

router = APIRouter(tags=["session"])

LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>PDEForge login</title><link rel="stylesheet" href="/static/style.css"></head>
<body><main class="login"><section><h1>PDEForge</h1>
<form method="post" action="/v1/session">
<label>API token <input type="password" name="token" autocomplete="current-password" required></label>
<input type="hidden" name="next" value="{next}">
<button type="submit">Log in</button>
</form></section></main></body></html>
"""


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_form(next: str = "/docs") -> str:
    """A login form posting a token to ``/v1/session``."""
    return LOGIN_PAGE.format(next=escape(next if next.startswith("/") and not next.startswith("//") else "/docs"))


async def _read_token(request: Request, limit: int = 8192) -> tuple[str, str | None]:
    body = await request.body()
    if len(body) > limit:
        raise HTTPException(413, f"login body too large; the limit is {limit} bytes")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if kind == "application/x-www-form-urlencoded":
            form = parse_qs(body.decode(), max_num_fields=4)
            return (form.get("token") or [""])[0], (form.get("next") or [None])[0]
        return SessionCreate.model_validate(json.loads(body or b"{}")).token, None
    except (ValueError, UnicodeDecodeError):
        raise HTTPException(422, "send {\"token\": ...} as JSON or the login form") from None


@router.post("/v1/session", response_model=SessionPublic,
             responses={303: {"description": "form login with a `next` page: redirect there"},
                        401: {"description": "unknown token"}})
async def create_session(request: Request, response: Response, settings: SettingsDep):
    """Exchange a token for a short-lived HttpOnly session cookie (login)."""
    auth = request.app.state.auth
    token, next_page = await _read_token(request)
    principal = auth.from_token(token) if auth.enabled else ANONYMOUS
    if principal is None:
        raise HTTPException(401, "unknown token", headers={"WWW-Authenticate": "Bearer"})
    expires = time.time() + settings.session_seconds
    body = SessionPublic(principal=principal.name, admin=principal.admin,
                         expires=datetime.fromtimestamp(expires, timezone.utc).isoformat(timespec="seconds"))
    if next_page and next_page.startswith("/") and not next_page.startswith("//"):
        response = RedirectResponse(next_page, status_code=303)
    else:
        response = Response(body.model_dump_json(), media_type="application/json")
    if auth.enabled:
        response.set_cookie(SESSION_COOKIE, sign_session(principal.name, expires, auth.session_key),
                            max_age=settings.session_seconds, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https", path="/")
    return response


@router.delete("/v1/session", status_code=204)
def delete_session() -> Response:
    """Log out: the session cookie is cleared."""
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response
