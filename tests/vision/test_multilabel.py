"""Multi-label datasets: memberships with hard links, exclusive attributes, training, answers, anomalies."""

from __future__ import annotations

import io
import os
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from cvtools.settings import Settings
from cvtools.vision import multilabel as ml
from cvtools.vision.training.splits import mask_by_combination
from cvtools.web import create_app

from ..conftest import run_training, wait_jobs
from ..helpers import TestClient, assert_consistent, class_image, snapshot

COLOURS = {"red": (205, 40, 40), "blue": (40, 60, 205)}


def picture(colour: str, shape: str, seed: int, size: int = 72) -> bytes:
    """Two independent properties: the background colour and the drawn shape (round or striped)."""
    rnd = random.Random(f"{colour}-{shape}-{seed}")
    bg = tuple(min(255, max(0, c + rnd.randint(-25, 25))) for c in COLOURS[colour])
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    if shape == "round":
        r = rnd.randint(size // 5, size // 3)
        cx, cy = rnd.randint(r, size - r), rnd.randint(r, size - r)
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(250, 250, 250))
    else:
        width = rnd.randint(3, 5)
        for y in range(rnd.randint(0, 5), size, width + rnd.randint(4, 7)):
            d.rectangle((0, y, size, y + width - 1), fill=(250, 250, 250))
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def test_layout_and_label_sets() -> None:
    layout = ml.Layout.build(["colour/blue", "colour/red", "round", "striped"], ["colour"])
    assert layout.attributes == {"colour": [0, 1]} and layout.independent == [2, 3]
    import torch

    logits = torch.tensor([[2.0, 0.0, 3.0, -3.0]])
    p = ml.probabilities(logits, layout).numpy()[0]
    assert abs(p[0] + p[1] - 1) < 1e-6 and p[2] > 0.9 and p[3] < 0.1  # softmax in the attribute, sigmoids else
    sets = ml.predict_sets(np.array([[0.6, 0.55, 0.7, 0.2]]), layout, np.full(4, 0.5, np.float32))
    assert sets.tolist() == [[True, False, True, False]]  # one value per attribute
    y = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 0, 1]], bool)
    assert ml.micro_macro_f1(y, y) == (1.0, 1.0)
    mask = mask_by_combination([f"s{i}" for i in range(30)], np.repeat(y, 10, axis=0), test_size=0.2)
    assert mask.sum() == 6  # 2 of each of the 3 combinations of 10


@pytest.fixture
def multi(tiny_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(tiny_settings.model_copy(update={"label_mode": "multi"}))) as c:
        wait_jobs(c)
        yield c


def fill(c: TestClient, per: int = 8) -> dict[str, list[str]]:
    """colour (exclusive: red / blue) x independent labels round / striped; each image in its colour
    group and added to its shape group. Returns shape -> ids in the colour groups."""
    c.post("/api/groups", json={"name": "colour"})
    assert c.patch("/api/groups/colour", json={"exclusive": True}).json() == {"name": "colour", "exclusive": True}
    for colour in COLOURS:
        c.post("/api/groups", json={"name": colour, "parent": "colour"})
    for shape in ("round", "striped"):
        c.post("/api/groups", json={"name": shape})
    ids: dict[str, list[str]] = {"round": [], "striped": []}
    for colour in COLOURS:
        for shape in ids:
            files = [
                ("files", (f"{colour}-{shape}{i}.png", picture(colour, shape, i), "image/png")) for i in range(per)
            ]
            added = c.post(f"/api/groups/colour/{colour}/images", files=files).json()["added"]
            ids[shape] += [a["id"] for a in added]
    for shape, members in ids.items():
        assert c.post("/api/images/add", json={"ids": members, "group": shape}).json() == {"added": len(members)}
    return ids


