"""A multi-label model's bundle: the same probabilities and the same label sets as the app."""

from __future__ import annotations

from pathlib import Path

from cvtools.bundle import load_bundle
from cvtools.vision.bundle_export import write_bundle

from ..conftest import run_training
from ..helpers import TestClient
from ..vision.test_multilabel import fill, multi, picture  # noqa: F401  (multi: the fixture)


def test_labels_as_the_app(multi: TestClient, tmp_path: Path) -> None:  # noqa: F811
    fill(multi, per=8)
    run = run_training(multi, "head", epochs=15)["id"]
    multi.post("/api/models/promote", json={"run": run, "build_index": False})
    images = [picture(c, s, 900 + i) for c in ("red", "blue") for s in ("round", "striped") for i in range(4)]
    app = multi.post("/api/classify", files=[("files", (f"{i}.png", d, "image/png")) for i, d in enumerate(images)])
    sv = multi.app.state.services  # type: ignore[attr-defined]
    bundle = load_bundle(write_bundle(sv.models, run, tmp_path / "b.zip", max_pixels=sv.settings.max_image_pixels))
    assert bundle.layout is not None and bundle.meta["multi"]["layout"]["attributes"] == {"colour": [0, 1]}
    for want, data in zip(app.json()["results"], images, strict=True):
        probs, feats = bundle.run(bundle.array(bundle.decode(data))[None])
        got = bundle.record(probs[0], feats[0])
        assert got["labels"] == want["labels"] and got["labels"]
        assert [g for g, _ in got["classification"]] == [g for g, _ in want["classification"]]
        assert max(abs(a[1] - b[1]) for a, b in zip(got["classification"], want["classification"], strict=True)) <= 1e-5
