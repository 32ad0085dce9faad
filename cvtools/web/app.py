"""create_app(settings): the one FastAPI process, its lifespan, error mapping and middleware."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import ClassVar

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..dataset.journal import storage_message
from ..services import build_services
from ..settings import PROJECT_ROOT, Settings, is_loopback
from . import api_analysis, api_cv, api_dataset, api_grab, api_jobs, api_learning, pages
from .auth import LOOPBACK_NAMES, AuthMiddleware, LoginThrottle, Sessions
from .events import EventHub
from .handlers import install_json_errors

log = logging.getLogger(__name__)
ROUTERS = [
    pages.router,
    api_dataset.router,
    api_grab.router,
    api_jobs.router,
    api_learning.router,
    api_cv.router,
    api_analysis.router,
]


JSON_LIMIT = 8 * 1024 * 1024  # bytes; 100,000 image ids fit in 2 MB
BODY_IDLE_TIMEOUT_S = 30.0  # a request body that stops arriving for this long is abandoned (408)


class RequestLimitsMiddleware:
    """413 for a body over max_upload_mb (JSON bodies: JSON_LIMIT), by Content-Length before reading or
    while streaming; 408 for a body that stalls. A 60 MB JSON body is refused before it is parsed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        json_body = headers.get(b"content-type", b"").split(b";")[0].strip().endswith(b"json")
        limit = min(self.limit, JSON_LIMIT) if json_body else self.limit
        too_large = f"request body too large ({limit // (1024 * 1024)} MB at most)"
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > limit:
            await JSONResponse({"detail": too_large}, 413)(scope, receive, send)
            return
        seen, complete = 0, False

        async def limited() -> Message:
            nonlocal seen, complete
            if complete:  # after the body only the disconnect can come (a stream waits for it for hours)
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), BODY_IDLE_TIMEOUT_S)
            except TimeoutError:
                raise HTTPException(408, f"the request body stopped arriving for {BODY_IDLE_TIMEOUT_S:g} s") from None
            complete = message.get("type") != "http.request" or not message.get("more_body", False)
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, too_large)
            return message

        await self.app(scope, limited, send)


class SecurityHeadersMiddleware:
    HEADERS: ClassVar[list[tuple[bytes, bytes]]] = [
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
    ]

    # Pages run only our own scripts: an injected <script> or onerror= would not execute. Inline
    # style attributes stay allowed (the tree indent and the probability bars are set that way).
    CSP = (
        b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
        b"connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # FastAPI's own /docs page loads its viewer from a CDN; it keeps its defaults.
        csp = not scope.get("path", "").startswith(("/docs", "/redoc"))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", [])) + self.HEADERS
                html = any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers)
                if csp and html:
                    headers.append((b"content-security-policy", self.CSP))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers if scope["type"] == "http" else send)


def _install_error_handlers(app: FastAPI) -> None:
    """The shared JSON errors, then the app's own two: a later handler for a class replaces the earlier."""
    install_json_errors(app)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            # Starlette names only the first route of the path; the answer lists every method it has.
            headers["Allow"] = ", ".join(_allowed_methods(request, headers.get("Allow", "")))
        return JSONResponse({"detail": str(exc.detail)}, exc.status_code, headers=headers or None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        if isinstance(exc, OSError):
            return JSONResponse({"detail": storage_message(exc, what="the request")}, 507)
        return JSONResponse({"detail": "internal error; the server log has the details"}, 500)


def _allowed_methods(request: Request, fallback: str) -> list[str]:
    """The methods the OpenAPI document lists for the requested path. Group names contain slashes,
    so a parameter may span segments; of the templates that match, the most literal one wins (as
    /api/images/status over /api/images/{image_id})."""
    import re

    patterns = getattr(request.app.state, "allow_patterns", None)
    if patterns is None:
        patterns = []
        for template, ops in request.app.openapi().get("paths", {}).items():
            rx = re.sub(r"\\{[^}]+\\}", ".+", re.escape(template))
            literal = len(re.sub(r"{[^}]+}", "", template))
            patterns.append((re.compile(f"^{rx}$"), literal, {m.upper() for m in ops}))
        request.app.state.allow_patterns = patterns
    hits = [(literal, ms) for rx, literal, ms in patterns if rx.match(request.url.path)]
    if not hits:
        return [m.strip() for m in fallback.split(",") if m.strip()]
    best = max(literal for literal, _ in hits)
    return sorted({m for literal, ms in hits if literal == best for m in ms})


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        events = EventHub()
        events.bind(asyncio.get_running_loop())
        sv = await asyncio.to_thread(build_services, settings, events.publish)
        app.state.services, app.state.events = sv, events
        sv.jobs.submit(
            "rescan", lambda job: sv.dataset.rescan(job.progress, lambda: job.cancelled), message="Scanning folders"
        )
        if settings.preload_model:
            sv.jobs.submit("load", lambda job: sv.models.warm_up(), message="Loading the network")
        try:
            yield
        finally:
            events.close()
            await asyncio.to_thread(sv.close)

    app = FastAPI(
        title="CV Tools",
        version="1",
        description="Build an image classifier end to end and serve it over REST. See docs/API.md.",
        lifespan=lifespan,
    )
    _install_error_handlers(app)
    app.add_middleware(RequestLimitsMiddleware, limit=settings.max_upload_bytes)
    app.state.sessions, app.state.login_throttle = Sessions(), LoginThrottle()
    hosts = {*LOOPBACK_NAMES, settings.host.lower()} if is_loopback(settings.host) else None
    app.add_middleware(AuthMiddleware, token=settings.auth_token, sessions=app.state.sessions, hosts=hosts)
    app.add_middleware(SecurityHeadersMiddleware)
    app.mount("/static", StaticFiles(directory=Path(PROJECT_ROOT / "static")), name="static")
    for router in ROUTERS:
        app.include_router(router)
    return app
