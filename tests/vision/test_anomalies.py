"""Anomalies on generated data with injected label noise and near-duplicates."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cvtools.settings import Settings
from cvtools.vision.anomalies import pairs as anom
from cvtools.vision.anomalies.errors import label_errors, neighbour_votes, with_neighbours
from cvtools.web import create_app

from ..conftest import fill_classes, run_training, wait_jobs
from ..helpers import TestClient, class_image, snapshot
from .test_duplicates import _png, drawing


def _promote(client: TestClient) -> None:
    run = run_training(client, "head", epochs=20)
    assert client.post("/api/models/promote", json={"run": run["id"], "build_index": False}).status_code == 200


def _variant(data: bytes, how: str) -> bytes:
    img = Image.open(io.BytesIO(data)).convert("RGB")
    if how == "resized":
        img = img.resize((int(img.width * 0.8), int(img.height * 0.8)))
    elif how == "cropped":
        img = img.crop((3, 3, img.width - 3, img.height - 3))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()


def test_no_model_is_503(client: TestClient) -> None:
    assert client.get("/api/anomalies?type=errors").status_code == 503
    assert client.post("/api/anomalies?type=errors").status_code == 503


def test_label_errors_found_and_ranked(tiny_client: TestClient, dataset_dir: Path) -> None:
    fill_classes(tiny_client, per_class=12)
    wrong = [("files", (f"oops{i}.png", class_image("red", 500 + i), "image/png")) for i in range(2)]
    injected = {a["id"] for a in tiny_client.post("/api/groups/green/images", files=wrong).json()["added"]}
    _promote(tiny_client)
    before = snapshot(dataset_dir)
    for method in ("cross_validation", "production"):
        r = tiny_client.get(f"/api/anomalies?type=errors&method={method}")
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert set(items[0]) >= {"id", "path", "thumb", "group", "probability", "detected", "detected_probability"}
        scores = [i["detected_probability"] / max(i["probability"], 1e-9) for i in items]
        assert scores == sorted(scores, reverse=True)
        if method == "cross_validation":
            top = {i["id"] for i in items[: 2 * len(injected)]}
            assert injected <= top, items[:4]
            assert all(i["detected"] == "red" for i in items if i["id"] in injected)
    assert snapshot(dataset_dir) == before  # looking changes nothing
    # Acting: move the injected images to the detected group; the list is current afterwards.
    assert tiny_client.post("/api/images/move", json={"ids": sorted(injected), "group": "red"}).json() == {"moved": 2}
    wait_jobs(tiny_client)
    after = {i["id"] for i in tiny_client.get("/api/anomalies?type=errors").json()["items"]}
    assert not injected & after
    assert tiny_client.get("/api/anomalies?type=weird").status_code == 422
    assert tiny_client.get("/api/anomalies?type=errors&method=magic").status_code == 422


def test_duplicates_found_cross_group_first(tiny_settings: Settings) -> None:
    with TestClient(create_app(tiny_settings.model_copy(update={"phash_max_bits": 10}))) as tiny_client:
        wait_jobs(tiny_client)
        _check_duplicates(tiny_client)


def _check_duplicates(tiny_client: TestClient) -> None:
    fill_classes(tiny_client, per_class=10, size=128)
    # One plain shape on a plain background is the same picture as any other of that shape (see the
    # README): the copies are made of drawings, which have something to tell them apart.
    files = [("files", (f"drawing{k}.png", _png(drawing(30 + k)), "image/png")) for k in range(6)]
    added = tiny_client.post("/api/groups/red/images", files=files).json()["added"]
    originals = added[:3]
    drawings = {a["id"] for a in added}
    copies = []
    for n, (orig, how) in enumerate(zip(originals, ["resized", "cropped", "resized"], strict=True)):
        data = _variant(tiny_client.get(f"/api/images/{orig['id']}/file").content, how)
        target = "green" if n == 0 else "red"
        added = tiny_client.post(
            f"/api/groups/{target}/images", files=[("files", (f"copy{n}.jpg", data, "image/jpeg"))]
        ).json()
        copies.append((orig["id"], added["added"][0]["id"]))
    _promote(tiny_client)
    job = tiny_client.post("/api/anomalies?type=duplicates").json()["job"]
    wait_jobs(tiny_client, 60)
    assert tiny_client.get(f"/api/jobs/{job}").json()["state"] == "done"
    pairs = tiny_client.get("/api/anomalies?type=duplicates").json()["pairs"]
    found = {frozenset((p["a"]["id"], p["b"]["id"])) for p in pairs}
    assert {frozenset(c) for c in copies} <= found
    assert pairs[0]["pair"] == 1 and {pairs[0]["a"]["id"], pairs[0]["b"]["id"]} == set(copies[0])  # cross-group first
    assert set(pairs[0]["a"]) >= {"id", "group", "path", "thumb"} and "distance" in pairs[0]
    drawing_pairs = [p for p in pairs if {p["a"]["id"], p["b"]["id"]} & (drawings | {c for _, c in copies})]
    assert len(drawing_pairs) == len(copies), drawing_pairs
    same = [p for p in pairs if not p["cross_group"]]
    assert [p["distance"] for p in same] == sorted(p["distance"] for p in same)
    # Deleting one of a pair removes the pair.
    tiny_client.post("/api/images/status", json={"ids": [copies[1][1]], "status": "deleted"})
    wait_jobs(tiny_client)
    pairs = tiny_client.get("/api/anomalies?type=duplicates").json()["pairs"]
    assert frozenset(copies[1]) not in {frozenset((p["a"]["id"], p["b"]["id"])) for p in pairs}


def test_pair_search_units() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5000, 300)).astype(np.float32)
    x[4000] = x[17] + 0.01 * rng.normal(size=300)
    x[4999] = x[2500]
    pairs = {(i, j) for i, j, _ in anom.embedding_pairs(x, 0.05)}
    assert pairs == {(17, 4000), (2500, 4999)}
    assert anom.exact_pairs(["a", "b", "a", "c", "a"]) == [(0, 2), (0, 4), (2, 4)]
    hashes = ["f0f0f0f0f0f0f0f0", "f0f0f0f0f0f0f0f1", "0f0f0f0f0f0f0f0f", None, "0000000000000000", "0000000000000001"]
    assert anom.phash_pairs(hashes, 2) == [(0, 1, 1)]  # the near-constant hashes 4 and 5 say nothing
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]])
    errs = label_errors(probs, np.array([0, 0, 1]))
    assert [e.index for e in errs] == [1]


def test_neighbour_agreement_finds_what_the_held_out_head_half_believes() -> None:
    """Each image's nearest other images vote (itself never, an identical copy does); a small group asks
    only as many neighbours as it has other members; blended in, the votes list an image whose held-out
    answer still (wrongly) favours its label."""
    rng = np.random.default_rng(0)
    centres = 5 * rng.normal(size=(3, 32))
    x = np.repeat(centres, [12, 12, 3], axis=0) + 0.1 * rng.normal(size=(27, 32))
    labels = np.repeat(np.arange(3), [12, 12, 3])
    labels[0] = 1  # a cluster-0 image filed under group 1
    votes = neighbour_votes(x, labels, 3, 20)
    assert np.allclose(votes.sum(1), 1.0)
    assert votes[0, 0] == pytest.approx(11 / 12)  # group 1 asks 12: the 11 other cluster-0 images come first
    assert votes[24:, 2].tolist() == [1.0, 1.0, 1.0]  # group 2 (3 images) asks its 2 others only
    twins = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.1, 1.0]])
    assert neighbour_votes(twins, np.array([0, 1, 1, 1]), 2, 1)[:2].tolist() == [[0.0, 1.0], [1.0, 0.0]]
    probs = np.tile([0.2, 0.75, 0.05], (27, 1))
    probs[labels == 0] = [0.9, 0.05, 0.05]
    probs[labels == 2] = [0.05, 0.05, 0.9]
    probs[0] = [0.4, 0.6, 0.0]  # the held-out head half believes the wrong label
    assert 0 not in [e.index for e in label_errors(probs, labels)]
    blended = with_neighbours(probs, x, labels)
    assert np.allclose(blended.sum(1), 1.0)
    assert [e.index for e in label_errors(blended, labels)][:1] == [0]
