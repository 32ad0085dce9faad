"""The Extend images dialog: a grab from a local fake engine lands in the New section."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import expect

from cvtools.settings import Settings

from ..conftest import LiveServer
from ..fakeweb import FakeSearch as Engine
from ..fakeweb import FakeWeb
from ..helpers import shape_image
from .conftest import screenshot

pytestmark = pytest.mark.browser


@pytest.fixture
def fake_engine() -> Iterator[tuple[FakeWeb, Engine]]:
    with FakeWeb() as web:
        eng = Engine(web)
        for s in range(8):
            web.body(f"/img/{s}.png", shape_image("circle", 50 + s, size=96))
            eng.urls.append(f"{web.url}/img/{s}.png")
        yield web, eng


def test_extend_images_journey(page, dataset_dir, fake_engine) -> None:  # type: ignore[no-untyped-def]
    web, _ = fake_engine
    s = Settings(
        dataset_dir=dataset_dir,
        preload_model=False,
        allow_private_urls=True,
        grab_min_side=16,
        grab_google_url=f"{web.url}/wml/search",
        grab_bing_url=f"{web.url}/bing/async",
        grab_duckduckgo_url=f"{web.url}/ddg/",
    )
    with LiveServer(s) as server:
        httpx.post(server.url + "/api/groups", json={"name": "circles"})
        page.goto(server.url + "/")
        page.wait_for_selector('li[data-group="circles"].selected')
        page.click("#btn-extend")
        expect(page.locator("#extend-query")).to_have_value("circles")
        page.fill("#extend-count", "5")
        page.select_option("#extend-provider", "bing")
        screenshot(page, "extend-images")
        page.click("#extend-ok")
        expect(page.locator(".status-switch button[data-status=new]")).to_have_class("active", timeout=30_000)
        expect(page.locator("#grid .tile")).to_have_count(5)
        expect(page.locator('[data-count="new"]')).to_have_text("5")
        # Review: accept two into the group.
        page.click("#grid .tile >> nth=0")
        page.click("#grid .tile >> nth=1")
        page.click("#btn-to-group")
        expect(page.locator("#grid .tile")).to_have_count(3)
        expect(page.locator('[data-count="group"]')).to_have_text("2")
