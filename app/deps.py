"""FastAPI dependencies (``Annotated`` aliases) and bearer-token auth."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pdeforge.workers.config import Settings
from pdeforge.workers.jobs import JobService
from pdeforge.workers.storage import Storage


def app_settings(request: Request) -> Settings:
    """The settings the app was built with (not re-read from the environment)."""
    return request.app.state.settings


def get_service(request: Request) -> JobService:
    return request.app.state.service


def get_storage(request: Request) -> Storage:
    return request.app.state.service.storage


SettingsDep = Annotated[Settings, Depends(app_settings)]
ServiceDep = Annotated[JobService, Depends(get_service)]
StorageDep = Annotated[Storage, Depends(get_storage)]

_bearer = HTTPBearer(auto_error=False)


def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """401 without a bearer token, 403 with a wrong one (only when tokens are configured)."""
    tokens: list[str] = request.app.state.tokens
    if not tokens:
        return
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing bearer token",
                            headers={"WWW-Authenticate": "Bearer"})
    given = credentials.credentials.encode()
    if not any(hmac.compare_digest(given, t.encode()) for t in tokens):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid token")
