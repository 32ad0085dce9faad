"""The Dataset page's main journey in real Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from ..conftest import LiveServer
from ..helpers import shape_image
from .conftest import screenshot

pytestmark = pytest.mark.browser


def test_dataset_journey(page, live_server: LiveServer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page.goto(live_server.url + "/")
    page.wait_for_selector("#no-groups:not([hidden])")

    # A root group and a child group through the Add dialog.
    page.click("#btn-add-group")
    page.fill("#dlg-group-name", "shapes")
    page.click("#dlg-group-ok")
    page.wait_for_selector('li[data-group="shapes"].selected')
    page.click("#btn-add-group")
    page.fill("#dlg-group-name", "circles")
    page.select_option("#dlg-group-parent", "shapes")
    page.click("#dlg-group-ok")
    page.wait_for_selector('li[data-group="shapes/circles"].selected')

    # A bad name shows the server's reason in the dialog and changes nothing.
    page.click("#btn-add-group")
    page.fill("#dlg-group-name", "..")
    page.click("#dlg-group-ok")
    page.wait_for_selector("#dlg-group-error:has-text('must not')")
    page.click("#dlg-group button[value=cancel]")

    # Upload three images with the file chooser.
    files = []
    for i, kind in enumerate(["circle", "circle", "square"]):
        p = tmp_path / f"{kind}{i}.png"
        p.write_bytes(shape_image(kind, i, size=96))
        files.append(str(p))
    with page.expect_file_chooser() as fc:
        page.click("#btn-upload")
    fc.value.set_files(files)
    page.wait_for_function("document.querySelectorAll('#grid .tile').length === 3")
    page.wait_for_function(
        "[...document.querySelectorAll('#grid .tile img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    expect(page.locator('[data-count="group"]')).to_have_text("3")
    screenshot(page, "dataset")

    # Select two, delete them: they leave the Group view and appear under Deleted.
    page.click("#grid .tile >> nth=0")
    page.click("#grid .tile >> nth=2")
    expect(page.locator("#selection-info")).to_have_text("2 of 3 selected")
    page.click("#btn-invert")
    expect(page.locator("#selection-info")).to_have_text("1 of 3 selected")
    page.click("#btn-invert")
    page.click("#btn-delete-images")
    page.wait_for_function("document.querySelectorAll('#grid .tile').length === 1")
    expect(page.locator('[data-count="deleted"]')).to_have_text("2")
    page.click(".status-switch button[data-status=deleted]")
    page.wait_for_function("document.querySelectorAll('#grid .tile').length === 2")

    # Put one back into the group.
    page.click("#grid .tile >> nth=0")
    page.click("#btn-to-group")
    page.wait_for_function("document.querySelectorAll('#grid .tile').length === 1")
    expect(page.locator('[data-count="group"]')).to_have_text("2")

    # The lens opens from the numbered square and steps with the arrow keys.
    page.click(".status-switch button[data-status=group]")
    page.wait_for_function("document.querySelectorAll('#grid .tile').length === 2")
    page.click("#grid .tile >> nth=0 >> .tile-num")
    page.wait_for_selector("#lens[open]")
    expect(page.locator("#lens-caption")).to_contain_text("1 / 2")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#lens-caption")).to_contain_text("2 / 2")
    page.wait_for_function("document.getElementById('lens-img').naturalWidth > 0")
    screenshot(page, "dataset-lens")
    page.keyboard.press("Escape")
    page.wait_for_selector("#lens:not([open])", state="attached")

    # A change made by another client appears without a reload (server-sent events).
    httpx.post(live_server.url + "/api/groups", json={"name": "from-elsewhere"})
    page.wait_for_selector('li[data-group="from-elsewhere"]')

    # Group names are rendered as text, never as HTML.
    httpx.post(live_server.url + "/api/groups", json={"name": "<img src=x onerror=alert(1)>"})
    page.wait_for_selector("li[data-group='<img src=x onerror=alert(1)>']")
    assert page.locator(".tree-name", has_text="<img src=x onerror=alert(1)>").count() == 1
    assert page.locator("#group-tree img").count() == 0


def test_rename_and_delete_group_dialogs(page, live_server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    httpx.post(live_server.url + "/api/groups", json={"name": "old"})
    page.goto(live_server.url + "/")
    page.wait_for_selector('li[data-group="old"].selected')
    page.click("#btn-rename-group")
    page.fill("#dlg-group-name", "renamed")
    page.click("#dlg-group-ok")
    page.wait_for_selector('li[data-group="renamed"].selected')
    page.click("#btn-delete-group")
    page.click("#dlg-delete-ok")
    page.wait_for_selector("#no-groups:not([hidden])")
    assert httpx.get(live_server.url + "/api/groups").json()["groups"] == []


def test_selection_covers_the_whole_section(page, live_server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    """Select all / invert act on every image of the section, not only the 200 tiles loaded: in a group
    of 230, "everything but this one" deletes 229 and the count is right throughout."""
    url = live_server.url
    httpx.post(url + "/api/groups", json={"name": "many"})
    files = [("files", (f"s{i}.png", shape_image("circle", i, size=40), "image/png")) for i in range(230)]
    assert len(httpx.post(f"{url}/api/groups/many/images", files=files, timeout=120).json()["added"]) == 230
    page.goto(url + "/#group=many&status=group")
    page.wait_for_function("document.querySelectorAll('#grid .tile').length === 200")  # one page loaded
    page.click("#btn-select-all")
    expect(page.locator("#selection-info")).to_have_text("230 of 230 selected")
    page.click("#grid .tile >> nth=0")
    expect(page.locator("#selection-info")).to_have_text("229 of 230 selected")
    page.click("#btn-invert")
    expect(page.locator("#selection-info")).to_have_text("1 of 230 selected")
    page.click("#btn-invert")
    page.click("#btn-delete-images")
    expect(page.locator('[data-count="deleted"]')).to_have_text("229")
    expect(page.locator('[data-count="group"]')).to_have_text("1")
    page.wait_for_function("document.querySelectorAll('#grid .tile').length === 1")
    page.reload()  # the offer to undo survives a reload of the page
    page.click("#toast-undo")
    expect(page.locator('[data-count="group"]')).to_have_text("230")
    expect(page.locator('[data-count="deleted"]')).to_have_text("0")
    page.click("#btn-select-all")
    page.click("#grid .tile >> nth=0")
    page.click("#btn-invert")
    page.click("#btn-delete-images")
    expect(page.locator('[data-count="group"]')).to_have_text("229")  # only the one image this time
    page.click("#btn-select-all")
    expect(page.locator("#selection-info")).to_have_text("229 of 229 selected")
    page.click("#btn-select-none")
    expect(page.locator("#selection-info")).to_have_text("0 of 229 selected")


def test_a_refresh_keeps_the_tiles_and_buttons_until_the_new_page_is_there(page, live_server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    """A change made elsewhere refreshes the grid; while the new page is on its way the old tiles stay and
    Invert still acts (the grid used to empty first, which disabled Invert and lost a click made then)."""
    url = live_server.url
    httpx.post(url + "/api/groups", json={"name": "steady"})

    def add(first: int, n: int) -> None:
        files = [
            ("files", (f"r{i}.png", shape_image("circle", i, size=40), "image/png")) for i in range(first, first + n)
        ]
        assert len(httpx.post(f"{url}/api/groups/steady/images", files=files, timeout=60).json()["added"]) == n

    add(0, 3)
    page.goto(url + "/#group=steady&status=group")
    page.wait_for_function("document.querySelectorAll('#grid .tile').length === 3")
    held: list = []  # type: ignore[type-arg]
    released = False

    def hold(route) -> None:  # type: ignore[no-untyped-def]
        if released:
            route.continue_()
        else:
            held.append(route)

    page.route(re.compile(r"/api/groups/steady/images\?"), hold)
    add(3, 1)  # another client adds an image: the page's event handler asks for the page again
    for _ in range(100):
        if held:
            break
        page.wait_for_timeout(100)
    assert held, "the page did not ask for its images again after the change"
    expect(page.locator("#grid .tile")).to_have_count(3)
    expect(page.locator("#btn-invert")).to_be_enabled()
    page.click("#btn-invert")
    expect(page.locator("#selection-info")).to_have_text("3 of 3 selected")
    released = True
    for route in held:
        route.continue_()
    page.wait_for_function("document.querySelectorAll('#grid .tile').length === 4")
    expect(page.locator("#selection-info")).to_have_text("4 of 4 selected")  # "all" covers the new image too


def test_review_by_keyboard_alone(page, live_server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    """20 New images reviewed without the mouse: arrows and Space on the grid, a and d on the cursor's
    image and on a selection, then the lens (Enter) with auto-advance until none is left."""
    url = live_server.url
    httpx.post(url + "/api/groups", json={"name": "kb"})
    files = [("files", (f"k{i}.png", shape_image("square", 100 + i, size=48), "image/png")) for i in range(20)]
    r = httpx.post(f"{url}/api/groups/kb/images", files=files, data={"status": "new"}, timeout=60)
    assert len(r.json()["added"]) == 20
    page.goto(url + "/#group=kb&status=new")
    page.wait_for_function("document.querySelectorAll('#grid .tile').length === 20")
    new = page.locator('[data-count="new"]')

    page.keyboard.press("ArrowRight")  # the cursor appears on the first image
    expect(page.locator("#grid .tile.cursor")).to_have_count(1)
    page.keyboard.press("a")  # the cursor's image joins the group
    expect(new).to_have_text("19")
    tiles = "document.querySelectorAll('#grid .tile').length === {}"
    page.wait_for_function(tiles.format(19))
    page.keyboard.press("d")
    expect(new).to_have_text("18")
    page.wait_for_function(tiles.format(18))
    page.keyboard.press("Space")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Space")
    expect(page.locator("#selection-info")).to_have_text("2 of 18 selected")
    page.keyboard.press("Delete")  # the selection, not the cursor
    expect(new).to_have_text("16")
    page.wait_for_function(tiles.format(16))

    page.keyboard.press("ArrowLeft")
    page.keyboard.press("Enter")
    page.wait_for_selector("#lens[open]")
    for k in range(16):
        expect(page.locator("#lens-caption")).to_contain_text(f"/ {16 - k} ")
        page.keyboard.press("a" if k < 8 else "d")
    page.wait_for_selector("#lens:not([open])", state="attached")  # none left: the lens closes
    expect(new).to_have_text("0")
    expect(page.locator('[data-count="group"]')).to_have_text("9")
    expect(page.locator('[data-count="deleted"]')).to_have_text("11")
    page.keyboard.press("u")  # undo the last change: the last image deleted in the lens
    expect(new).to_have_text("1")
    page.keyboard.press("?")
    page.wait_for_selector("#keys-help[open]")
