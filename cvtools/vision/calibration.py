"""Building an open-set Calibration after training, from the known images: their out-of-fold top
probabilities, their leave-one-out nearest distances and their held-out feature residuals. Training
only: the Calibration itself (openset.py) answers without scikit-learn, as model bundles must.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import TypeVar

import numpy as np

from .openset import MIN_PER_GROUP, Calibration, subtree_sums
from .residual import GroupResiduals, Residual
from .vectors import power_unit, unit

BLOCK = 1024
# The ranks' weights in the mix: the residual's, the group residual's (the rest: the top probability's).
# Chosen on the dev half by benchmarks/protocol_bench.py. First by the mean of near and far AUROC over
# three families, with the nearest distance as the feature: 0.5 -> 0.925, 0.65 -> 0.934, 0.8 -> 0.938; the
# residual in its place at 0.8 -> 0.957. Then, with the group residual beside it, by the best near AUROC
# among the mixes whose far AUROC stays >= 0.97 (the targets' shortfall was near): residual 0.4, group
# residual 0.4 (16 directions), probability 0.2 -> near 0.940, far 0.978 (the residual mix 0.8: 0.925,
# 0.988). Datasets too small for a residual keep the distance's two-way mix.
FEATURE_WEIGHT = 0.8  # the two-way mix: the distance (or the residual, before the group residual)
RESIDUAL_WEIGHT, GROUP_WEIGHT = 0.4, 0.4  # the three-way mix
# Principal directions kept. Chosen on the dev half by benchmarks/protocol_bench.py (mean of near and far
# AUROC of the mix, over three families): 8 -> 0.933, 16 -> 0.952, 32 -> 0.957, 64 -> 0.957.
DIMS = 64
GROUP_DIMS = 16  # each group's own directions (dev, the same rule: 4 -> 0.939, 8 -> 0.940, 16 -> 0.940)
FOLDS = 5  # the known images' own residuals come from directions fitted without them
MIN_IMAGES = 10  # fewer known images: no residual (the nearest-image distance stands in)
Fitted = TypeVar("Fitted", Residual, GroupResiduals)


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

    splits = KFold(FOLDS, shuffle=True, random_state=0).split(z)
    return _with_reference(z, splits, lambda rows: fit_residual(z[rows], dims))


def fit_group_residuals(z: np.ndarray, labels: np.ndarray, dims: int = GROUP_DIMS) -> GroupResiduals:
    """Each group's mean and top principal directions (at most its images - 1: a group of one image is its
    own mean)."""
    from sklearn.decomposition import PCA  # here: scikit-learn costs seconds of every start-up

    groups = np.unique(labels)
    means = np.zeros((len(groups), z.shape[1]), np.float32)
    bases = np.zeros((len(groups), dims, z.shape[1]), np.float32)
    for i, g in enumerate(groups):
        zg = z[labels == g]
        means[i] = zg.mean(0)
        if len(zg) > 1:
            # Half the features at most, as for the residual above. The exact solver: on a group's few
            # images it is twice as fast as the randomised one that PCA picks for wide data.
            k = min(dims, len(zg) - 1, z.shape[1] // 2)
            pca = PCA(n_components=k, svd_solver="full").fit(zg)
            bases[i, : pca.n_components_] = pca.components_
    # Rounded to the half precision they are saved in, so a saved calibration answers as the fresh one.
    return GroupResiduals(means, bases.astype(np.float16).astype(np.float32))


def group_residuals_with_reference(
    z: np.ndarray, labels: np.ndarray, dims: int = GROUP_DIMS
) -> tuple[GroupResiduals, np.ndarray] | None:
    """The group residuals fitted on all known images, and each image's own (row order) against groups
    fitted on the other folds. None when no group has two images."""
    from sklearn.model_selection import StratifiedKFold  # here: scikit-learn costs seconds of every start-up

    folds = min(FOLDS, int(np.bincount(labels).max()))
    if folds < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # groups smaller than the folds: expected, not news
        splits = list(StratifiedKFold(folds, shuffle=True, random_state=0).split(z, labels))
    return _with_reference(z, splits, lambda rows: fit_group_residuals(z[rows], labels[rows], dims))


def _with_reference(
    z: np.ndarray, splits: Iterable, fit: Callable[[np.ndarray | slice], Fitted]
) -> tuple[Fitted, np.ndarray]:
    """`fit` on all rows, and each row's own value (row order) under the fit of the other folds."""
    ref = np.empty(len(z), np.float32)
    for fitted_on, held in splits:
        ref[held] = fit(fitted_on).norms(z[held])
    return fit(slice(None)), ref  # all rows, as a view


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
    per_group = group_residuals_with_reference(space, labels) if fitted is not None else None
    if per_group is not None:
        cal.group_residual, cal.group_ref = per_group[0], np.sort(per_group[1])
        cal.feature_weight, cal.group_weight = RESIDUAL_WEIGHT, GROUP_WEIGHT
    # The known images' own signal is held out: leave-one-out distances, or residuals from other folds.
    signal = nn if fitted is None else fitted[1]
    known = cal.strangeness(top, signal, None if per_group is None else per_group[1])[0]
    cal.strange_ref = np.sort(known).astype(np.float32)
    cal.limit = cal.limit_at(target_frr)  # 1.0 when there are no known images
    return cal
