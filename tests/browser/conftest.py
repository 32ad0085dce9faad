from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from cvtools.settings import PROJECT_ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = PROJECT_ROOT / "docs" / "screenshots"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser):  # type: ignore[no-untyped-def]
    # Playwright's wait_for_function evaluates strings, which the pages' CSP (script-src 'self') forbids;
    # the CSP itself is checked in test_security and, enforced, in test_csp.
    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    found = list(errors)
    context.close()
    assert not found, f"JavaScript errors: {found}"


def screenshot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")  # the sticky top bar would otherwise sit mid-picture
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def seed_and_train(url: str, per_class: int, epochs: int = 15) -> str:
    """Three visually distinct groups over HTTP, a head run trained and set as main; returns the run."""
    import time

    import httpx

    from ..helpers import class_image

    for cls in ("red", "green", "blue"):
        httpx.post(url + "/api/groups", json={"name": cls})
        files = [("files", (f"{cls}{i}.png", class_image(cls, i), "image/png")) for i in range(per_class)]
        httpx.post(f"{url}/api/groups/{cls}/images", files=files, timeout=60)
    r = httpx.post(url + "/api/train", json={"mode": "head", "params": {"epochs": epochs}}).json()
    deadline = time.monotonic() + 120
    while httpx.get(f"{url}/api/jobs/{r['job']}").json()["state"] != "done":
        assert time.monotonic() < deadline, "training did not finish"
        time.sleep(0.1)
    httpx.post(url + "/api/models/promote", json={"run": r["run"], "build_index": False})
    return str(r["run"])
