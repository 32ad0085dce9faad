"""Label errors under the dev/report protocol: how well the Anomalies page's error score ranks injected
label errors, at 5, 10 and 20 % noise, on the dev or report categories of each family, three seeds each.
The score is p(detected) / p(own); p from the cross-validated head on the frozen embeddings alone (the
score before this protocol chose), and blended with neighbour agreement (SimiFeat-style: the groups of
each image's k nearest other images, as shares; weight w on them), and neighbour agreement alone.
Decision rule, fixed before any figure was read: the candidate with the best mean AUROC over families
and noise levels on **dev** replaces cross-validation alone if it beats it there by at least 0.005; the
report half only reports. The app ships the blend errors.NEIGHBOURS / errors.NEIGHBOUR_WEIGHT.

    python -m benchmarks.noise_bench [--half dev|report|both] [--per-category 40]
"""

from __future__ import annotations

import argparse
import json
import random

import numpy as np
from sklearn.metrics import roc_auc_score

from cvtools import imaging
from cvtools.vision.anomalies import errors
from cvtools.vision.anomalies.folds import out_of_fold_probs
from cvtools.vision.embeddings import Item, cached_views

from .common import build, environment
from .families import FAMILIES, Family

NOISE = (0.05, 0.10, 0.20)
SEEDS = (0, 1, 2)
NEIGHBOURS = (5, 10, 20)  # k of the neighbour vote
WEIGHTS = (0.25, 0.5)  # the neighbours' weight in the blend
ALONE = "cross-validation alone"  # the error score before neighbour agreement


def embedded(family: Family, half: str, per_category: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One half's categories' images, embedded as the app does (plain and mirror view): (views stacked
    as [2, n, d], true labels, sha256s)."""
    _, sv = build()
    rng = random.Random(0)
    labels, items = [], []
    for c, cat in enumerate(getattr(family, half)):
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


def error_score(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The page's order (errors.error_scores), for every image."""
    return errors.error_scores(probs, labels)[1]


def one(views: np.ndarray, truth: np.ndarray, shas: list[str], noise: float, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    n_classes = int(truth.max()) + 1
    wrong = rng.choice(len(truth), size=max(1, round(noise * len(truth))), replace=False)
    noisy = truth.copy()
    noisy[wrong] = (truth[wrong] + rng.integers(1, n_classes, size=len(wrong))) % n_classes
    probs = out_of_fold_probs(list(views), noisy, shas, n_classes)
    scores = {ALONE: error_score(probs, noisy)}
    for k in NEIGHBOURS:
        votes = errors.neighbour_votes(views[0], noisy, n_classes, k)
        assert votes is not None  # never cancelled here
        scores[f"neighbours alone, k={k}"] = error_score(votes + 1e-3, noisy)
        for w in WEIGHTS:
            scores[f"blend, k={k}, w={w:g}"] = error_score((1 - w) * probs + w * votes, noisy)
    is_wrong = np.zeros(len(noisy), bool)
    is_wrong[wrong] = True
    out = {}
    for name, score in scores.items():
        top = np.argsort(-score, kind="stable")
        out[f"{name} | auroc"] = float(roc_auc_score(is_wrong, score))
        out[f"{name} | precision_at_k"] = float(is_wrong[top[: len(wrong)]].mean())
        out[f"{name} | recall_in_top_2k"] = float(is_wrong[top[: 2 * len(wrong)]].sum() / len(wrong))
    return out


def spread(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def choose(dev: dict[str, dict[str, list[dict[str, float]]]]) -> str:
    """The candidate with the best mean AUROC over families and noise levels on dev; cross-validation
    alone unless a candidate beats it by at least 0.005."""
    runs = [r for fam in dev.values() for by_noise in fam.values() for r in by_noise]
    names = [k.split(" | ")[0] for k in runs[0] if k.endswith("| auroc")]
    mean = {n: float(np.mean([r[f"{n} | auroc"] for r in runs])) for n in names}
    for n in sorted(mean, key=mean.get, reverse=True):  # type: ignore[arg-type]
        print(f"# dev mean AUROC {mean[n]:.4f}  {n}")
    best = max(mean, key=mean.get)  # type: ignore[arg-type]
    return best if mean[best] >= mean[ALONE] + 0.005 else ALONE


def main() -> None:
    environment()
    ap = argparse.ArgumentParser()
    ap.add_argument("--half", choices=["dev", "report", "both"], default="both")
    ap.add_argument("--per-category", type=int, default=40)
    ap.add_argument("--family", choices=sorted(FAMILIES), action="append", help="default: every family")
    args = ap.parse_args()
    out: dict[str, dict] = {}
    dev: dict[str, dict[str, list[dict[str, float]]]] = {}
    for half in ("dev", "report") if args.half == "both" else (args.half,):
        for name, make in FAMILIES.items():
            if args.family and name not in args.family:
                continue
            family = make()
            views, truth, shas = embedded(family, half, args.per_category)
            key = f"{half} | {name}"
            out[key] = {"images": len(truth), "categories": len(getattr(family, half))}
            for noise in NOISE:
                runs = [one(views, truth, shas, noise, seed) for seed in SEEDS]
                if half == "dev":
                    dev.setdefault(name, {})[f"{noise:.0%}"] = runs
                out[key][f"{noise:.0%}"] = {k: spread([r[k] for r in runs]) for k in runs[0]}
            print(json.dumps({key: out[key]}), flush=True)
    print(json.dumps(out, indent=2))
    if dev:
        print(f"# chosen on dev: {choose(dev)}")
    print(f"# shipped (anomalies/errors.py): blend, k={errors.NEIGHBOURS}, w={errors.NEIGHBOUR_WEIGHT:g}")


if __name__ == "__main__":
    main()
