"""One trained model for the bundle tests: head mode on three colour groups (calibrated), promoted,
exported as a bundle, with the app's own /cv answers for a set of test images."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from cvtools.settings import Settings
from cvtools.web import create_app

from ..conftest import fill_classes, run_training, wait_jobs
from ..helpers import TestClient, class_image


@dataclass
class Trained:
    settings: Settings
    run: str
    bundle: Path  # a folder
    images: dict[str, bytes]  # name -> bytes, varied formats and sizes
    app_cv: dict[str, list]  # name -> the app's /cv answer (every group, the unknown score first)
    zip_bytes: bytes  # GET /api/models/{run}/export?format=bundle


def query_images(folder: Path) -> dict[str, bytes]:
    """Images of every kind the app decodes: PNG, big JPEG (reduced decoding), RGBA, GIF, WebP, odd sizes."""
    rng = random.Random(7)
    out: dict[str, bytes] = {}
    for i in range(36):
        cls = ("red", "green", "blue")[i % 3]
        fmt = ("PNG", "JPEG", "WEBP", "GIF")[i % 4]
        size = rng.choice([40, 72, 150, 700])
        out[f"{cls}{i}.{fmt.lower()}"] = class_image(cls, 500 + i, size, fmt=fmt)
    for i in range(4):  # noise and transparency: images unlike any group
        img = Image.effect_noise((rng.randint(60, 300), rng.randint(60, 300)), 80).convert("RGBA")
        buf = io.BytesIO()
        img.save(buf, "PNG")
        out[f"noise{i}.png"] = buf.getvalue()
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in out.items():
        (folder / name).write_bytes(data)
    return out


@pytest.fixture(scope="package")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_convnext: Path) -> Iterator[Trained]:
    root = tmp_path_factory.mktemp("bundle")
    images = query_images(root / "queries")
    settings = Settings(
        dataset_dir=root / "dataset",
        neuronet=str(tiny_convnext),
        preload_model=False,
        batch_size=16,
        cv_unknown=True,
        public_dirs=[root / "queries"],
    )
    with TestClient(create_app(settings)) as c:
        wait_jobs(c)
        fill_classes(c, per_class=10)
        run = run_training(c, "head", epochs=10)["id"]
        c.post("/api/models/promote", json={"run": run, "build_index": False})
        app_cv = {}
        for name in images:
            r = c.get(f"/cv?{root / 'queries' / name}:0")
            assert r.status_code == 200, r.text
            app_cv[name] = r.json()
        from cvtools.vision.bundle_export import write_bundle

        sv = c.app.state.services  # type: ignore[attr-defined]
        bundle = write_bundle(sv.models, run, root / "bundle", max_pixels=settings.max_image_pixels)
        r = c.get(f"/api/models/{run}/export?format=bundle")
        assert r.status_code == 200 and r.headers["content-type"] == "application/zip", r.text
    yield Trained(settings, run, bundle, images, app_cv, r.content)
