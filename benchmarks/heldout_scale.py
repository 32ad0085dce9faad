"""A candidate for the unknown limit's held-out correction (openset.HELD_OUT_SCALE, a constant chosen on
dev): the correction measured on each dataset itself. Tried on dev by protocol_bench --measured-scale
and not shipped (docs/BENCHMARKS.md): it lands further from the target than the constant.

The limit is a quantile of the known images' out-of-fold strangeness. The final head learnt from every
image and is surer on new known images than each fold head was on its own fold, so that quantile rejects
fewer known images than the target asks, by an amount that depends on the data. This measures the
amount one level down: each fold's head plays the final head, a calibration built from the other folds'
images alone (with its own out-of-fold heads) plays the calibration, and the fold's images play new
known images. The share of that inner calibration's known images at least as strange as each of them is
its p-value; the scale takes the quantile where `target` of the p-values fall.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from cvtools.vision.anomalies.folds import folds_for, out_of_fold_probs
from cvtools.vision.calibration import calibrate
from cvtools.vision.head import HeadParams, evaluate_probs, train_head

FOLDS = 5
MIN_PER_GROUP = 6  # fewer images in some group: too few for folds within folds (the fixed scale stands)
SCALE_RANGE = (0.5, 10.0)  # a measurement outside this says more about its noise than about the data


def held_out_p_values(
    views: list[np.ndarray],
    labels: np.ndarray,
    shas: list[str],
    classes: list[str],
    params: HeadParams,
    *,
    cancelled: Callable[[], bool] = lambda: False,
) -> np.ndarray | None:
    """Every known image's p-value against a calibration that never saw it, from a head that never saw
    it (row order). None when some group has fewer than MIN_PER_GROUP images."""
    counts = np.bincount(labels, minlength=len(classes))
    if counts.min() < MIN_PER_GROUP:
        return None
    fold = folds_for(labels, shas, FOLDS)
    p = np.ones(len(labels), np.float32)
    for f in range(FOLDS):
        if cancelled():
            return None
        fit, held = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        inner_views = [v[fit] for v in views]
        inner_shas = [shas[i] for i in fit]
        oof = out_of_fold_probs(inner_views, labels[fit], inner_shas, len(classes), params=params, cancelled=cancelled)
        # only its reference of known strangeness is used, which no target changes
        cal = calibrate(oof, labels[fit], classes, views[0][fit], inner_shas, target_frr=0.05)
        x = np.concatenate(inner_views)
        head, _, _ = train_head(
            x,
            np.tile(labels[fit], len(views)),
            [],
            np.array([], int),
            n_classes=len(classes),
            params=replace(params, seed=f),
        )
        top = evaluate_probs(head, [v[held] for v in views]).max(1)
        z = cal.space(views[0][held])
        dist = np.maximum(0.0, 1.0 - (z @ cal.vectors.T).max(1))
        strange = cal.strangeness(top, cal.signal(z, dist), cal.group_signal(z))[0]
        ref = cal.strange_ref
        p[held] = 1.0 - np.searchsorted(ref, strange, side="left") / max(len(ref), 1)
    return p


def scale_from(p_values: np.ndarray, target: float) -> float:
    """The correction that makes the limit reject `target` of the held-out known images."""
    lo, hi = SCALE_RANGE
    return float(np.clip(np.quantile(p_values, target) / target, lo, hi))
