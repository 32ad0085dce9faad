"""The Anomalies page: calculate errors, move the detected one; duplicates pair marking and delete."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

from ..conftest import LiveServer
from ..helpers import class_image
from .conftest import screenshot, seed_and_train

pytestmark = pytest.mark.browser


def test_anomalies_journey(page, tiny_live_server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    url = tiny_live_server.url
    page.goto(url + "/anomalies")
    expect(page.locator("#no-model")).to_be_visible()
    httpx.post(f"{url}/api/groups", json={"name": "green"})  # the mislabelled image goes in before training
    oops = [("files", ("oops.png", class_image("red", 900), "image/png"))]
    wrong_id = httpx.post(f"{url}/api/groups/green/images", files=oops).json()["added"][0]["id"]
    seed_and_train(url, per_class=10, epochs=20)

    page.goto(url + "/anomalies")
    page.click("#btn-calc")
    expect(page.locator(f'.err-card[data-id="{wrong_id}"]')).to_be_visible(timeout=60_000)
    expect(page.locator(f'.err-card[data-id="{wrong_id}"] .det')).to_contain_text("red")
    screenshot(page, "anomalies")
    page.click(f'.err-card[data-id="{wrong_id}"]')
    page.click("#btn-move")
    expect(page.locator(f'.err-card[data-id="{wrong_id}"]')).to_have_count(0)
    assert httpx.get(f"{url}/api/images/{wrong_id}").json()["group"] == "red"

    # Duplicates: a copy in another group; selecting marks the image in every pair; delete it.
    original = httpx.get(f"{url}/api/groups/blue/images?limit=1").json()["images"][0]
    copy = httpx.post(
        f"{url}/api/groups/red/images",
        files=[("files", ("copy.bmp", _as_bmp(httpx.get(url + original["url"]).content), "image/bmp"))],
    ).json()
    copy_id = copy["added"][0]["id"]
    page.select_option("#type", "duplicates")
    page.click("#btn-calc")
    expect(page.locator(f'.pair .tile[data-id="{copy_id}"]').first).to_be_visible(timeout=60_000)
    page.click(f'.pair .tile[data-id="{copy_id}"] >> nth=0')
    expect(page.locator(f'.pair .tile[data-id="{copy_id}"].selected')).to_have_count(
        page.locator(f'.pair .tile[data-id="{copy_id}"]').count()
    )
    page.click("#btn-delete")
    expect(page.locator(f'.pair .tile[data-id="{copy_id}"]')).to_have_count(0)
    assert httpx.get(f"{url}/api/images/{copy_id}").json()["status"] == "deleted"


def _as_bmp(data: bytes) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(out, "BMP")
    return out.getvalue()
