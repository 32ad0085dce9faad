"""ONNX Runtime parity with PyTorch, identical head-mode answers, and the exported model file."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from cvtools.settings import Settings
from cvtools.vision.backbone import load_backbone
from cvtools.vision.onnx_runtime import accelerate
from cvtools.web import create_app

from ..conftest import fill_classes, run_training, wait_jobs
from ..helpers import TestClient, class_image


def real_batch(pre, n: int = 6):  # type: ignore[no-untyped-def]
    imgs = [
        Image.open(io.BytesIO(class_image(c, i, size=120))).convert("RGB")
        for c in ("red", "green", "blue")
        for i in range(n // 3)
    ]
    return pre.batch(imgs)


@pytest.mark.parametrize("which", ["tiny-convnextv2", "efficientnet-lite0"])
def test_parity_on_images(which: str, tiny_convnext: Path, tmp_path: Path) -> None:
    bb = load_backbone(str(tiny_convnext) if which == "tiny-convnextv2" else "efficientnet-lite0")
    batch = real_batch(bb.preprocess)
    with torch.inference_mode():
        ref = bb.features_torch(batch).numpy()
    runtime, note = accelerate(bb.features_torch, bb.model, bb.preprocess.size, tmp_path / "m.onnx")
    assert runtime is not None, note
    got = runtime(batch).numpy()
    assert np.abs(got - ref).max() <= 1e-4
    with torch.inference_mode():  # exporting must not change the PyTorch model
        assert np.abs(bb.features_torch(batch).numpy() - ref).max() == 0
    assert runtime(batch[:1]).shape == (1, ref.shape[1])  # dynamic batch axis


def test_head_answers_identical_and_export(tiny_settings: Settings) -> None:
    with TestClient(create_app(tiny_settings)) as c:
        wait_jobs(c)
        fill_classes(c, per_class=6)
        run = run_training(c, "head", epochs=10)["id"]
        c.post("/api/models/promote", json={"run": run, "build_index": False})
        sv = c.app.state.services  # type: ignore[attr-defined]
        status = c.get("/api/status").json()["model"]
        assert status["runtime"] == "onnxruntime", status
        p = sv.models.production()
        imgs = [
            Image.open(io.BytesIO(class_image(cl, 300 + i))).convert("RGB")
            for cl in ("red", "green", "blue")
            for i in range(4)
        ]
        fast = sv.classifier.classify(imgs)
        runtime, p.backbone.runtime = p.backbone.runtime, None
        try:
            slow = sv.classifier.classify(imgs)
        finally:
            p.backbone.runtime = runtime
        assert [r[0][0] for r in fast] == [r[0][0] for r in slow]
        assert (
            max(abs(a[1] - b[1]) for rf, rs in zip(fast, slow, strict=True) for a, b in zip(rf, rs, strict=True)) < 1e-4
        )

        r = c.get(f"/api/models/{run}/export?format=onnx")
        assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
        sess = ort.InferenceSession(r.content, providers=["CPUExecutionProvider"])
        meta = sess.get_modelmeta().custom_metadata_map
        classes = json.loads(meta["classes"])
        pre = json.loads(meta["preprocess"])
        assert classes == p.classes and pre["size"] == p.preprocess.size
        probs = sess.run(None, {"pixel_values": p.preprocess.batch(imgs).numpy()})[0]
        for row, ranked in zip(probs, fast, strict=True):
            assert classes[int(row.argmax())] == ranked[0][0]
            assert abs(float(row.max()) - ranked[0][1]) < 1e-4
        assert c.get(f"/api/models/{run}/export?format=tflite").status_code == 400
        assert c.get("/api/models/nope/export").status_code == 404


def test_torch_runtime_setting(tiny_settings: Settings) -> None:
    with TestClient(create_app(tiny_settings.model_copy(update={"inference_runtime": "torch"}))) as c:
        wait_jobs(c)
        c.app.state.services.models.backbone()  # type: ignore[attr-defined]
        assert c.get("/api/status").json()["model"]["runtime"] == "torch"
