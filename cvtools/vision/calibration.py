"""Building an open-set Calibration after training, from the known images: their out-of-fold top
probabilities, their leave-one-out nearest distances and their held-out feature residuals. Training
only: the Calibration itself (openset.py) answers without scikit-learn, as model bundles must.
"""

from __future__ import annotations

import numpy as np

from .openset import MIN_PER_GROUP, Calibration, subtree_sums
from .residual import Residual
from .vectors import power_unit, unit

BLOCK = 1024
# The feature rank's weight in the mix (the rest: the top probability's). Chosen on the dev half by
# benchmarks/protocol_bench.py (mean of near and far AUROC over three families), with the nearest
# distance as the feature: 0.5 -> 0.925, 0.65 -> 0.934, 0.8 -> 0.938; the residual in its place at 0.8
# -> 0.957 (the residual mixed 0.4 / 0.4 with the distance -> 0.955).
FEATURE_WEIGHT = 0.8
# Principal directions kept. Chosen on the dev half by benchmarks/protocol_bench.py (mean of near and far
# AUROC of the mix, over three families): 8 -> 0.933, 16 -> 0.952, 32 -> 0.957, 64 -> 0.957.
DIMS = 64
FOLDS = 5  # the known images' own residuals come from directions fitted without them
MIN_IMAGES = 10  # fewer known images: no residual (the nearest-image distance stands in)


def nearest_distances(x: np.ndarray) -> np.ndarray:
    """Each row's cosine distance to its nearest other row (leave-one-out), in blocks."""
    n = len(x)
    out = np.ones(n, dtype=np.float32)
    for start in range(0, n, BLOCK):
        sims = x[start : start + BLOCK] @ x.T
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = -np.inf
        out[start : start + BLOCK] = 1.0 - sims.max(1)
    return np.maximum(out, 0.0)


def fit_residual(z: np.ndarray, dims: int = DIMS) -> Residual:
    from sklearn.decomposition import PCA  # here: scikit-learn costs seconds of every start-up

    pca = PCA(n_components=dims, random_state=0).fit(z)
    return Residual(pca.mean_.astype(np.float32), pca.components_.astype(np.float32))


def residual_with_reference(z: np.ndarray, dims: int = DIMS) -> tuple[Residual, np.ndarray] | None:
    """The residual fitted on all known images, and each image's own residual (row order) measured against
    directions fitted on the other folds (as the distances' reference is leave-one-out, so honest).
    None with fewer than MIN_IMAGES images."""
    if len(z) < MIN_IMAGES:
        return None
    # A fold's directions need more images than dims; half the features (a limit no real backbone meets,
    # they have hundreds) leaves a tiny test model's residual something to measure.
    dims = min(dims, len(z) * (FOLDS - 1) // FOLDS - 1, z.shape[1] // 2)
    from sklearn.model_selection import KFold  # here: scikit-learn costs seconds of every start-up

    ref = np.empty(len(z), np.float32)
    for fit, held in KFold(FOLDS, shuffle=True, random_state=0).split(z):
        ref[held] = fit_residual(z[fit], dims).norms(z[held])
    return fit_residual(z, dims), ref


def calibrate(
    oof_probs: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    vectors: np.ndarray,
    ids: list[str],
    *,
    target_frr: float,
) -> Calibration:
    """A limit that rejects about target_frr of the known images (out-of-fold and leave-one-out, so honest)."""
    top, answer = oof_probs.max(1), oof_probs.argmax(1)
    overall = float(np.quantile(top, target_frr))
    thresholds = {}
    for i, c in enumerate(classes):
        # The top probability of the images answered as this group; too few of them: all images'.
        values = top[answer == i]
        thresholds[c] = float(np.quantile(values, target_frr)) if len(values) >= MIN_PER_GROUP else overall
    parents = {}
    sums = subtree_sums(oof_probs, classes)
    for parent, values in sums.items():
        members = np.array([c == parent or c.startswith(parent + "/") for c in classes])[labels]
        if members.any():
            parents[parent] = float(np.quantile(values[members], target_frr))
    powered = power_unit(vectors)
    centre = powered.mean(0) if len(powered) else np.zeros(vectors.shape[1], np.float32)
    space = unit(powered - centre)
    nn = nearest_distances(space) if len(space) > 1 else np.zeros(len(space), np.float32)
    fitted = residual_with_reference(space)
    cal = Calibration(
        classes,
        thresholds,
        parents,
        1.0,
        target_frr,
        np.sort(top).astype(np.float32),
        np.sort(nn).astype(np.float32),
        centre.astype(np.float32),
        space,
        list(ids),
        [classes[i] for i in labels],
        feature_weight=FEATURE_WEIGHT,
        residual=fitted[0] if fitted else None,
        res_ref=np.sort(fitted[1]) if fitted else np.zeros(0, np.float32),
    )
    # The known images' own signal is held out: leave-one-out distances, or residuals from other folds.
    known, _, _ = cal.strangeness(top, nn if fitted is None else fitted[1])
    cal.strange_ref = np.sort(known).astype(np.float32)
    cal.limit = cal.limit_at(target_frr)  # 1.0 when there are no known images
    return cal
