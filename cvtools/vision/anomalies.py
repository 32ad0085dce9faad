"""Anomalies: label errors from out-of-fold predictions, duplicates from hashes and embeddings.

Everything here is plain functions on arrays; the engine feeds them cached embeddings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .head import HeadParams, evaluate_probs, train_head

BLOCK = 1024  # rows per block in the all-pairs search: memory is BLOCK x N floats, never N x N


# ---- label errors -------------------------------------------------------------------------
def folds_for(labels: np.ndarray, shas: list[str], k: int) -> np.ndarray:
    """Stratified fold number per sample, by a stable hash rank within each class."""
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
    """Probabilities for every sample from a head that never saw it (k-fold on cached embeddings)."""
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
        head, _, _ = train_head(x, y, [], np.array([], dtype=int), n_classes=n_classes, params=params, seed=f)
        probs[test] = evaluate_probs(head, [v[test] for v in views])
        if progress:
            progress(f + 1, k)
    return probs


@dataclass
class ErrorItem:
    index: int
    own: int
    detected: int
    p_own: float
    p_detected: float

    @property
    def score(self) -> float:
        return self.p_detected / max(self.p_own, 1e-9)


def label_errors(probs: np.ndarray, labels: np.ndarray) -> list[ErrorItem]:
    """Samples whose best other group beats their own, worst first by p(detected) / p(own)."""
    out = []
    for i, (row, own) in enumerate(zip(probs, labels, strict=True)):
        detected = int(np.argmax(row))
        if detected != own and row[detected] > row[own]:
            out.append(ErrorItem(i, int(own), detected, float(row[own]), float(row[detected])))
    out.sort(key=lambda e: -e.score)
    return out


# ---- duplicates ---------------------------------------------------------------------------
def exact_pairs(shas: list[str]) -> list[tuple[int, int]]:
    by: dict[str, list[int]] = {}
    for i, s in enumerate(shas):
        by.setdefault(s, []).append(i)
    return [(a, b) for idx in by.values() for n, a in enumerate(idx) for b in idx[n + 1 :]]


def phash_pairs(hashes: list[str | None], max_bits: int) -> list[tuple[int, int, int]]:
    """(i, j, Hamming distance) for 64-bit hashes within max_bits, all pairs in blocks.
    Near-constant hashes (a plain background, almost no edges) say nothing and are left out."""
    valid = [i for i, h in enumerate(hashes) if h and 8 <= bin(int(h, 16)).count("1") <= 56]
    if len(valid) < 2:
        return []
    vals = np.array([int(hashes[i], 16) for i in valid], dtype=np.uint64)  # type: ignore[arg-type]
    out = []
    for start in range(0, len(vals), BLOCK):
        block = vals[start : start + BLOCK]
        rest = vals[start:]
        dist = np.bitwise_count(block[:, None] ^ rest[None, :])
        ii, jj = np.nonzero(dist <= max_bits)
        for a, b in zip(ii, jj, strict=True):
            i, j = start + int(a), start + int(b)
            if j > i:
                out.append((valid[i], valid[j], int(dist[a, b])))
    return out


def embedding_pairs(vectors: np.ndarray, max_distance: float, *, project_to: int = 256) -> list[tuple[int, int, float]]:
    """(i, j, cosine distance) within max_distance. Blocked; for large sets a PCA projection finds
    candidates (with a safety margin) and every candidate is re-checked at full dimension."""
    n = len(vectors)
    if n < 2:
        return []
    x = vectors.astype(np.float32)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    search, margin = x, 0.0
    if n > 4000 and x.shape[1] > project_to:
        rng = np.random.default_rng(0)
        sample = x[rng.choice(n, size=min(n, 4000), replace=False)]
        mean = sample.mean(0)
        _, _, vt = np.linalg.svd(sample - mean, full_matrices=False)
        search = (x - mean) @ vt[:project_to].T
        # Distances are kept in the projected space with the full norm, so the cut stays comparable.
        search = search.astype(np.float32)
        search /= np.maximum(np.linalg.norm(search, axis=1, keepdims=True), 1e-12)
        margin = 0.05
    cut = 1.0 - (max_distance + margin)
    out: list[tuple[int, int, float]] = []
    for start in range(0, n, BLOCK):
        block = search[start : start + BLOCK]
        sims = block @ search[start:].T
        ii, jj = np.nonzero(sims >= cut)
        keep = jj > ii
        for a, b in zip(ii[keep], jj[keep], strict=True):
            i, j = start + int(a), start + int(b)
            d = float(1.0 - x[i] @ x[j])
            if d <= max_distance:
                out.append((i, j, max(0.0, d)))
    return out
