"""The grabber against a local fake search engine and misbehaving image hosts."""

from __future__ import annotations

import io
import struct
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest
from PIL import Image

from cvtools import netfetch
from cvtools.grabber.grab import normalise_url
from cvtools.settings import Settings
from cvtools.web import create_app

from ..conftest import wait_jobs
from ..fakeweb import FakeSearch, FakeWeb, serve_images
from ..helpers import TestClient, image_bytes


def png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")
    )


@pytest.fixture
def web() -> Iterator[FakeWeb]:
    with FakeWeb() as w:
        yield w


@pytest.fixture
def engine(web: FakeWeb) -> FakeSearch:
    return FakeSearch(web)


@pytest.fixture
def grab_client(dataset_dir, web: FakeWeb) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    s = Settings(
        dataset_dir=dataset_dir,
        preload_model=False,
        allow_private_urls=True,
        grab_min_side=16,
        max_image_pixels=1_000_000,
        grab_google_url=f"{web.url}/wml/search",
        grab_bing_url=f"{web.url}/bing/async",
        grab_duckduckgo_url=f"{web.url}/ddg/",
    )
    with TestClient(create_app(s)) as c:
        wait_jobs(c)
        c.post("/api/groups", json={"name": "cats"})
        yield c


def grab(client: TestClient, timeout: float = 60, **body: object) -> dict:
    r = client.post("/api/groups/cats/grab", json={"query": "cats", **body})
    assert r.status_code == 202, r.text
    job_id = r.json()["job"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.05)
    raise AssertionError("grab did not finish")


def all_shas(client: TestClient) -> list[str]:
    return [
        i["sha256"]
        for s in ("group", "new", "deleted")
        for i in client.get(f"/api/groups/cats/images?status={s}&limit=1000").json()["images"]
    ]


@pytest.mark.parametrize("provider", ["google", "bing", "duckduckgo"])
def test_each_provider_fills_new(grab_client: TestClient, web: FakeWeb, engine: FakeSearch, provider: str) -> None:
    serve_images(web, engine, range(12))
    job = grab(grab_client, count=10, provider=provider)
    assert job["state"] == "done", job
    assert job["result"]["added"] == 10
    new = grab_client.get("/api/groups/cats/images?status=new").json()
    assert new["total"] == 10 and all(i["source"].startswith(web.url) for i in new["images"])
    assert grab_client.get("/api/groups/cats/images").json()["total"] == 0  # nothing in Group until reviewed
    # The rest, then nothing more: every image offered once only.
    again = grab(grab_client, count=10, provider=provider)
    assert again["result"]["added"] == 2
    third = grab(grab_client, count=10, provider=provider)
    assert third["result"]["added"] == 0 and third["result"]["skipped"].get("already seen (URL)", 0) >= 10
    shas = all_shas(grab_client)
    assert len(shas) == len(set(shas)) == 12


def test_auto_moves_on_when_blocked(grab_client: TestClient, web: FakeWeb, engine: FakeSearch) -> None:
    serve_images(web, engine, range(6))

    def blocked(h: BaseHTTPRequestHandler) -> None:
        h.send_response(429)
        h.send_header("Content-Length", "0")
        h.end_headers()

    web.routes["/wml/search"] = blocked
    job = grab(grab_client, count=6)
    assert job["result"]["added"] == 6 and job["result"]["skipped"]["google blocked"] == 1
    web.redirect("/wml/search", "/sorry/index")
    web.body("/sorry/index", b"<html>" + b"x" * 500 + b"</html>", "text/html")
    job = grab(grab_client, count=3)
    assert job["result"]["skipped"].get("google blocked") == 1


def test_misbehaving_hosts_and_duplicates(grab_client: TestClient, web: FakeWeb, engine: FakeSearch) -> None:
    good = image_bytes(1)
    rejected = image_bytes(2, size=(64, 64))
    # An image the operator rejected before.
    r = grab_client.post("/api/groups/cats/images", files=[("files", ("r.png", rejected, "image/png"))]).json()
    grab_client.post("/api/images/status", json={"ids": [r["added"][0]["id"]], "status": "deleted"})
    resized = io.BytesIO()
    Image.open(io.BytesIO(rejected)).resize((60, 60)).save(resized, "PNG")
    truncated = io.BytesIO()
    Image.open(io.BytesIO(image_bytes(3))).save(truncated, "JPEG")
    routes = {
        "/good.png": good,
        "/same-bytes.png": good,
        "/html.jpg": b"<html>not an image</html>",
        "/truncated.jpg": truncated.getvalue()[:300],
        "/bomb.png": png_declaring(30000, 30000),
        "/resized-rejected.png": resized.getvalue(),
        "/tiny.png": image_bytes(4, size=(8, 8)),
    }
    for path, data in routes.items():
        web.body(path, data, "image/jpeg")
    web.body("/missing.png", b"", status=404)
    web.endless("/endless.png")
    web.drip("/slow.png", image_bytes(5), delay=0.4)
    engine.urls = [f"{web.url}{p}" for p in [*routes, "/missing.png", "/endless.png", "/slow.png"]]
    engine.page = 20
    orig = netfetch.UrlPolicy.__init__

    def short(self, *a, **k):  # type: ignore[no-untyped-def]
        orig(self, *a, **k)
        object.__setattr__(self, "total_timeout", 1.5)
        object.__setattr__(self, "max_bytes", 2 * 1024 * 1024)

    netfetch.UrlPolicy.__init__ = short  # type: ignore[method-assign]
    try:
        job = grab(grab_client, count=10, provider="google")
    finally:
        netfetch.UrlPolicy.__init__ = orig  # type: ignore[method-assign]
    res = job["result"]
    assert res["added"] == 1, res
    sk = res["skipped"]
    assert sk["duplicate (same bytes)"] == 1
    assert sk["duplicate (similar image)"] == 1
    assert sk["not an image"] == 1
    assert sk["corrupt or not an image"] == 1
    assert sk["too large"] == 2  # the declared 900-megapixel PNG and the endless body
    assert sk["too small"] == 1
    assert sk["download failed"] == 2  # the 404 and the slow drip
    new = grab_client.get("/api/groups/cats/images?status=new").json()["images"]
    assert len(new) == 1 and new[0]["source"] in (f"{web.url}/good.png", f"{web.url}/same-bytes.png")
    assert list((grab_client.app.state.services.settings.state_dir / "tmp").iterdir()) == []  # type: ignore[attr-defined]


