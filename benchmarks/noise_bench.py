"""Label errors on report data: how well the Anomalies page's error score (cross-validation on the
frozen embeddings, p(detected) / p(own)) ranks injected label errors, at 5, 10 and 20 % noise, on the
report categories of each family, three seeds each. Nothing here chose a threshold or a method: the
error finder was built on openclipart categories of train_bench/anomaly_bench before this protocol.

    python -m benchmarks.noise_bench [--per-category 40]
"""

from __future__ import annotations

import argparse
import json
import random

import numpy as np
from sklearn.metrics import roc_auc_score

from cvtools import imaging
from cvtools.vision.anomalies.folds import out_of_fold_probs
from cvtools.vision.embeddings import Item, cached_views

from .common import build, environment
from .families import FAMILIES, Family

NOISE = (0.05, 0.10, 0.20)
SEEDS = (0, 1, 2)


def embedded(family: Family, per_category: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The report categories' images, embedded as the app does (plain and mirror view): (views stacked
    as [2, n, d], true labels, sha256s)."""
    _, sv = build()
    rng = random.Random(0)
    labels, items = [], []
    for c, cat in enumerate(family.report):
        files = list(family.categories[cat])
        rng.shuffle(files)
        for path in files[:per_category]:
            items.append(Item(imaging.sha256_file(path), path))
            labels.append(c)
    kept, views, _ = cached_views(
        sv.store, sv.models.backbone(), items, [0, 1], batch_size=16, max_pixels=sv.settings.max_image_pixels, job=None
    )
    shas = [f"{items[k].sha256}-{k}" for k in kept]
    return np.stack(views), np.array(labels)[kept], shas


def one(views: np.ndarray, truth: np.ndarray, shas: list[str], noise: float, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    n_classes = int(truth.max()) + 1
    wrong = rng.choice(len(truth), size=max(1, round(noise * len(truth))), replace=False)
    noisy = truth.copy()
    noisy[wrong] = (truth[wrong] + rng.integers(1, n_classes, size=len(wrong))) % n_classes
    probs = out_of_fold_probs(list(views), noisy, shas, n_classes)
    own = probs[np.arange(len(noisy)), noisy]
    other = np.where(np.arange(n_classes)[None, :] == noisy[:, None], -1.0, probs).max(1)
    score = other / np.maximum(own, 1e-9)  # the page's order: p(detected) / p(own)
    is_wrong = np.zeros(len(noisy), bool)
    is_wrong[wrong] = True
    top = np.argsort(-score)
    k = len(wrong)
    return {
        "auroc": float(roc_auc_score(is_wrong, score)),
        "precision_at_k": float(is_wrong[top[:k]].mean()),
        "recall_in_top_2k": float(is_wrong[top[: 2 * k]].sum() / k),
    }


def main() -> None:
    environment()
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-category", type=int, default=40)
    ap.add_argument("--family", choices=sorted(FAMILIES), action="append", help="default: every family")
    args = ap.parse_args()
    out: dict[str, dict] = {}
    for name, make in FAMILIES.items():
        if args.family and name not in args.family:
            continue
        family = make()
        views, truth, shas = embedded(family, args.per_category)
        out[name] = {"images": len(truth), "categories": len(family.report)}
        for noise in NOISE:
            runs = [one(views, truth, shas, noise, seed) for seed in SEEDS]
            out[name][f"{noise:.0%}"] = {
                k: f"{np.mean([r[k] for r in runs]):.3f} ± {np.std([r[k] for r in runs], ddof=1):.3f}" for k in runs[0]
            }
        print(json.dumps({name: out[name]}), flush=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