def test_memberships_on_disk_and_mode_switch(multi: TestClient, dataset_dir: Path) -> None:
    ids = fill(multi, per=3)
    assert multi.get("/api/dataset/mode").json() == {"label_mode": "multi", "multi_members": 12}
    groups = {g["name"]: g for g in multi.get("/api/groups").json()["groups"]}
    assert groups["colour"]["exclusive"] and "exclusive" not in groups["round"]
    assert groups["round"]["counts"]["group"] == 6
    # The shape folder holds the same file (a hard link here) and the listing shows both groups.
    img = multi.get("/api/groups/round/images").json()["images"][0]
    assert sorted(img["groups"]) == sorted(["round", img["groups"][0]]) and len(img["groups"]) == 2
    colour_copy = next(
        i for i in multi.get(f"/api/groups/{img['groups'][0]}/images").json()["images"] if i["sha256"] == img["sha256"]
    )
    assert os.path.samefile(img["path"], colour_copy["path"])
    # Adding again changes nothing; a New image or an unknown group is refused.
    assert multi.post("/api/images/add", json={"ids": [ids["round"][0]], "group": "round"}).json() == {"added": 0}
    assert multi.post("/api/images/add", json={"ids": [ids["round"][0]], "group": "nope"}).status_code == 404
    # Moving a membership into a group that already has the image: 409, nothing changes.
    before = snapshot(dataset_dir)
    r = multi.post("/api/images/move", json={"ids": [img["id"]], "group": img["groups"][0]})
    assert r.status_code == 409 and snapshot(dataset_dir) == before
    # Back to single-label is refused while images are in several groups.
    r = multi.put("/api/dataset/mode", json={"label_mode": "single"})
    assert r.status_code == 409 and "12 image(s)" in r.json()["detail"]
    # Removing a membership: the other stays; the last one goes to Deleted, never lost.
    assert multi.post("/api/images/status", json={"ids": [img["id"]], "status": "deleted"}).json() == {"updated": 1}
    assert Path(colour_copy["path"]).is_file() and not Path(img["path"]).exists()
    r = multi.post("/api/images/status", json={"ids": [colour_copy["id"]], "status": "deleted"})
    assert r.json()["updated"] == 1
    deleted = multi.get(f"/api/groups/{img['groups'][0]}/images?status=deleted").json()["images"]
    assert [d["sha256"] for d in deleted] == [img["sha256"]] and Path(deleted[0]["path"]).is_file()
    assert_consistent(dataset_dir)
    assert multi.put("/api/dataset/mode", json={"label_mode": "wrong"}).status_code == 422
    assert multi.patch("/api/groups/colour/red", json={"exclusive": True}).status_code == 400


def test_single_mode_unchanged_and_switch_round_trip(client: TestClient, dataset_dir: Path) -> None:
    client.post("/api/groups", json={"name": "a"})
    client.post("/api/groups", json={"name": "b"})
    files = [("files", (f"x{i}.png", class_image("red", i), "image/png")) for i in range(3)]
    added = client.post("/api/groups/a/images", files=files).json()["added"]
    assert "groups" not in added[0] and client.get("/api/dataset/mode").json()["label_mode"] == "single"
    r = client.post("/api/images/add", json={"ids": [added[0]["id"]], "group": "b"})
    assert r.status_code == 409 and "multi-label" in r.json()["detail"]
    before = snapshot(dataset_dir)
    assert client.put("/api/dataset/mode", json={"label_mode": "multi"}).json()["label_mode"] == "multi"
    assert client.put("/api/dataset/mode", json={"label_mode": "single"}).json()["label_mode"] == "single"
    assert snapshot(dataset_dir) == before and client.get("/api/groups/a/images").json()["total"] == 3


