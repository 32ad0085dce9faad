"""Token access: Bearer header for systems, an HttpOnly SameSite=Strict cookie for browsers."""

from __future__ import annotations

import hashlib
import hmac
import json
from urllib.parse import quote

from starlette.types import ASGIApp, Receive, Scope, Send

COOKIE = "cvtools_session"
OPEN_PATHS = ("/login", "/static/", "/favicon.ico")


def session_value(token: str) -> str:
    return hmac.new(token.encode(), b"cvtools-session-v1", hashlib.sha256).hexdigest()


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        k, _, v = part.strip().partition("=")
        if k == name:
            return v
    return None


class AuthMiddleware:
    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token
        self.session = session_value(token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.token or scope["path"].startswith(OPEN_PATHS):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        bearer = headers.get("authorization", "")
        if bearer.lower().startswith("bearer ") and hmac.compare_digest(
            bearer[7:].strip().encode(), self.token.encode()
        ):
            await self.app(scope, receive, send)
            return
        cookie = _cookie(headers.get("cookie", ""), COOKIE)
        if cookie and hmac.compare_digest(cookie.encode(), self.session.encode()):
            if scope["method"] not in ("GET", "HEAD", "OPTIONS") and not _same_origin(headers):
                await _json(send, 403, "cross-site request refused")
                return
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


def _same_origin(headers: dict[str, str]) -> bool:
    origin = headers.get("origin")
    if origin is None:
        return headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")
    host = headers.get("host", "")
    return origin.split("://", 1)[-1] == host


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
