"""Head mode against the best linear probe, on report categories no choice looked at: each seed draws
6 report categories of a family, trains head mode through the app (every default as shipped) on their
training images and scores both on held-out images. The probe is scikit-learn's LogisticRegression on
the same plain embeddings of the same training images, its C chosen by 5-fold cross-validation on
those training images only.

    python -m benchmarks.probe_bench [--train 30 --test 15]
"""

from __future__ import annotations

import argparse
import json
import random

import numpy as np
from sklearn.linear_model import LogisticRegressionCV

from cvtools import imaging
from cvtools.vision.embeddings import Item, Pipeline
from cvtools.vision.head import evaluate_probs
from cvtools.vision.predictor import load_predictor

from .common import build, environment, import_files, train
from .families import FAMILIES, Family

SEEDS = (0, 1, 2)
GROUPS = 6


def split(family: Family, seed: int, n_train: int, n_test: int) -> dict[str, tuple[list, list]]:
    """GROUPS report categories with enough images, each split into training and held-out files (a
    Wesnoth category is a race and its files are units: a unit is never on both sides)."""
    rng = random.Random(seed)
    usable = [c for c in family.report if len(family.categories[c]) >= n_train + n_test]
    if len(usable) < GROUPS:  # small families: as many as fit, split in proportion
        usable = sorted(family.report, key=lambda c: -len(family.categories[c]))[:GROUPS]
    out = {}
    for cat in sorted(rng.sample(usable, min(GROUPS, len(usable)))):
        files = list(family.categories[cat])
        rng.shuffle(files)
        k = min(n_train, int(len(files) * 0.65))
        out[cat.replace("/", "-")] = (files[:k], files[k : k + n_test])
    return out


def one(family: Family, seed: int, n_train: int, n_test: int) -> dict[str, float]:
    settings, sv = build(load=False)
    groups = split(family, seed, n_train, n_test)
    for g, (tr, _) in groups.items():
        import_files(sv.dataset, g, tr)
    bb = sv.models.backbone()
    run = train(sv, "head")
    classes = sorted(groups)
    held = [(Item(imaging.sha256_file(p), p), [0, 1]) for g in classes for p in groups[g][1]]
    y_held = np.array([classes.index(g) for g in classes for _ in groups[g][1]])
    pipe = Pipeline(
        pre=bb.preprocess, forward=bb.features, batch_size=settings.batch_size, max_pixels=settings.max_image_pixels
    )
    vecs: dict[tuple[str, int], np.ndarray] = {}
    for keys, out in pipe.run(held):
        vecs.update(zip(keys, out, strict=True))
    h0, h1 = (np.stack([vecs[(it.sha256, v)] for it, _ in held]) for v in (0, 1))
    head = load_predictor(sv.models.registry.run_dir(run), bb).head
    assert head is not None
    head_acc = float((evaluate_probs(head, [h0, h1]).argmax(1) == y_held).mean())
    rows = sv.dataset.with_status("group")
    x_tr = sv.store.get(bb.fingerprint, [r.sha256 for r in rows], 0, bb.feature_dim)
    y_tr = np.array([classes.index(r.group) for r in rows])
    probe = LogisticRegressionCV(Cs=np.logspace(-3, 2, 11).tolist(), cv=5, max_iter=3000).fit(x_tr, y_tr)
    sv.close()
    return {
        "head": head_acc,
        "probe": float((probe.predict(h0) == y_held).mean()),
        "probe_C": float(probe.C_[0]),
        "train_images": len(rows),
        "held_out": len(y_held),
    }


def main() -> None:
    environment()
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=30)
    ap.add_argument("--test", type=int, default=15)
    args = ap.parse_args()
    out = {}
    for name, make in FAMILIES.items():
        family = make()
        runs = [one(family, seed, args.train, args.test) for seed in SEEDS]
        gap = [100 * (r["head"] - r["probe"]) for r in runs]
        out[name] = {
            "runs": runs,
            "head": f"{np.mean([r['head'] for r in runs]):.3f} ± {np.std([r['head'] for r in runs], ddof=1):.3f}",
            "probe": f"{np.mean([r['probe'] for r in runs]):.3f} ± {np.std([r['probe'] for r in runs], ddof=1):.3f}",
            "head_minus_probe_points": f"{np.mean(gap):+.1f} ± {np.std(gap, ddof=1):.1f}",
        }
        print(json.dumps({name: out[name]}), flush=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
