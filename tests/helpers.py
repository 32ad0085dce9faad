"""Small generated images and consistency checks shared by the tests."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient as _StarletteClient
from PIL import Image

from cvtools.dataset import STATE, Dataset


class TestClient(_StarletteClient):
    """Starlette's test client, addressed as a browser on this computer addresses the app
    (http://localhost): the app refuses requests for other host names (DNS rebinding)."""

    __test__ = False

    def __init__(self, app, base_url: str = "http://localhost", **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(app, base_url=base_url, **kw)


def image_bytes(
    seed: int = 0, size: tuple[int, int] = (48, 40), fmt: str = "PNG", color: tuple[int, int, int] | None = None
) -> bytes:
    """A distinct image per seed (noise over a base colour), encoded in fmt."""
    rng = np.random.default_rng(seed)
    base = np.array(color if color else rng.integers(0, 255, 3), dtype=np.int16)
    arr = np.clip(base + rng.integers(-40, 40, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(arr).save(out, fmt)
    return out.getvalue()


def shape_image(kind: str, seed: int, size: int = 64, fmt: str = "PNG") -> bytes:
    """Visually distinct classes: 'circle', 'square' or 'stripes', with random colours and positions."""
    rnd = random.Random(seed)
    from PIL import ImageDraw

    img = Image.new("RGB", (size, size), tuple(rnd.randint(180, 255) for _ in range(3)))
    d = ImageDraw.Draw(img)
    fg = tuple(rnd.randint(0, 90) for _ in range(3))
    r = rnd.randint(size // 5, size // 3)
    cx, cy = rnd.randint(r, size - r), rnd.randint(r, size - r)
    if kind == "circle":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fg)
    elif kind == "square":
        d.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fg)
    else:
        step = rnd.randint(5, 9)
        for x in range(0, size, step * 2):
            d.rectangle((x, 0, x + step - 1, size), fill=fg)
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


def write_tmp(ds: Dataset, data: bytes) -> Path:
    p = ds.new_tmp_path()
    p.write_bytes(data)
    return p


def assert_consistent(root: Path) -> dict[str, int]:
    """Every catalog image's file is where its status says; every group-folder file is catalogued."""
    ds = Dataset(root, max_image_pixels=50_000_000)
    try:
        rows = ds.catalog.all_images()
        for row in rows:
            assert ds.layout.abs_path(row).is_file(), f"missing file for {dict(row)}"
        in_catalog = {ds.layout.rel_path(r) for r in rows if r["status"] == "group"}
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                rel = (Path(dirpath) / name).relative_to(root).as_posix()
                assert rel in in_catalog, f"{rel} is in a group folder but not in the catalog"
        assert not ds.catalog.all_moves(), "pending moves left"
        stored = list((root / STATE / "files").iterdir())
        assert len(stored) == sum(1 for r in rows if r["status"] != "group"), "stray files in the store"
        return {"images": len(rows)}
    finally:
        ds.close()


CLASS_COLOURS = {"red": (200, 40, 40), "green": (40, 170, 60), "blue": (40, 60, 200)}


def class_image(cls: str, seed: int, size: int = 72, fmt: str = "PNG") -> bytes:
    """Visually distinct classes for training tests: a dominant colour and a shape per class."""
    from PIL import ImageDraw

    rnd = random.Random(f"{cls}-{seed}")
    base = CLASS_COLOURS[cls]
    bg = tuple(min(255, max(0, c + rnd.randint(-30, 30))) for c in base)
    img = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(img)
    r = rnd.randint(size // 6, size // 3)
    cx, cy = rnd.randint(r, size - r), rnd.randint(r, size - r)
    fg = tuple(rnd.randint(200, 255) for _ in range(3))
    kind = {"red": "circle", "green": "square", "blue": "stripes"}[cls]
    if kind == "circle":
        d.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fg)
    elif kind == "square":
        d.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fg)
    else:
        width, offset = rnd.randint(3, 6), rnd.randint(0, 9)
        for x in range(offset, size, width + rnd.randint(4, 8)):
            d.rectangle((x, 0, x + width - 1, size), fill=fg)
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


def snapshot(dataset_dir: Path) -> list[tuple[str, int]]:
    return sorted(
        (str(p.relative_to(dataset_dir)), p.stat().st_size)
        for p in dataset_dir.rglob("*")
        if p.is_file() and "catalog.sqlite" not in p.name and "thumbs" not in p.parts
    )
