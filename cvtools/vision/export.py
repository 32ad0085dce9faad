"""A finished run as one ONNX file: normalised batch -> probabilities, with the class names and the
preprocessing in its metadata (cached in the run's folder)."""

from __future__ import annotations

from pathlib import Path

from .bundle_export import AnswerModule
from .models import ModelManager
from .onnx_runtime import Wrapped, export_classifier
from .predictor import Predictor


def probability_module(p: Predictor) -> Wrapped:
    """The model's whole answer as one module (features, head, softmax or the multi-label layout, the
    mirror-image averaging): the bundle's graph without its features output."""
    answer = AnswerModule(p)
    return Wrapped(lambda x: answer(x)[0])


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
