"""Out-of-fold probabilities: every image judged by a head that never saw it (k folds on cached
embeddings). Label errors and the unknown calibration are built on them."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from .. import multilabel as ml
from ..head import HeadParams, evaluate_probs, train_head


def folds_for(labels: np.ndarray, shas: list[str], k: int) -> np.ndarray:
    """Stratified fold number per sample, by a stable hash rank within each class. (Not scikit-learn's
    StratifiedKFold: with a hash rank an image keeps its fold as the dataset grows, so the list of
    errors does not reshuffle when one image is added.)"""
    fold = np.zeros(len(labels), dtype=int)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        order = sorted(idx, key=lambda i: hashlib.sha256(shas[i].encode()).digest())
        for rank, i in enumerate(order):
            fold[i] = rank % k
    return fold


def out_of_fold_probs(
    views: list[np.ndarray],
    labels: np.ndarray,
    shas: list[str],
    n_classes: int,
    *,
    k: int = 5,
    params: HeadParams | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> np.ndarray:
    """Single-label: probabilities for every sample from a head that never saw it."""
    params = params or HeadParams(epochs=30)
    counts = np.bincount(labels, minlength=n_classes)
    k = int(max(2, min(k, counts[counts > 0].min())))
    fold = folds_for(labels, shas, k)
    probs = np.zeros((len(labels), n_classes), dtype=np.float32)
    for f in range(k):
        if cancelled():
            break
        train, test = fold != f, fold == f
        x = np.concatenate([v[train] for v in views])
        y = np.tile(labels[train], len(views))
        head, _, _ = train_head(
            x, y, [], np.array([], dtype=int), n_classes=n_classes, params=replace(params, seed=params.seed + f)
        )
        probs[test] = evaluate_probs(head, [v[test] for v in views])
        if progress:
            progress(f + 1, k)
    return probs


def out_of_fold_multi(
    views: list[np.ndarray],
    y: np.ndarray,
    shas: list[str],
    layout: ml.Layout,
    *,
    k: int = 5,
    params: HeadParams | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> np.ndarray:
    """Multi-label: every image's probabilities from a head that never saw it (stratified by label
    combination)."""
    params = params or HeadParams(epochs=30)
    k = max(2, min(k, len(shas)))
    _, combination = np.unique(y, axis=0, return_inverse=True)
    fold = folds_for(combination.ravel(), shas, k)
    probs = np.zeros(y.shape, dtype=np.float32)
    for f in range(k):
        if cancelled():
            break
        train, test = fold != f, fold == f
        x = np.concatenate([v[train] for v in views])
        head, _ = ml.train_multi_head(
            x,
            np.tile(y[train], (len(views), 1)),
            [],
            np.zeros((0, y.shape[1])),
            layout=layout,
            params=replace(params, seed=params.seed + f),
        )
        probs[test] = ml.evaluate_multi(head, [v[test] for v in views], layout)
    return probs