def test_redirect_to_private_address_refused(dataset_dir, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(netfetch, "is_public_address", lambda ip: ip == "127.0.0.2")
    with FakeWeb("127.0.0.2") as public, FakeWeb("127.0.0.1") as private:
        eng = FakeSearch(public)
        private.body("/inner.png", image_bytes(7))
        public.redirect("/hop.png", f"{private.url}/inner.png")
        public.body("/ok.png", image_bytes(8))
        eng.urls = [f"{public.url}/hop.png", f"{public.url}/ok.png", f"{private.url}/inner.png"]
        s = Settings(
            dataset_dir=dataset_dir, preload_model=False, grab_min_side=16, grab_google_url=f"{public.url}/wml/search"
        )
        with TestClient(create_app(s)) as c:
            wait_jobs(c)
            c.post("/api/groups", json={"name": "cats"})
            job = grab(c, count=5, provider="google")
        assert job["result"]["added"] == 1 and job["result"]["skipped"]["refused address"] == 2
        assert private.hits.get("/inner.png", 0) == 0


def test_cancel_and_bad_requests(grab_client: TestClient, web: FakeWeb, engine: FakeSearch) -> None:
    for s in range(30):
        web.delayed(f"/slow/{s}.png", image_bytes(100 + s), 0.3)
        engine.urls.append(f"{web.url}/slow/{s}.png")
    r = grab_client.post("/api/groups/cats/grab", json={"query": "cats", "count": 30, "provider": "google"})
    job_id = r.json()["job"]
    time.sleep(0.5)
    grab_client.post(f"/api/jobs/{job_id}/cancel")
    wait_jobs(grab_client, 30)
    job = grab_client.get(f"/api/jobs/{job_id}").json()
    assert job["state"] == "cancelled"
    assert grab_client.get("/api/groups/cats/images?status=new").json()["total"] < 30
    for body, code in [
        ({"query": "x", "count": 0}, 400),
        ({"query": "x", "count": 101}, 400),
        ({"query": "  "}, 400),
        ({"query": "x", "provider": "altavista"}, 400),
        ({"query": "x", "provider": "brave"}, 400),
        ({"count": 5}, 422),
    ]:
        assert grab_client.post("/api/groups/cats/grab", json=body).status_code == code, body
    assert grab_client.post("/api/groups/dogs/grab", json={"query": "x"}).status_code == 404
    assert "auto" in grab_client.get("/api/grab/providers").json()["providers"]


def test_normalise_url() -> None:
    assert normalise_url("HTTP://Example.COM:80/a.jpg#x") == "http://example.com/a.jpg"
    assert normalise_url("https://example.com:8443/a.jpg?b=1") == "https://example.com:8443/a.jpg?b=1"


def test_group_deleted_during_a_grab(
    grab_client: TestClient, web: FakeWeb, engine: FakeSearch, dataset_dir, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """The job ends with a clear message, adds nothing to a group that is gone, and leaves no temp file."""
    from cvtools.dataset import Dataset

    serve_images(web, engine, range(40, 60))
    real_add = Dataset.add_images
    calls = {"n": 0}

    def delete_then_add(self, group, items, **kw):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:  # the operator deletes the group while the grab runs
            assert grab_client.delete("/api/groups/cats").status_code == 200
        return real_add(self, group, items, **kw)

    monkeypatch.setattr(Dataset, "add_images", delete_then_add)
    job = grab(grab_client, count=10, provider="google")
    assert job["state"] == "failed" and "deleted during the grab" in job["error"], job
    assert [g["name"] for g in grab_client.get("/api/groups").json()["groups"]] == []
    assert not list((dataset_dir / ".cvtools" / "tmp").iterdir())
    assert not (dataset_dir / "cats").exists()
