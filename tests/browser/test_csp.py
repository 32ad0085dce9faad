"""The pages work under their own Content-Security-Policy (no inline script, no eval), and every resource
they ask for is served (no 404 in the console, the favicon included)."""

from __future__ import annotations

import httpx
import pytest

from ..conftest import LiveServer
from ..helpers import class_image

pytestmark = pytest.mark.browser


def test_pages_run_under_their_csp(browser, live_server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    httpx.post(live_server.url + "/api/groups", json={"name": "red"})
    files = [("files", ("r.png", class_image("red", 1), "image/png"))]
    httpx.post(live_server.url + "/api/groups/red/images", files=files)
    context = browser.new_context(viewport={"width": 1280, "height": 800})  # CSP enforced
    page = context.new_page()
    problems: list[str] = []
    # A CSP violation, or a resource the page asks for and does not get (the favicon was one).
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    try:
        for path, ready in [
            ("/", "#grid .tile"),
            ("/learning", "#params"),
            ("/analysis", "body"),
            ("/anomalies", "#type"),
        ]:
            page.goto(live_server.url + path)
            page.wait_for_selector(ready)
            page.wait_for_load_state("networkidle")
    finally:
        context.close()
    assert not problems, problems
