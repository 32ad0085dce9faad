"""A finished run as one ONNX file: normalised batch -> probabilities, with the class names and the
preprocessing in its metadata (cached in the run's folder)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.nn import functional as F

from . import multilabel as ml
from .models import ModelManager
from .onnx_runtime import Wrapped, export_classifier, prepare_for_export
from .predictor import Predictor


def probability_module(p: Predictor) -> Wrapped:
    """The model's whole answer as one module: features, head, softmax (or the multi-label layout), and
    the same mirror-image averaging as the app's own answers."""
    prepare_for_export(p.backbone.model)
    if p.head is not None:
        prepare_for_export(p.head)

    def to_probs(logits: torch.Tensor) -> torch.Tensor:
        return ml.probabilities(logits, p.layout) if p.layout else F.softmax(logits, dim=1)

    def probabilities(x: torch.Tensor) -> torch.Tensor:
        probs = to_probs(p.logits_from_features(p.backbone.features_torch(x)))
        if p.tta_flip:
            flipped = to_probs(p.logits_from_features(p.backbone.features_torch(torch.flip(x, dims=[3]))))
            probs = (probs + flipped) / 2
        return probs

    return Wrapped(probabilities)


def export_onnx(models: ModelManager, run: str) -> Path:
    models.finished(run)
    path = models.registry.run_dir(run) / "model.onnx"
    if path.is_file():
        return path
    p = models.load_run(run)
    pre = p.preprocess
    return export_classifier(
        probability_module(p),
        path,
        size=pre.size,
        classes=p.classes,
        run=run,
        preprocess={
            "size": pre.size,
            "crop_pct": pre.crop_pct,
            "mean": list(pre.mean),
            "std": list(pre.std),
            "resize": "shorter side to size / crop_pct, bicubic",
            "crop": "centre",
        },
    )
