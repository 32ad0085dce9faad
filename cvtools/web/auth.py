"""Who may talk to the app. With a token: a Bearer header for systems, a random session cookie
(HttpOnly, SameSite=Strict, revoked at log-out) for browsers. Always: state-changing requests from
another site's page are refused (Origin / Sec-Fetch-Site), and on loopback only requests addressed to
this computer's own names are answered (DNS rebinding would otherwise hand any website the app)."""

from __future__ import annotations

import hmac
import json
import secrets
import threading
import time
from collections import deque
from urllib.parse import quote

from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE = "cvtools_session"
OPEN_PATHS = ("/login", "/static/", "/favicon.ico")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
SESSION_DAYS = 30


class Sessions:
    """Random session ids known to this process; log-out revokes one, a restart revokes all."""

    def __init__(self) -> None:
        self._ids: dict[str, float] = {}
        self._lock = threading.Lock()

    def new(self) -> str:
        value = secrets.token_urlsafe(32)
        with self._lock:
            now = time.time()
            self._ids = {k: v for k, v in self._ids.items() if v > now}
            self._ids[value] = now + SESSION_DAYS * 86400
        return value

    def valid(self, value: str | None) -> bool:
        with self._lock:
            expires = self._ids.get(value or "")
        return expires is not None and expires > time.time()

    def revoke(self, value: str | None) -> None:
        with self._lock:
            self._ids.pop(value or "", None)


class LoginThrottle:
    """At most MAX_FAILURES wrong tokens per client address in WINDOW_S seconds."""

    MAX_FAILURES = 5
    WINDOW_S = 60.0

    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str) -> deque[float]:
        now = time.monotonic()
        q = self._failures.setdefault(client, deque())
        while q and q[0] < now - self.WINDOW_S:
            q.popleft()
        return q

    def wait_s(self, client: str) -> float:
        """Seconds until this client may try again (0: now)."""
        with self._lock:
            q = self._recent(client)
            return 0.0 if len(q) < self.MAX_FAILURES else max(0.0, q[0] + self.WINDOW_S - time.monotonic())

    def failed(self, client: str) -> None:
        with self._lock:
            self._recent(client).append(time.monotonic())


def host_name(header: str) -> str:
    """'localhost:8000' -> 'localhost', '[::1]:8000' -> '::1'."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def cookie_value(header: str, name: str = COOKIE) -> str | None:
    for part in header.split(";"):
        k, _, v = part.strip().partition("=")
        if k == name:
            return v
    return None


def same_origin(headers: dict[str, str]) -> bool:
    origin = headers.get("origin")
    if origin is None:
        # No Origin: a client that is not a browser (curl), or a browser saying where the request came from.
        return headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")
    return origin.split("://", 1)[-1].lower() == headers.get("host", "").lower()


class AuthMiddleware:
    def __init__(self, app: ASGIApp, *, token: str, sessions: Sessions, hosts: set[str] | None) -> None:
        """`hosts`: the names a request may be addressed to; None when bound to a public address (the
        names it is reached by are not known; the token protects it)."""
        self.app = app
        self.token = token
        self.sessions = sessions
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        if self.hosts is not None and host_name(headers.get("host", "")) not in self.hosts:
            await _json(send, 421, "this server answers only requests addressed to localhost or 127.0.0.1")
            return
        if scope["method"] not in SAFE_METHODS and not same_origin(headers):
            await _json(send, 403, "cross-site request refused")
            return
        if not self.token or scope["path"].startswith(OPEN_PATHS) or self._authenticated(headers):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if (
            scope["method"] == "GET"
            and "text/html" in headers.get("accept", "")
            and not path.startswith(("/api/", "/cv"))
        ):
            target = path + ("?" + scope["query_string"].decode("latin-1") if scope.get("query_string") else "")
            await send(
                {
                    "type": "http.response.start",
                    "status": 303,
                    "headers": [(b"location", f"/login?next={quote(target, safe='')}".encode())],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        await _json(send, 401, "authentication required: send 'Authorization: Bearer <token>' or log in")

    def _authenticated(self, headers: dict[str, str]) -> bool:
        bearer = headers.get("authorization", "")
        if bearer.lower().startswith("bearer ") and hmac.compare_digest(
            bearer[7:].strip().encode(), self.token.encode()
        ):
            return True
        return self.sessions.valid(cookie_value(headers.get("cookie", "")))


async def _json(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
