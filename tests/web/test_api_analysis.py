"""/cv, /api/analyze and the similarity index: parsing, path and URL policy, concurrency, freshness."""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import pytest
from PIL import Image

from cvtools import netfetch
from cvtools.settings import Settings
from cvtools.web import create_app
from cvtools.web.api_cv import parse_cv_query

from ..conftest import fill_classes, run_training, wait_jobs
from ..fakeweb import FakeWeb
from ..helpers import TestClient, class_image


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/data/a.jpg", ("/data/a.jpg", None)),
        ("/data/a.jpg:3", ("/data/a.jpg", 3)),
        ("http://host:8080/a.jpg:3", ("http://host:8080/a.jpg", 3)),
        ("http://host:8080/a.jpg", ("http://host:8080/a.jpg", None)),
        ("https://host/a.jpg?x=1:2", ("https://host/a.jpg?x=1", 2)),
        ("C:%5Cimgs%5Ca.jpg:2", ("C:\\imgs\\a.jpg", 2)),
        ("C:\\imgs\\a.jpg", ("C:\\imgs\\a.jpg", None)),
        ("/data/a:b.jpg", ("/data/a:b.jpg", None)),
        ("/data/a:b.jpg:7", ("/data/a:b.jpg", 7)),
        ("%2Fdata%2Fmy%20cat.jpg%3A1", ("/data/my cat.jpg", 1)),
        ("/data/a.jpg:0", ("/data/a.jpg", None)),  # 0: every group, as the original answered
    ],
)
def test_cv_query_parsing(raw: str, expected: tuple[str, int | None]) -> None:
    assert parse_cv_query(raw) == expected


@pytest.mark.parametrize("raw", ["", "/a.jpg:-2", "/a.jpg:abc", "/a.jpg:", "/a.jpg:2.5"])
def test_cv_query_bad_suffix(raw: str) -> None:
    from cvtools.errors import BadInput

    with pytest.raises(BadInput):
        parse_cv_query(raw)


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    d = tmp_path / "outside"
    d.mkdir()
    (d / "secret.png").write_bytes(class_image("red", 1000))
    return d


@pytest.fixture
def trained(tiny_settings: Settings) -> Iterator[TestClient]:
    s = tiny_settings.model_copy(update={"allow_private_urls": True, "max_upload_mb": 20})
    with TestClient(create_app(s)) as c:
        wait_jobs(c)
        fill_classes(c, per_class=8)
        run = run_training(c, "head", epochs=20)
        assert c.post("/api/models/promote", json={"run": run["id"], "build_index": True}).status_code == 200
        wait_jobs(c, 60)
        yield c


def cv(client: TestClient, target: str) -> object:
    return client.get("/cv?" + quote(target, safe="/:"))


def test_cv_without_model_is_503(client: TestClient, settings: Settings) -> None:
    inside = settings.dataset_dir / "x.png"
    inside.write_bytes(class_image("red", 1))
    r = cv(client, str(inside))
    assert r.status_code == 503 and "train a model" in r.json()["detail"]
    assert client.post("/cv", content=class_image("red", 1)).status_code == 503
    # The request is judged before the model: forbidden, malformed and missing stay what they are.
    assert cv(client, "/etc/passwd").status_code == 403
    assert cv(client, str(settings.dataset_dir / "nope.png")).status_code == 404
    assert cv(client, str(settings.dataset_dir / ("n" * 300 + ".png"))).status_code == 400
    assert client.get("/cv?").status_code == 400
    assert cv(client, "http://127.0.0.1/a.png").status_code == 403


def test_cv_local_paths(trained: TestClient, tiny_settings: Settings, outside: Path) -> None:
    img = trained.get("/api/groups/green/images?limit=1").json()["images"][0]
    r = cv(trained, img["path"])
    assert r.status_code == 200
    ranked = r.json()
    assert ranked[0][0] == "green" and len(ranked) == 3
    assert ranked == sorted(ranked, key=lambda x: -x[1]) and abs(sum(p for _, p in ranked) - 1) < 1e-4
    top1 = cv(trained, img["path"] + ":1").json()
    assert len(top1) == 1 and top1[0][0] == "green"
    assert cv(trained, img["path"] + ":0").json() == ranked  # 0: every group
    assert trained.post("/cv?n=0", content=Path(img["path"]).read_bytes()).json() == ranked
    assert cv(trained, img["path"] + ":x").status_code == 400
    # Outside public_dirs, traversal, symlink escape, file://, a folder, a missing file.
    assert cv(trained, str(outside / "secret.png")).status_code == 403
    assert cv(trained, str(tiny_settings.dataset_dir) + "/../outside/secret.png").status_code == 403
    link = tiny_settings.dataset_dir / "green" / "escape.png"
    os.symlink(outside / "secret.png", link)
    assert cv(trained, str(link)).status_code == 403
    link.unlink()
    assert cv(trained, "file://" + img["path"]).status_code == 403
    assert cv(trained, str(tiny_settings.dataset_dir / "green")).status_code == 404
    assert cv(trained, str(tiny_settings.dataset_dir / "green" / "nope.png")).status_code == 404
    notimg = tiny_settings.dataset_dir / "green" / "notes.png"
    notimg.write_text("hello")
    r = cv(trained, str(notimg))
    assert r.status_code == 415 and "Traceback" not in r.text
    notimg.unlink()


