"""The FastAPI application: ``uvicorn pdeforge.app.main:app`` (settings from ``PDEFORGE_*``)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse

from pdeforge.solvers import __version__
from pdeforge.workers.config import Settings, get_settings
from pdeforge.workers.jobs import JobService
from pdeforge.workers.services import make_storage, make_store

from . import errors
from .deps import require_token
from .routers import batches, datasets, families, health, jobs

DESCRIPTION = """Submit PDE dataset specs, follow their progress and download the results.

A job's id is the id of the dataset it produces (a hash of the canonical spec), so the
same spec always names the same dataset. Every stored sample carries its true residual
``||b - A x|| / ||b||``, recomputed after solving."""


class BodySizeLimit:
    """ASGI middleware: 413 for request bodies over ``limit`` bytes (declared or streamed).

    The body is read here, before the app runs (at most ``limit`` bytes are kept), and then
    replayed: a limit raised from inside the app's ``receive()`` would reach FastAPI's body
    parser, which answers any error while reading with 400.
    """

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._reject(send)
        chunks, seen = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away: nobody to answer
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.limit:
                return await self._reject(send)
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

    async def _reject(self, send):
        response = JSONResponse({"detail": f"request body too large; the limit is {self.limit} bytes"},
                                status_code=413)
        await response({"type": "http"}, None, send)


def create_app(settings: Settings | None = None, *, enqueue: Callable[..., None] | None = None) -> FastAPI:
    settings = settings or get_settings()
    if enqueue is None:
        from pdeforge.workers.tasks import enqueue
    app = FastAPI(title="PDEForge", version=__version__, description=DESCRIPTION)
    app.state.settings = settings
    app.state.tokens = settings.tokens()
    app.state.service = JobService(make_store(settings), make_storage(settings), enqueue)
    errors.install(app)
    auth = [Depends(require_token)]
    for module in (families, jobs, batches, datasets):
        app.include_router(module.router, dependencies=auth)
    app.include_router(health.router)
    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes)
    logging.getLogger("pdeforge").setLevel(logging.INFO)
    return app


def __getattr__(name: str):
    # `uvicorn pdeforge.app.main:app` builds the app lazily so importing this module has no side effects
    if name == "app":
        return create_app()
    raise AttributeError(name)
