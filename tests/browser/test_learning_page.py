"""The Learning page's journey: parameters, Start learning, live epochs, confusion matrix, Set trained as main."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

from ..conftest import LiveServer
from ..helpers import class_image
from .conftest import screenshot

pytestmark = pytest.mark.browser


def test_learning_journey(page, tiny_live_server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    url = tiny_live_server.url
    for cls in ("red", "green", "blue"):
        httpx.post(url + "/api/groups", json={"name": cls})
        files = [("files", (f"{cls}{i}.png", class_image(cls, i), "image/png")) for i in range(10)]
        httpx.post(f"{url}/api/groups/{cls}/images", files=files, timeout=60)
    page.goto(url + "/learning")
    expect(page.locator("#no-models")).to_be_visible()
    page.select_option("#mode", "head")
    page.fill('[data-param="epochs"]', "12")
    page.click("#btn-start")
    expect(page.locator("#run-state")).to_have_text("done", timeout=120_000)
    expect(page.locator("#epochs-table tbody tr")).to_have_count(12)
    expect(page.locator("#confusion-block")).to_be_visible()
    expect(page.locator("#confusion thead th").last).to_have_text("unknown below")
    assert page.locator("#confusion tbody tr >> nth=0 >> td").last.inner_text() != "–"  # calibrated threshold
    page.click("#confusion td.diag >> nth=0")
    expect(page.locator("#cell-images .tile").first).to_be_visible()
    screenshot(page, "learning")

    page.click("#btn-promote")
    page.click("#promote-ok")
    expect(page.locator("#models-table .badge")).to_have_text("main")
    run = page.inner_text("#run-id")
    assert httpx.get(url + "/api/models").json()["production"] == run
    expect(page.locator("#model-badge")).to_contain_text("Model:")

    # An invalid parameter shows the server's reason.
    page.fill('[data-param="epochs"]', "0")
    page.click("#btn-start")
    expect(page.locator("#toast")).to_contain_text("epochs")


def test_epochs_table_fills_in_while_the_run_is_running(page, tiny_live_server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    """The Epochs table gains rows during the run (the server's per-epoch `run` events reach the page),
    not only when it ends."""
    url = tiny_live_server.url
    for cls in ("red", "blue"):
        httpx.post(url + "/api/groups", json={"name": cls})
        files = [("files", (f"{cls}{i}.png", class_image(cls, i), "image/png")) for i in range(8)]
        httpx.post(f"{url}/api/groups/{cls}/images", files=files, timeout=60)
    page.goto(url + "/learning")
    page.select_option("#mode", "head")
    page.fill('[data-param="epochs"]', "2000")  # long enough to watch
    page.click("#btn-start")
    page.wait_for_function(
        "document.querySelectorAll('#epochs-table tbody tr').length >= 3"
        " && document.getElementById('run-state').textContent === 'running'",
        timeout=60_000,
    )
    rows = page.locator("#epochs-table tbody tr").count()
    run = httpx.get(url + "/api/train/runs").json()["runs"][0]
    assert run["state"] == "running" and rows >= 3
    page.click("#btn-cancel")
    expect(page.locator("#run-state")).to_have_text("cancelled", timeout=60_000)


def test_the_end_of_a_run_reaches_the_page_without_the_event_stream(page, tiny_live_server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    """A stream that drops or reconnects loses events, the job's last one too: the page still learns
    that the run ended (it asks the server while the job runs) and shows the finished run."""
    url = tiny_live_server.url
    for cls in ("red", "blue"):
        httpx.post(url + "/api/groups", json={"name": cls})
        files = [("files", (f"{cls}{i}.png", class_image(cls, i), "image/png")) for i in range(8)]
        httpx.post(f"{url}/api/groups/{cls}/images", files=files, timeout=60)
    page.route("**/api/events", lambda route: route.abort())
    page.goto(url + "/learning")
    page.select_option("#mode", "head")
    page.fill('[data-param="epochs"]', "5")
    page.click("#btn-start")
    expect(page.locator("#run-state")).to_have_text("done", timeout=60_000)
    expect(page.locator("#epochs-table tbody tr")).to_have_count(5)
    expect(page.locator("#train-progress")).to_have_text("Finished.")
    expect(page.locator("#btn-start")).to_be_enabled()
