"""The README's pictures of real work: openclipart drawings (when the benchmark data was fetched by
benchmarks/fetch-openclipart.sh; else skipped) in four groups, a head model trained with the offline
backbone, its confusion matrix, the duplicates of two copies, and similar images of a new drawing.
It runs after the other browser tests, so its screenshots replace their coloured squares."""

from __future__ import annotations

import io
import os
from pathlib import Path

import httpx
import pytest
from PIL import Image
from playwright.sync_api import expect

from cvtools.settings import Settings

from ..conftest import LiveServer
from .conftest import screenshot

pytestmark = pytest.mark.browser

DATA = Path(os.environ.get("CVTOOLS_BENCH_DATA", Path.home() / ".cache" / "cvtools-bench")) / "openclipart"
GROUPS = {"birds": "animals/birds", "fruit": "food/fruit", "flowers": "plants/flowers", "transport": "transportation"}
PER_GROUP = 24


def _drawings(folder: str, n: int) -> list[Path]:
    files = sorted(p for p in (DATA / folder).glob("*.png") if p.stat().st_size < 1_500_000)
    return files[:n]


def _copy(path: Path) -> bytes:
    """A copy made as people make them: cut at the edges, scaled down, saved as JPEG."""
    drawn = Image.open(path).convert("RGBA")
    img = Image.alpha_composite(Image.new("RGBA", drawn.size, "white"), drawn).convert("RGB")
    w, h = img.size
    img = img.crop((w // 25, h // 25, w - w // 25, h - h // 25)).resize((w * 6 // 10, h * 6 // 10))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=75)
    return out.getvalue()


@pytest.mark.skipif(not DATA.is_dir(), reason="openclipart benchmark data not fetched")
def test_tour_with_real_drawings(page, settings: Settings) -> None:  # type: ignore[no-untyped-def]
    with LiveServer(settings.model_copy(update={"neuronet": "efficientnet-lite0"})) as server:
        _tour(page, server.url)


def _tour(page, url: str) -> None:  # type: ignore[no-untyped-def]
    held_out = {}
    for group, folder in GROUPS.items():
        files = _drawings(folder, PER_GROUP + 1)
        held_out[group] = files[-1]
        httpx.post(url + "/api/groups", json={"name": group})
        upload = [("files", (p.name, p.read_bytes(), "image/png")) for p in files[:-1]]
        httpx.post(f"{url}/api/groups/{group}/images", files=upload, timeout=120)
    birds = _drawings(GROUPS["birds"], 2)
    httpx.post(f"{url}/api/groups/fruit/images", files=[("files", ("copy.jpg", _copy(birds[0]), "image/jpeg"))])
    httpx.post(f"{url}/api/groups/birds/images", files=[("files", ("again.jpg", _copy(birds[1]), "image/jpeg"))])

    page.goto(url + "/#group=birds&status=group")
    page.wait_for_function(
        "[...document.querySelectorAll('#grid .tile img')].length > 20 &&"
        " [...document.querySelectorAll('#grid .tile img')].every(i => i.complete && i.naturalWidth > 0)",
        timeout=60_000,
    )
    screenshot(page, "dataset")

    page.goto(url + "/learning")
    page.select_option("#mode", "head")
    page.click("#btn-start")
    expect(page.locator("#run-state")).to_have_text("done", timeout=300_000)
    expect(page.locator("#confusion-block")).to_be_visible()
    screenshot(page, "learning")
    page.click("#btn-promote")
    page.click("#promote-ok")
    expect(page.locator("#models-table .badge")).to_have_text("main")

    page.goto(url + "/anomalies")
    page.select_option("#type", "duplicates")
    page.click("#btn-calc")
    expect(page.locator(".pair").first).to_be_visible(timeout=120_000)
    expect(page.locator(".pair.cross")).to_have_count(1)  # the bird copied into fruit, listed first
    page.wait_for_function("[...document.querySelectorAll('.pair img')].every(i => i.complete && i.naturalWidth > 0)")
    screenshot(page, "anomalies")

    page.goto(url + "/analysis")
    with page.expect_file_chooser() as fc:
        page.click("#btn-pick")
    fc.value.set_files(str(held_out["fruit"]))
    page.wait_for_selector("#dlg-index[open], #similar .tile", timeout=120_000)
    if page.locator("#dlg-index[open]").count():  # promoting may have built the index already
        page.click("#index-ok")
        expect(page.locator("#dlg-index")).to_be_hidden(timeout=120_000)
    expect(page.locator("#similar .tile").first).to_be_visible()
    page.wait_for_function(
        "[...document.querySelectorAll('#similar .tile img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    screenshot(page, "analysis")
