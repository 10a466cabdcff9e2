"""Authentication before anything else: an ASGI middleware in front of the app.

Every ``/v1`` route needs a principal when tokens are configured: ``Authorization: Bearer
<token>`` or the ``pdeforge_session`` cookie (HttpOnly, SameSite=Strict, short-lived,
HMAC-signed; set by ``POST /v1/session`` from a token, e.g. by the login form at
``/login``), so browser pages with server-sent events and images work too.  The check runs
here, before the request body is read or parsed: a caller without a valid credential gets
401 (none, or an expired / forged cookie) or 403 (a wrong token), never a 422 about its
body.  Health routes, the OpenAPI document and the login routes stay open.

The principal is put in ``scope["state"]["principal"]`` (``request.state.principal``);
with no token configured every caller is :data:`~pdeforge.workers.principals.ANONYMOUS`.
"""

from __future__ import annotations

import hmac

from pdeforge.workers.principals import ANONYMOUS, Principal, verify_session

from .errors import problem

SESSION_COOKIE = "pdeforge_session"
#: open routes under /v1 (method, path)
OPEN = {("POST", "/v1/session"), ("DELETE", "/v1/session")}


class Authenticator:
    """Token and session-cookie checks over the configured principals."""

    def __init__(self, principals: dict[str, Principal], session_key: bytes) -> None:
        self.principals = principals
        self.by_name = {p.name: p for p in principals.values()}
        self.session_key = session_key

    @property
    def enabled(self) -> bool:
        return bool(self.principals)

    def from_token(self, token: str) -> Principal | None:
        found = None
        for known, principal in self.principals.items():  # compare with every token: constant time per call
            if hmac.compare_digest(token.encode(), known.encode()):
                found = principal
        return found

    def from_session(self, value: str) -> Principal | None:
        name = verify_session(value, self.session_key)
        return None if name is None else self.by_name.get(name)


def _cookie(headers: dict[bytes, bytes], name: str) -> str | None:
    raw = headers.get(b"cookie")
    if not raw:
        return None
    for part in raw.decode("latin-1").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


class AuthMiddleware:
    """ASGI middleware: resolve the principal of ``/v1`` requests or answer 401 / 403 at once."""

    def __init__(self, app, auth: Authenticator) -> None:
        self.app, self.auth = app, auth

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        state = scope.setdefault("state", {})
        state["principal"] = ANONYMOUS
        path = scope.get("path", "")
        if self.auth.enabled and (path == "/v1" or path.startswith("/v1/")) \
                and (scope.get("method"), path) not in OPEN:
            principal, failure = self._resolve(dict(scope.get("headers") or []))
            if principal is None:
                return await failure(scope, receive, send)
            state["principal"] = principal
        return await self.app(scope, receive, send)

    def _resolve(self, headers: dict[bytes, bytes]):
        authorization = headers.get(b"authorization")
        if authorization is not None:
            scheme, _, token = authorization.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                principal = self.auth.from_token(token.strip())
                if principal is not None:
                    return principal, None
                return None, problem(403, "forbidden", "invalid token")
        cookie = _cookie(headers, SESSION_COOKIE)
        if cookie is not None:
            principal = self.auth.from_session(cookie)
            if principal is not None:
                return principal, None
            return None, problem(401, "unauthorized", "session expired or invalid; log in again",
                                  {"WWW-Authenticate": "Bearer"})
        return None, problem(401, "unauthorized", "missing bearer token",
                              {"WWW-Authenticate": "Bearer"})
