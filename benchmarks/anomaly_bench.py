"""Anomaly benchmark on real drawings (openclipart) with the offline backbone.

Prints: recall of injected label errors (10 % of the images put in a wrong group) within the top
2 x (number injected), cross_validation vs production (the original's way); injected near-duplicates
found and other pairs listed; embedding distances of the copies vs the closest distinct images (for
calibrating max_equal_distance); time and peak memory of the duplicate search at 50k embeddings.

    python -m benchmarks.anomaly_bench
"""

from __future__ import annotations

import io
import json
import random
import time
import tracemalloc
from pathlib import Path

import numpy as np
from PIL import Image

from cvtools import imaging
from cvtools.dataset import Incoming
from cvtools.vision.anomalies import pairs as pair_search
from cvtools.web import presenters

from .common import (
    CATEGORIES,
    build,
    category_files,
    cpu_note,
    environment,
    import_files,
    openclipart,
    split_files,
    train,
)


def _layers(pairs: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in pairs:
        key = "+".join(p["layers"])
        out[key] = out.get(key, 0) + 1
    return out


def _content(path: Path, max_pixels: int) -> tuple[np.ndarray, float]:
    """The drawing cropped to its ink (pixels unlike the background), as 64x64 grey, and its aspect ratio."""
    im = imaging.load_rgb(path, max_pixels=max_pixels)
    im.thumbnail((512, 512))
    g = np.asarray(im.convert("L"), dtype=np.float32)
    bg = float(np.median(np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])))
    ys, xs = np.nonzero(np.abs(g - bg) > 24)
    if len(ys) == 0:
        return np.zeros((64, 64), np.float32), 1.0
    crop = g[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    small = np.asarray(Image.fromarray(crop).resize((64, 64), Image.Resampling.BILINEAR), dtype=np.float32)
    return small, crop.shape[1] / crop.shape[0]


def same_drawing(a: Path, b: Path, max_pixels: int) -> bool:
    """A pixel-level judge independent of the detectors: the inked parts of both images, scaled to
    the same size, correlate at 0.9 or more and have the same shape (aspect within 10 %)."""
    (x, ra), (y, rb) = _content(a, max_pixels), _content(b, max_pixels)
    if abs(np.log(ra / rb)) > np.log(1.1) or x.std() == 0 or y.std() == 0:
        return False
    return float(np.corrcoef(x.ravel(), y.ravel())[0, 1]) >= 0.9


def main() -> None:
    environment()
    root = openclipart()
    settings, sv = build()
    ds = sv.dataset
    rng = random.Random(0)
    groups = [c.replace("/", "-") for c in CATEGORIES]
    files = {g: split_files(category_files(root, c), 45, 0)[0] for g, c in zip(groups, CATEGORIES, strict=True)}
    everything = [(g, f) for g in groups for f in files[g]]
    n_wrong = len(everything) // 10
    wrong = set(rng.sample(range(len(everything)), n_wrong))
    placed: dict[str, list] = {g: [] for g in groups}
    for k, (g, f) in enumerate(everything):
        target = rng.choice([x for x in groups if x != g]) if k in wrong else g
        placed[target].append(f)
    for g in groups:
        import_files(ds, g, placed[g])
    wrong_shas = {imaging.sha256_file(everything[k][1]) for k in wrong}
    run = train(sv)
    sv.models.promote(run)

    recall = {}
    timing = {}
    for method in ("cross_validation", "production"):
        t0 = time.perf_counter()
        items = presenters.anomalies(sv.anomalies.get("errors", method))["items"]
        timing[method] = round(time.perf_counter() - t0, 2)
        shas = {r.id: r.sha256 for r in ds.with_status("group")}
        top = [shas[i["id"]] for i in items[: 2 * n_wrong]]
        recall[method] = round(len(wrong_shas & set(top)) / len(wrong_shas), 3)

    # Near-duplicates: 16 resized / cropped / re-compressed copies, half of them in another group.
    rows = ds.with_status("group")
    chosen = rng.sample(rows, 16)
    injected = set()
    for n, row in enumerate(chosen):
        img = imaging.load_rgb(row.path, max_pixels=settings.max_image_pixels)
        if n % 2:
            img = img.resize((max(1, int(img.width * 0.7)), max(1, int(img.height * 0.7))))
        else:
            w, h = img.size
            img = img.crop((int(w * 0.04), int(h * 0.04), int(w * 0.96), int(h * 0.96)))
        out = io.BytesIO()
        img.save(out, "JPEG", quality=80)
        target = row.group if n < 8 else rng.choice([g for g in groups if g != row.group])
        tmp = ds.new_tmp_path()
        tmp.write_bytes(out.getvalue())
        added = ds.add_images(target, [Incoming(f"copy{n}.jpg", tmp)]).added
        injected.add(frozenset((row.id, added[0].id)))
    t0 = time.perf_counter()
    pairs = presenters.anomalies(sv.anomalies.get("duplicates"))["pairs"]
    dup_s = time.perf_counter() - t0
    found = {frozenset((p["a"]["id"], p["b"]["id"])) for p in pairs}
    by_pair = {frozenset((p["a"]["id"], p["b"]["id"])): p for p in pairs}
    copy_dist = sorted(by_pair[p]["distance"] for p in injected if p in by_pair)

    # Which listed pairs are the same drawing, by pixels (openclipart holds real duplicates too)?
    def judged(pair_ids: frozenset) -> bool:
        pr = by_pair[pair_ids]
        return same_drawing(Path(pr["a"]["path"]), Path(pr["b"]["path"]), settings.max_image_pixels)

    copies_judged_same = sum(judged(x) for x in injected & found)
    others_same = sum(judged(x) for x in found - injected)
    true_pairs = len(injected & found) + others_same
    false_pairs = len(found) - true_pairs

    sheet = [by_pair[x] for x in sorted(found - injected, key=lambda x: by_pair[x]["distance"])][:24]
    if sheet:
        canvas = Image.new("RGB", (2 * 128 + 10, 128 * len(sheet)), "white")
        for k, pr in enumerate(sheet):
            for j, side in enumerate(("a", "b")):
                im = imaging.load_rgb(Path(pr[side]["path"]), max_pixels=settings.max_image_pixels)
                im.thumbnail((128, 128))
                canvas.paste(im, (j * 138, k * 128))
        canvas.save(settings.dataset_dir.parent / "other_pairs.png")
        print(f"# other pairs contact sheet: {settings.dataset_dir.parent / 'other_pairs.png'}")

    # Calibration: the closest pair of distinct (non-copy) images in the same embedding space.
    p = sv.models.production()
    assert p is not None
    rows = ds.with_status("group")
    vecs = sv.store.get(p.backbone.fingerprint, [r.sha256 for r in rows], 0, p.backbone.feature_dim)
    unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    sims = unit @ unit.T
    ids = [r.id for r in rows]
    np.fill_diagonal(sims, -1)
    copy_ids = {i for pair in injected for i in pair}
    distinct = [
        1 - sims[i, j]
        for i in range(len(ids))
        for j in range(i + 1, len(ids))
        if not ({ids[i], ids[j]} <= copy_ids and frozenset((ids[i], ids[j])) in injected)
    ]
    distinct.sort()

    # Scale: 50k synthetic 1280-d embeddings with 100 planted near-copies.
    gen = np.random.default_rng(0)
    big = gen.normal(size=(50_000, 1280)).astype(np.float32)
    for k in range(100):
        big[49_000 + k] = big[k] + 0.05 * gen.normal(size=1280).astype(np.float32)
    tracemalloc.start()
    t0 = time.perf_counter()
    big_pairs = pair_search.embedding_pairs(big, settings.max_equal_distance)
    big_s = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    planted = sum(1 for i, j, _ in big_pairs if j == i + 49_000)

    print(f"# {cpu_note()}; offline backbone; {len(everything)} images, {n_wrong} put in a wrong group")
    print(
        json.dumps(
            {
                "label_errors": {"injected": n_wrong, "depth": 2 * n_wrong, "recall": recall, "seconds": timing},
                "near_duplicates": {
                    "injected": len(injected),
                    "found": len(injected & found),
                    "other_pairs_listed": len(found - injected),
                    "search_s": round(dup_s, 2),
                    "copy_distances": copy_dist,
                    "pixel_judge": {
                        "injected_found_judged_same": copies_judged_same,
                        "other_pairs_judged_same": others_same,
                        "true_pairs_listed": true_pairs,
                        "false_pairs_listed": false_pairs,
                    },
                    "other_pairs_by_layers": _layers([by_pair[x] for x in found - injected]),
                    "other_pairs_same_sha256": sum(
                        1
                        for x in found - injected
                        if by_pair[x]["distance"] == 0.0 and "identical" in by_pair[x]["layers"]
                    ),
                    "closest_distinct_distances": [round(float(d), 4) for d in distinct[:5]],
                    "max_equal_distance": settings.max_equal_distance,
                },
                "scale_50k": {
                    "seconds": round(big_s, 1),
                    "peak_mb": round(peak / 2**20, 1),
                    "pairs": len(big_pairs),
                    "planted_found": planted,
                    "planted": 100,
                },
            },
            indent=2,
        )
    )
    sv.close()


if __name__ == "__main__":
    main()
