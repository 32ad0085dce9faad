"""HTML pages: one template per page, one JS file per page, a login page when a token is set."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from ..settings import PROJECT_ROOT
from .app import get_ctx
from .auth import COOKIE, session_value

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
    ctx = get_ctx(request)
    model = ctx.engine.status()
    return templates.TemplateResponse(
        request,
        template,
        {"pages": PAGES, "page": page, "model": model, "auth": bool(ctx.settings.auth_token), **extra},
    )


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


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/", error: str = "") -> HTMLResponse:
    return templates.TemplateResponse(
        request, "login.html", {"next": _safe_next(next), "error": error, "pages": [], "page": "login"}
    )


@router.post("/login")
def login(request: Request, token: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/") -> Response:
    expected = get_ctx(request).settings.auth_token
    if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        return templates.TemplateResponse(
            request,
            "login.html",
            {"next": _safe_next(next), "error": "Wrong token.", "pages": [], "page": "login"},
            status_code=401,
        )
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(COOKIE, session_value(expected), httponly=True, samesite="strict", max_age=30 * 86400)
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


def _safe_next(target: str) -> str:
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"