def test_training_answers_and_anomalies(multi: TestClient) -> None:
    ids = fill(multi, per=8)
    # Two injected anomalies on the colour attribute (what the tiny random network sees best):
    # a red picture also put in colour/blue, and a blue one taken out of colour/blue (it stays in
    # its shape group).
    colour_rows = {
        i["sha256"]: i for c in COLOURS for i in multi.get(f"/api/groups/colour/{c}/images?limit=1000").json()["images"]
    }
    by_id = {i["id"]: i for i in colour_rows.values()}
    red = next(i for i in ids["round"] if by_id[i]["group"] == "colour/red")
    assert multi.post("/api/images/add", json={"ids": [red], "group": "colour/blue"}).json() == {"added": 1}
    blue = next(i for i in ids["striped"] if by_id[i]["group"] == "colour/blue")
    multi.post("/api/images/status", json={"ids": [blue], "status": "deleted"})
    run = run_training(multi, "head", epochs=30)
    assert run["label_mode"] == "multi" and run["micro_f1"] >= 0.8, run
    assert set(run["per_group"]) == {"colour/blue", "colour/red", "round", "striped"}
    assert set(run["per_group"]["round"]) >= {"precision", "recall", "f1", "threshold"}
    colour = run["attributes"]["colour"]
    assert colour["accuracy"] >= 0.8 and len(colour["confusion"]) == 2
    assert multi.post("/api/models/promote", json={"run": run["id"], "build_index": False}).status_code == 200
    # /cv: every group with its own probability, highest first; no longer summing to 1.
    new = picture("blue", "round", 999)
    cv = multi.post("/cv", content=new).json()
    assert [g for g, _ in cv] and len(cv) == 4 and [p for _, p in cv] == sorted((p for _, p in cv), reverse=True)
    res = multi.post("/api/classify", files=[("files", ("n.png", new, "image/png"))]).json()["results"][0]
    # the colour attribute gives exactly one value; the shape labels of a random tiny network are a guess
    assert "colour/blue" in res["labels"] and "colour/red" not in res["labels"], res
    assert set(res["labels"]) <= {"colour/blue", "round", "striped"}
    # Anomalies: both injected memberships are listed near the top.
    items = multi.get("/api/anomalies?type=errors").json()["items"]
    top = items[:4]
    red_sha = by_id[red]["sha256"]
    rejected = [i for i in top if i["kind"] == "rejected" and i["group"] == "colour/blue"]
    assert rejected and multi.get(f"/api/images/{rejected[0]['id']}").json()["sha256"] == red_sha, top
    assert rejected[0]["probability"] < 0.2
    missing = [i for i in top if i["kind"] == "missing" and i["detected"] == "colour/blue"]
    assert missing and multi.get(f"/api/images/{missing[0]['id']}").json()["sha256"] == by_id[blue]["sha256"], top


def test_finetune_multi_and_onnx_export(multi: TestClient) -> None:
    """Finetune mode with the Hugging Face multi-label problem type; the exported ONNX file gives the
    engine's own per-group probabilities (softmax inside the attribute, sigmoid for labels)."""
    import json

    import onnxruntime as ort

    fill(multi, per=6)
    run = run_training(multi, "finetune", num_train_epochs=2, per_device_train_batch_size=8)
    assert run["mode"] == "finetune" and run["label_mode"] == "multi" and len(run["epochs"]) == 2
    assert set(run["per_group"]) == {"colour/blue", "colour/red", "round", "striped"}
    assert 0 <= run["micro_f1"] <= 1 and "colour" in run["attributes"]
    assert multi.post("/api/models/promote", json={"run": run["id"], "build_index": False}).status_code == 200
    image = picture("red", "striped", 321)
    cv = dict(multi.post("/cv", content=image).json())
    assert abs(cv["colour/red"] + cv["colour/blue"] - 1) < 1e-4  # one softmax inside the attribute
    res = multi.post("/api/classify", files=[("files", ("x.png", image, "image/png"))]).json()["results"][0]
    assert isinstance(res["labels"], list)
    onnx = multi.get(f"/api/models/{run['id']}/export?format=onnx")
    assert onnx.status_code == 200
    sess = ort.InferenceSession(onnx.content, providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    classes, pre = json.loads(meta["classes"]), json.loads(meta["preprocess"])
    from cvtools.vision.preprocess import Preprocess

    prep = Preprocess(size=pre["size"], crop_pct=pre["crop_pct"], mean=tuple(pre["mean"]), std=tuple(pre["std"]))
    probs = sess.run(None, {"pixel_values": prep.batch([Image.open(io.BytesIO(image)).convert("RGB")]).numpy()})[0][0]
    for c, p in zip(classes, probs, strict=True):
        assert abs(float(p) - cv[c]) < 1e-3, (c, p, cv[c])