def test_cv_post_body_and_multipart(trained: TestClient) -> None:
    data = class_image("blue", 4242)
    raw = trained.post("/cv?n=2", content=data, headers={"content-type": "image/png"})
    assert raw.status_code == 200 and len(raw.json()) == 2 and raw.json()[0][0] == "blue"
    multi = trained.post("/cv", files={"file": ("x.png", data, "image/png")})
    assert multi.json()[0][0] == "blue" and len(multi.json()) == 3
    assert trained.post("/cv", content=b"").status_code == 400
    assert trained.post("/cv", content=b"not an image").status_code == 415
    assert len(trained.post("/cv?n=0", content=data).json()) == 3  # 0: every group
    assert trained.post("/cv?n=-1", content=data).status_code == 422
    big = io.BytesIO()
    Image.new("RGB", (12000, 12000)).save(big, "PNG")
    assert trained.post("/cv", content=big.getvalue()).status_code == 413


def test_cv_urls_and_policy(trained: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    data = class_image("red", 777)
    with FakeWeb() as web:
        web.body("/img.png", data)
        web.body("/page.html", b"<html>hi</html>", "text/html")
        web.body("/fake.jpg", b"<html>not a jpeg</html>", "image/jpeg")
        web.body("/gone.png", b"", status=404)
        web.redirect("/moved.png", "/img.png")
        web.endless("/huge.png")
        web.drip("/slow.png", data, delay=0.5)
        ok = trained.get(f"/cv?{web.url}/img.png:2")
        assert ok.status_code == 200 and ok.json()[0][0] == "red" and len(ok.json()) == 2
        assert trained.get(f"/cv?{web.url}/moved.png").json()[0][0] == "red"
        assert trained.get(f"/cv?{web.url}/page.html").status_code == 415
        assert trained.get(f"/cv?{web.url}/fake.jpg").status_code == 415
        assert trained.get(f"/cv?{web.url}/gone.png").status_code == 404
        assert trained.get(f"/cv?{web.url}/huge.png").status_code == 413
        classifier = trained.app.state.services.classifier  # type: ignore[attr-defined]
        short = dataclasses.replace(classifier.policy, read_timeout=1.0, connect_timeout=1.0, total_timeout=1.0)
        monkeypatch.setattr(classifier, "policy", short)
        assert trained.get(f"/cv?{web.url}/slow.png").status_code == 400
        assert trained.get("/cv?ftp://example.com/a.png").status_code == 403
        assert trained.get("/cv?gopher://example.com/a.png").status_code == 403


def test_private_addresses_refused(tiny_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """With allow_private_urls off: loopback, private, link-local (metadata) and redirects to them are 403."""
    with TestClient(create_app(tiny_settings)) as c:
        wait_jobs(c)
        fill_classes(c, per_class=4, classes=("red", "blue"))
        run = run_training(c, "head", epochs=5)
        c.post("/api/models/promote", json={"run": run["id"], "build_index": False})
        for target in [
            "http://127.0.0.1:1/a.png",
            "http://localhost/a.png",
            "http://10.0.0.1/a.png",
            "http://192.168.1.1/a.png",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/a.png",
            "http://[::ffff:127.0.0.1]/a.png",
            "http://0.0.0.0/a.png",
        ]:
            r = c.get("/cv?" + target)
            assert r.status_code == 403, (target, r.text)
        # A "public" host (127.0.0.2, declared public for this test) redirecting to a private one.
        monkeypatch.setattr(netfetch, "is_public_address", lambda ip: ip == "127.0.0.2")
        with FakeWeb("127.0.0.2") as public, FakeWeb("127.0.0.1") as private:
            private.body("/inner.png", class_image("red", 5))
            public.body("/ok.png", class_image("red", 6))
            public.redirect("/hop.png", f"{private.url}/inner.png")
            assert c.get(f"/cv?{public.url}/ok.png").status_code == 200
            assert c.get(f"/cv?{public.url}/hop.png").status_code == 403
            assert private.hits.get("/inner.png", 0) == 0


def test_concurrent_cv_equals_one_by_one(trained: TestClient) -> None:
    paths = [
        i["path"] for g in ("red", "green", "blue") for i in trained.get(f"/api/groups/{g}/images").json()["images"]
    ]
    single = {p: cv(trained, p).json() for p in paths}
    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda p: (p, cv(trained, p).json()), paths * 3))
    for p, ranked in results:
        assert [g for g, _ in ranked] == [g for g, _ in single[p]]
        assert all(abs(a[1] - b[1]) < 1e-4 for a, b in zip(ranked, single[p], strict=True))
    batcher = trained.app.state.services.classifier.batcher  # type: ignore[attr-defined]
    assert batcher.items >= len(results) and batcher.batches < batcher.items  # some requests shared a batch


