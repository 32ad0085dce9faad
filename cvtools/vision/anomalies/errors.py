"""Label errors: Group images whose predicted group beats their own, worst first; in multi-label
datasets, memberships the model strongly rejects and ones it strongly predicts but that are missing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ...schemas import AnomalyMethod, ErrorItem, ImageRef
from .. import multilabel as ml
from ..head import HeadParams
from ..predictor import Predictor
from ..vectors import power_unit
from .folds import out_of_fold_multi, out_of_fold_probs

STRONG = 0.8  # multi-label: a membership below 1 - STRONG, or a missing one above STRONG
# Single label: the held-out head's probabilities are blended with neighbour agreement (the groups of each
# image's NEIGHBOURS nearest other images), NEIGHBOUR_WEIGHT on the neighbours. Chosen on the dev half by
# benchmarks/noise_bench.py (mean AUROC of the error score over families and 5 / 10 / 20 % noise).
NEIGHBOURS = 20
NEIGHBOUR_WEIGHT = 0.5
CHUNK = 2048  # images whose neighbours are searched between two looks at the job's cancel flag

Views = Callable[[list[ImageRef], list[int]], tuple[list[ImageRef], list[np.ndarray]]]


@dataclass
class Found:
    index: int
    own: int
    detected: int
    p_own: float
    p_detected: float


def neighbour_votes(
    x: np.ndarray, labels: np.ndarray, n_classes: int, k: int, cancelled: Callable[[], bool] = lambda: False
) -> np.ndarray | None:
    """Neighbour agreement (SimiFeat-style): for each image, the share of its k nearest other images (cosine
    on the power-normalised frozen features) in each group; (n, n_classes), rows summing to 1. An image
    of a group smaller than k + 1 asks only as many neighbours as its group has other members, so that a
    small group is not outvoted by its larger neighbours for being small. None when cancelled: the
    search grows with the square of the count (20,000 images: about 20 s on 2 cores), so it asks
    between chunks."""
    n = len(labels)
    k = max(1, min(k, n - 1))
    space = power_unit(x)
    # Imported here, as evaluate.py's metrics: scikit-learn costs seconds of every start-up.
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k + 1, metric="cosine", algorithm="brute").fit(space)
    parts = []
    for start in range(0, n, CHUNK):
        if cancelled():
            return None
        parts.append(nn.kneighbors(space[start : start + CHUNK], return_distance=False))
    idx = np.concatenate(parts)
    rows = np.arange(n)
    own = idx == rows[:, None]  # each image's own row is left out (usually first; an identical copy may lead)
    keep = np.where(own.any(1, keepdims=True), ~own, np.arange(k + 1)[None, :] < k)
    neigh = idx[keep].reshape(n, k)
    asked = np.clip(np.bincount(labels, minlength=n_classes)[labels] - 1, 1, k)  # neighbours per image
    # The neighbours not asked vote for an extra column, dropped after counting.
    voted = np.where(np.arange(k)[None, :] < asked[:, None], labels[neigh], n_classes)
    counts = np.zeros((n, n_classes + 1), dtype=np.float32)
    np.add.at(counts, (rows[:, None], voted), 1.0)
    return counts[:, :n_classes] / asked[:, None].astype(np.float32)


def with_neighbours(
    probs: np.ndarray, x: np.ndarray, labels: np.ndarray, cancelled: Callable[[], bool] = lambda: False
) -> np.ndarray:
    """The probabilities blended with neighbour agreement on the features x (rows still sum to 1);
    unchanged when cancelled."""
    votes = neighbour_votes(x, labels, probs.shape[1], NEIGHBOURS, cancelled)
    return probs if votes is None else (1 - NEIGHBOUR_WEIGHT) * probs + NEIGHBOUR_WEIGHT * votes


def error_scores(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every sample, the most probable other group and the page's order, p(detected) / p(own)
    (benchmarks/noise_bench.py ranks by it too)."""
    p = np.asarray(probs, dtype=np.float64)
    rows = np.arange(len(labels))
    others = p.copy()
    others[rows, labels] = -1.0
    detected = others.argmax(1)
    return detected, others[rows, detected] / np.maximum(p[rows, labels], 1e-9)


def label_errors(probs: np.ndarray, labels: np.ndarray) -> list[Found]:
    """Samples whose best other group beats their own, worst first by p(detected) / p(own)."""
    detected, score = error_scores(probs, labels)
    rows = np.arange(len(labels))
    listed = np.flatnonzero(probs[rows, detected] > probs[rows, labels])
    order = listed[np.argsort(-score[listed], kind="stable")]
    return [
        Found(int(i), int(labels[i]), int(detected[i]), float(probs[i, labels[i]]), float(probs[i, detected[i]]))
        for i in order
    ]


