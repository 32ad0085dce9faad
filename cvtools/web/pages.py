"""HTML pages: one template per page, one JS file per page, a login page when a token is set."""

from __future__ import annotations

import asyncio
import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from ..schemas import Event
from ..settings import PROJECT_ROOT
from .auth import COOKIE, SESSION_DAYS, cookie_value
from .deps import get_services

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(PROJECT_ROOT / "templates"))

# (endpoint name, path, menu title); the menu lists only these.
PAGES = [
    ("dataset", "/", "Dataset"),
    ("learning", "/learning", "Learning"),
    ("analysis", "/analysis", "Image analysis"),
    ("anomalies", "/anomalies", "Anomalies"),
]


def render(request: Request, template: str, page: str, **extra: Any) -> HTMLResponse:
    sv = get_services(request)
    context = {
        "pages": PAGES,
        "page": page,
        "model": sv.models.status(),
        "auth": bool(sv.settings.auth_token),
        "events": " ".join(e.value for e in Event),  # common.js subscribes to exactly these
        **extra,
    }
    return templates.TemplateResponse(request, template, context)


@router.get("/", response_class=HTMLResponse)
def dataset_page(request: Request) -> HTMLResponse:
    return render(request, "dataset.html", "dataset")


@router.get("/learning", response_class=HTMLResponse)
def learning_page(request: Request) -> HTMLResponse:
    return render(request, "learning.html", "learning")


@router.get("/analysis", response_class=HTMLResponse)
def analysis_page(request: Request) -> HTMLResponse:
    return render(request, "analysis.html", "analysis")


@router.get("/anomalies", response_class=HTMLResponse)
def anomalies_page(request: Request) -> HTMLResponse:
    return render(request, "anomalies.html", "anomalies")


@router.get("/favicon.ico", response_class=FileResponse)
def favicon() -> FileResponse:
    """Browsers ask for it on every page; an SVG is served under the name they ask for."""
    return FileResponse(
        PROJECT_ROOT / "static" / "img" / "favicon.svg",
        media_type="image/svg+xml",
        headers={"Cache-Control": "public, max-age=86400"},
    )


# What /login?error=<code> may say: codes, never free text from the address bar.
LOGIN_ERRORS = {
    "wrong": "Wrong token.",
    "throttled": "Too many wrong tokens; wait a minute and try again.",
    "expired": "Your session has ended; log in again.",
}
FAILED_LOGIN_DELAY_S = 1.0


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/", error: str = "") -> HTMLResponse:
    return _login_form(request, next, error, 200)


def _login_form(request: Request, next: str, error: str, status: int) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        "login.html",
        {"next": _safe_next(next), "error": LOGIN_ERRORS.get(error, ""), "pages": [], "page": "login", "events": ""},
        status_code=status,
    )


@router.post("/login")
async def login(request: Request, token: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/") -> Response:
    state = request.app.state
    expected = get_services(request).settings.auth_token
    client = request.client.host if request.client else "?"
    if state.login_throttle.wait_s(client) > 0:
        return _login_form(request, next, "throttled", 429)
    if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        state.login_throttle.failed(client)
        await asyncio.sleep(FAILED_LOGIN_DELAY_S)  # guessing costs time; the event loop stays free
        return _login_form(request, next, "wrong", 401)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(COOKIE, state.sessions.new(), httponly=True, samesite="strict", max_age=SESSION_DAYS * 86400)
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    request.app.state.sessions.revoke(cookie_value(request.headers.get("cookie", "")))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


def _safe_next(target: str) -> str:
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"