def test_analyze_and_index_stays_current(trained: TestClient) -> None:
    status = trained.get("/api/index").json()
    assert status["exists"] and status["images"] == 24
    green = trained.get("/api/groups/green/images").json()["images"]
    data = trained.get(green[0]["url"]).content
    r = trained.post("/api/analyze", files={"file": ("q.png", data, "image/png")}, data={"similar": "5"}).json()
    assert r["classification"][0][0] == "green"
    assert len(r["similar"]) == 5 and r["similar"][0]["id"] == green[0]["id"] and r["similar"][0]["distance"] < 1e-4
    assert [s["distance"] for s in r["similar"]] == sorted(s["distance"] for s in r["similar"])
    only_red = trained.post(
        "/api/analyze", files={"file": ("q.png", data, "image/png")}, data={"similar": "3", "group": "red"}
    ).json()
    assert {s["group"] for s in only_red["similar"]} == {"red"}
    # Move the image to red: the index follows; delete it: it leaves the index.
    trained.post("/api/images/move", json={"ids": [green[0]["id"]], "group": "red"})
    wait_jobs(trained, 60)
    r = trained.post("/api/analyze", files={"file": ("q.png", data, "image/png")}, data={"similar": "1"}).json()
    assert r["similar"][0]["id"] == green[0]["id"] and r["similar"][0]["group"] == "red"
    trained.post("/api/images/status", json={"ids": [green[0]["id"]], "status": "deleted"})
    wait_jobs(trained, 60)
    r = trained.post("/api/analyze", files={"file": ("q.png", data, "image/png")}, data={"similar": "30"}).json()
    assert green[0]["id"] not in {s["id"] for s in r["similar"]} and len(r["similar"]) == 23
    # New uploads join the index.
    trained.post("/api/groups/blue/images", files=[("files", ("new.png", class_image("blue", 999), "image/png"))])
    wait_jobs(trained, 60)
    assert trained.get("/api/index").json()["images"] == 24
    assert trained.post("/api/analyze", data={"similar": "1"}).status_code == 400
    assert trained.post("/api/analyze", files={"file": ("q.txt", b"text", "text/plain")}).status_code == 415
    assert (
        trained.post("/api/analyze", files={"file": ("q.png", data, "image/png")}, data={"group": "nope"}).status_code
        == 404
    )


def test_similarity_index_unit() -> None:
    import numpy as np

    from cvtools.vision.index import SimilarityIndex

    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(50, 8)).astype(np.float32)
    idx = SimilarityIndex("fp", "features", "r")
    idx.update({}, {})
    idx.update(
        {f"i{k}": "a" if k % 2 else "b" for k in range(50)},
        {f"i{k}": ("a" if k % 2 else "b", vecs[k]) for k in range(50)},
    )
    hits = idx.query(vecs[7], 3)
    assert hits[0][0] == "i7" and hits[0][2] < 1e-5
    assert all(g == "b" for _, g, _ in idx.query(vecs[7], 5, "b"))
    idx.update({f"i{k}": "a" for k in range(10)}, {})
    assert len(idx) == 10 and all(g == "a" for g in idx.groups)


def test_query_decoding_matches_the_stored_embeddings(trained: TestClient, tmp_path: Path) -> None:
    """A big file sent to /cv is decoded as the embedding pipeline decodes it (same reduced size), so
    the model sees the same pixels either way and the file finds itself at distance 0."""
    from cvtools.vision.embeddings import Item, Pipeline

    sv = trained.app.state.services  # type: ignore[attr-defined]
    pre = sv.models.require_production().preprocess
    pipe = Pipeline(pre=pre, forward=lambda b: b, batch_size=1, max_pixels=sv.settings.max_image_pixels)
    base = Image.open(io.BytesIO(class_image("red", 3)))
    for name, size in (("big.png", (1000, 700)), ("photo.jpg", (3200, 2400))):
        path = tmp_path / name
        base.resize(size, Image.Resampling.BICUBIC).save(path)
        stored = pipe._decode(Item("x", path), [0])
        assert not isinstance(stored, str), stored
        query = pre.array(pre.center(sv.classifier.decode(path.read_bytes())))
        assert (query == stored[0][2]).all(), name