def single_label(
    p: Predictor, refs: list[ImageRef], method: AnomalyMethod, views: Views, folds: int, job: Any
) -> dict[str, Any]:
    if method == AnomalyMethod.PRODUCTION:
        classes = p.classes
    else:
        sizes: dict[str, int] = {}
        for r in refs:
            sizes[r.group] = sizes.get(r.group, 0) + 1
        classes = sorted(g for g, n in sizes.items() if n >= 2)
    refs = [r for r in refs if r.group in classes]
    if len(classes) < 2 or not refs:
        return {"items": [], "message": "at least 2 groups with 2 or more Group images are needed"}
    refs, vecs = views(refs, [0, 1])
    labels = np.array([classes.index(r.group) for r in refs])
    cancelled = (lambda: job.cancelled) if job else (lambda: False)
    if method == AnomalyMethod.PRODUCTION:
        with torch.inference_mode():
            probs = np.mean([torch.softmax(p.logits_from_features(torch.from_numpy(v)), 1).numpy() for v in vecs], 0)
    else:
        probs = out_of_fold_probs(
            vecs,
            labels,
            [r.sha256 for r in refs],
            len(classes),
            k=folds,
            progress=(lambda d, t: job.progress(d, t, f"Fold {d} of {t}")) if job else None,
            cancelled=cancelled,
        )
        probs = with_neighbours(probs, vecs[0], labels, cancelled)
    items = [
        ErrorItem(refs[e.index], classes[e.own], round(e.p_own, 4), classes[e.detected], round(e.p_detected, 4))
        for e in label_errors(probs, labels)
    ]
    return {"items": items, "checked": len(refs)}


def multi_label(
    p: Predictor, refs: list[ImageRef], exclusive: list[str], method: AnomalyMethod, views: Views, folds: int, job: Any
) -> dict[str, Any]:
    """Memberships the model strongly rejects (kind "rejected": the image is in `group` with a low
    probability) and ones it strongly predicts but that are missing (kind "missing": `detected` with a
    high probability), strongest first."""
    by_sha: dict[str, list[ImageRef]] = {}
    for r in refs:
        by_sha.setdefault(r.sha256, []).append(r)
    layout = p.layout or ml.Layout.build(sorted({r.group for r in refs}), exclusive)
    if len(layout.outputs) < 2 or len(by_sha) < 4:
        return {"items": [], "message": "at least 2 groups and 4 images are needed", "label_mode": "multi"}
    firsts, vecs = views([by_sha[s][0] for s in sorted(by_sha)], [0, 1])
    shas = [r.sha256 for r in firsts]
    y = np.array([[any(r.group == g for r in by_sha[s]) for g in layout.outputs] for s in shas], dtype=bool)
    if method == AnomalyMethod.PRODUCTION and p.layout is not None and p.head is not None:
        probs = ml.evaluate_multi(p.head, vecs, layout)
    else:
        cancelled = (lambda: job.cancelled) if job else (lambda: False)
        probs = out_of_fold_multi(vecs, y, shas, layout, k=folds, params=HeadParams(epochs=30), cancelled=cancelled)
    items = _membership_items(probs, y, shas, by_sha, layout)
    return {"items": items, "checked": len(shas), "label_mode": "multi"}


def _membership_items(
    probs: np.ndarray, y: np.ndarray, shas: list[str], by_sha: dict[str, list[ImageRef]], layout: ml.Layout
) -> list[ErrorItem]:
    items: list[ErrorItem] = []
    outputs = layout.outputs
    for i, s in enumerate(shas):
        for j, g in enumerate(outputs):
            pr = float(probs[i, j])
            if y[i, j] and pr < 1 - STRONG:
                ref = next(r for r in by_sha[s] if r.group == g)
                other = [k for k in np.argsort(-probs[i]) if not y[i, k]]
                det = int(other[0]) if other else j
                items.append(ErrorItem(ref, g, round(pr, 4), outputs[det], round(float(probs[i, det]), 4), "rejected"))
            elif not y[i, j] and pr > STRONG:
                ref = by_sha[s][0]
                own = float(probs[i, outputs.index(ref.group)]) if ref.group in outputs else 0.0
                items.append(ErrorItem(ref, ref.group, round(own, 4), g, round(pr, 4), "missing"))
    # strongest first: how sure the model is that the membership is wrong / missing
    items.sort(key=lambda it: -(it.detected_probability if it.kind == "missing" else 1 - it.probability))
    return items
