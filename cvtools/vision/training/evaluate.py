"""What a run reports after training, measured on its check images."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import multilabel as ml
from .types import Split


def single_label(split: Split, probs: np.ndarray) -> dict[str, Any]:
    """Accuracy, the confusion matrix (rows: true group), precision and recall per group, and every
    check image's answer (the Learning page shows the images of a cell)."""
    # Imported here: scikit-learn costs a second of every start-up, and only a finished run needs it.
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    y = split.labels(split.val)
    pred = probs.argmax(1)
    labels = list(range(len(split.classes)))
    confusion = confusion_matrix(y, pred, labels=labels)
    precision, recall, _, support = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    per_group = {
        g: {
            "precision": round(float(precision[i]), 4),
            "recall": round(float(recall[i]), 4),
            "support": int(support[i]),
        }
        for i, g in enumerate(split.classes)
    }
    predictions = [
        {
            "id": s.id,
            "group": split.classes[s.label],
            "predicted": split.classes[int(p)],
            "probability": round(float(probs[i, p]), 4),
        }
        for i, (s, p) in enumerate(zip(split.val, pred, strict=True))
    ]
    return {
        "accuracy": round(float((pred == y).mean()), 4),
        "confusion": confusion.tolist(),
        "per_group": per_group,
        "predictions": predictions,
    }


def multi_label(split: Split, probs: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    """Per-group thresholds chosen on the check images (best F1), then micro/macro F1, per-group
    precision/recall/F1 and each attribute's accuracy and confusion matrix."""
    assert split.layout is not None
    y = split.labels(split.val) > 0.5
    thresholds = ml.calibrate_thresholds(probs, y)
    return ml.report(probs, y, split.layout, thresholds), thresholds
