"""What an answer says besides its probabilities: the ranking, the open-set verdict, the label set.
Plain numpy: the app's Classifier and the model bundle (no torch) answer through the same functions."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import CVError
from .labelsets import Layout, predict_sets
from .openset import Calibration

Ranked = list[tuple[str, float]]
NO_VERDICT: dict[str, Any] = {
    "unknown": False,
    "reason": None,
    "fallback": None,
    "nearest": None,
    "score": None,
    "calibrated": False,
}


def rank(classes: list[str], probs: np.ndarray) -> Ranked:
    order = np.argsort(-probs, kind="stable")
    return [(classes[i], float(probs[i])) for i in order]


def label_set(classes: list[str], probs: np.ndarray, layout: Layout | None, thresholds: np.ndarray | None) -> list[str]:
    """Multi-label models: the groups predicted for one image (highest first)."""
    if layout is None or thresholds is None:
        return []
    chosen = predict_sets(probs[None, :], layout, thresholds)[0]
    return [classes[i] for i in np.argsort(-probs) if chosen[i]]


def verdict(
    probs: np.ndarray,
    feats: np.ndarray,
    *,
    labels: list[str] | None,
    calibration: Calibration | None,
    unknown_detection: bool,
) -> dict[str, Any]:
    """unknown, reason, fallback, nearest, score, calibrated (and labels for a multi-label model)."""
    if labels is not None:  # multi-label: the predicted set; "unknown" is not calibrated for these
        return {**NO_VERDICT, "labels": labels, "note": "multi-label model: the labels are the answer"}
    if not unknown_detection:
        return dict(NO_VERDICT)
    if calibration is None:
        return {**NO_VERDICT, "note": "this model was not calibrated (train it again in head mode)"}
    return {**calibration.judge(probs, feats), "calibrated": True}


def answered(ranked: Ranked, judged: dict[str, Any]) -> dict[str, Any]:
    """One image's item of /api/classify (and of a batch run's output): classification and verdict."""
    return {"classification": [[g, p] for g, p in ranked], **judged}


def failed(exc: CVError | OSError) -> dict[str, Any]:
    """One image's own error in a batch answer: one bad image does not fail the others."""
    if isinstance(exc, CVError):
        return {"error": exc.detail, "status": exc.status}
    return {"error": f"unreadable ({exc.strerror or type(exc).__name__})", "status": 400}
