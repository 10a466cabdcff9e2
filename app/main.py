"""The FastAPI application: ``uvicorn pdeforge.app.main:app`` (settings from ``PDEFORGE_*``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from fastapi import Depends, FastAPI

from pdeforge.solvers import __version__
from pdeforge.workers.config import Settings, get_settings
from pdeforge.workers.jobs import JobService
from pdeforge.workers.services import make_storage, make_store

from . import errors
from .auth import AuthMiddleware, Authenticator
from .deps import require_dataset_access
from .errors import problem
from .openapi import contract
from .routers import batches, datasets, events, families, health, jobs, session, ui

DESCRIPTION = """Submit PDE dataset specs, follow their progress and download the results.

A job's id is the id of the dataset it produces (a hash of the canonical spec), so the
same spec always names the same dataset. Every stored sample carries its true residual
``||b - A x|| / ||b||``, recomputed after solving."""


class BodyGuard:
    """ASGI middleware: 413 for request bodies over ``limit`` bytes (declared or streamed), 408 for
    bodies that do not arrive within ``timeout`` seconds (slow, stalled, or promised by a
    ``Content-Length`` and never sent), so no client holds a connection open for long.

    The body is read here, before the app runs (at most ``limit`` bytes are kept), and then
    replayed: a limit raised from inside the app's ``receive()`` would reach FastAPI's body
    parser, which answers any error while reading with 400.
    """

    def __init__(self, app, limit: int, timeout: float) -> None:
        self.app, self.limit, self.timeout = app, limit, timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._reject(send, 413, "limit_exceeded",
                                      f"request body too large; the limit is {self.limit} bytes")
        chunks, seen = [], 0
        deadline = asyncio.get_running_loop().time() + self.timeout
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - asyncio.get_running_loop().time()))
            except asyncio.TimeoutError:
                return await self._reject(send, 408, "request_timeout",
                                          f"request body not received within {self.timeout:g} s")
            if message["type"] != "http.request":
                return  # the client went away: nobody to answer
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.limit:
                return await self._reject(send, 413, "limit_exceeded",
                                          f"request body too large; the limit is {self.limit} bytes")
            if not message.get("more_body", False):
                break
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        async def replay():
            nonlocal body
            if body is not None:
                message, body = body, None
                return message
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, send, status: int, code: str, message: str):
        response = problem(status, code, message, headers={"Connection": "close"})
        await response({"type": "http"}, None, send)


def create_app(settings: Settings | None = None, *, enqueue: Callable[..., None] | None = None) -> FastAPI:
    settings = settings or get_settings()
    if enqueue is None:
        from pdeforge.workers.tasks import enqueue
    app = FastAPI(title="PDEForge", version=__version__, description=DESCRIPTION)
    app.state.settings = settings
    app.state.auth = Authenticator(settings.principals(), settings.session_key())
    app.state.service = JobService(make_store(settings), make_storage(settings), enqueue, settings)
    errors.install(app)
    for module in (families, jobs, batches, events):
        app.include_router(module.router)
    app.include_router(datasets.router, dependencies=[Depends(require_dataset_access)])
    app.include_router(session.router)
    app.include_router(health.router)
    app.include_router(ui.router)
    # the outermost middleware runs first: authentication, then the body guard, then the app
    app.add_middleware(BodyGuard, limit=settings.max_body_bytes, timeout=settings.body_timeout)
    app.add_middleware(AuthMiddleware, auth=app.state.auth)
    app.openapi = lambda: contract(app, settings)  # type: ignore[method-assign]
    logging.getLogger("pdeforge").setLevel(logging.INFO)
    return app


def __getattr__(name: str):
    # `uvicorn pdeforge.app.main:app` builds the app lazily so importing this module has no side effects
    if name == "app":
        return create_app()
    raise AttributeError(name)
