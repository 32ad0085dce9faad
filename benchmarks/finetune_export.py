"""finetune_bench's first step, where the image families are: the draws of protocol_bench stored as
small JPEG files with a manifest, so that the second step can run on a machine without the families."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

from PIL import Image

STORED_SIDE = 256


def export(half: str, out: Path, n_train: int, n_test: int) -> None:
    from cvtools import imaging

    from . import protocol_bench
    from .families import FAMILIES, MAX_PIXELS

    (out / "img").mkdir(parents=True, exist_ok=True)
    runs = []
    for name, make in FAMILIES.items():
        family = make()
        for seed in protocol_bench.SEEDS:
            groups, _ = protocol_bench.draw(family, half, seed, n_train, n_test)
            run = {"family": name, "half": half, "seed": seed, "classes": sorted(groups), "train": [], "test": []}
            for label, cat in enumerate(run["classes"]):
                for part, files in zip(("train", "test"), groups[cat], strict=True):
                    for path in files:
                        try:
                            img = imaging.load_rgb(path, max_pixels=MAX_PIXELS, min_side=STORED_SIDE)
                        except imaging.ImageRejected:
                            continue
                        run[part].append([_store(img, out / "img"), label])
            runs.append(run)
            print(name, seed, len(run["train"]), len(run["test"]), flush=True)
    (out / f"manifest-{half}.json").write_text(json.dumps(runs))


def _store(img: Image.Image, folder: Path) -> str:
    img = img.copy()
    if min(img.size) > STORED_SIDE:
        s = STORED_SIDE / min(img.size)
        img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92)
    name = hashlib.sha256(buf.getvalue()).hexdigest()[:20] + ".jpg"
    (folder / name).write_bytes(buf.getvalue())
    return name
