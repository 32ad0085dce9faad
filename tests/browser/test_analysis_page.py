"""The Image analysis page's journey: no index -> create it, classify a chosen image, similar images, lens."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from ..conftest import LiveServer
from ..helpers import class_image
from .conftest import screenshot, seed_and_train

pytestmark = pytest.mark.browser


def test_analysis_journey(page, tiny_live_server: LiveServer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = tiny_live_server.url
    seed_and_train(url, per_class=8)

    page.goto(url + "/analysis")
    query = tmp_path / "query.png"
    query.write_bytes(class_image("blue", 4321, size=160))
    with page.expect_file_chooser() as fc:
        page.click("#btn-pick")
    fc.value.set_files(str(query))
    # No index yet: the page offers to create one, with progress, then shows similar images.
    expect(page.locator("#dlg-index")).to_be_visible()
    page.click("#index-ok")
    expect(page.locator("#dlg-index")).to_be_hidden(timeout=60_000)
    expect(page.locator("#classes tbody tr").first.locator("td").first).to_have_text("blue")
    expect(page.locator("#similar .tile")).to_have_count(20)
    expect(page.locator("#index-info")).to_contain_text("24 images")
    page.wait_for_function(
        "[...document.querySelectorAll('#similar .tile img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    screenshot(page, "analysis")

    # Selecting a group row limits the search to that group.
    page.click('#classes tbody tr[data-group="red"]')
    expect(page.locator("#similar-scope")).to_have_text("in red")
    expect(page.locator("#similar .tile")).to_have_count(8)
    assert set(page.locator("#similar .tile-name").all_inner_texts()) == {"red"}
    page.fill("#how-many", "3")
    page.dispatch_event("#how-many", "change")
    expect(page.locator("#similar .tile")).to_have_count(3)
    page.click("#similar .tile >> nth=0")
    expect(page.locator("#lens")).to_be_visible()
    expect(page.locator("#lens-caption")).to_contain_text("red · distance")
    page.keyboard.press("Escape")

    # A path on the server through the URL box.
    img = httpx.get(url + "/api/groups/green/images?limit=1").json()["images"][0]
    page.fill("#url", img["path"])
    page.click("#btn-url")
    expect(page.locator("#classes tbody tr").first.locator("td").first).to_have_text("green")
