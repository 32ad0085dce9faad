"""Multi-label on the Dataset page in real Chromium: switch the mode, add images to a second group,
mark an attribute, see the chips."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

from ..conftest import LiveServer
from ..helpers import class_image
from .conftest import screenshot

pytestmark = pytest.mark.browser


def test_multilabel_journey(page, live_server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    url = live_server.url
    httpx.post(url + "/api/groups", json={"name": "colour"})
    httpx.post(url + "/api/groups", json={"name": "red", "parent": "colour"})
    httpx.post(url + "/api/groups", json={"name": "round"})
    files = [("files", (f"r{i}.png", class_image("red", i, size=96), "image/png")) for i in range(3)]
    assert len(httpx.post(url + "/api/groups/colour/red/images", files=files).json()["added"]) == 3

    page.goto(url + "/#group=colour/red")
    page.wait_for_function("document.querySelectorAll('#grid .tile').length === 3")
    expect(page.locator("#btn-also")).to_be_hidden()
    page.check("#mode-multi")
    expect(page.locator("#btn-also")).to_be_visible()
    assert httpx.get(url + "/api/dataset/mode").json()["label_mode"] == "multi"

    # Two images also into "round": they show a chip for it, and the round folder has them.
    page.click("#grid .tile >> nth=0")
    page.click("#grid .tile >> nth=1")
    page.click("#btn-also")
    expect(page.locator("#dlg-move-title")).to_have_text("Also in group")
    page.select_option("#dlg-move-target", "round")
    page.click("#dlg-move-ok")
    expect(page.locator("#grid .tile .chip")).to_have_count(2)
    expect(page.locator("#grid .tile .chip >> nth=0")).to_have_text("round")
    assert httpx.get(url + "/api/groups/round/images").json()["total"] == 2

    # The top-level "colour" becomes an attribute.
    page.click('li[data-group="colour"] .tree-node')
    page.click("#btn-exclusive")
    expect(page.locator('li[data-group="colour"] .chip')).to_have_text("attribute")
    page.click('li[data-group="colour/red"] .tree-node')
    page.wait_for_function("document.querySelectorAll('#grid .tile .chip').length === 2")
    screenshot(page, "multilabel")

    # Back to one group per image is refused while images are in two groups; the box stays ticked.
    # A plain click, not uncheck(): uncheck() insists that the box ends unticked, and here the page
    # must tick it again once the server refuses.
    page.click("#mode-multi")
    expect(page.locator(".toast.error")).to_contain_text("more than one group")
    expect(page.locator("#mode-multi")).to_be_checked()
    assert httpx.get(url + "/api/dataset/mode").json()["label_mode"] == "multi"
