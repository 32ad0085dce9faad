"""ONNX Runtime for every frozen-backbone path: export once per fingerprint, check parity, serve.

On a 2-core CPU the offline EfficientNet-Lite0 runs several times faster in ONNX Runtime than in
PyTorch with the same outputs; PyTorch stays for fine-tuning and as the fallback.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .ort_session import open_session

log = logging.getLogger(__name__)

OPSET = 17
PARITY_TOL = 1e-4  # max abs difference, relative to the output's scale when that is above 1


class Wrapped(nn.Module):
    """A function of a batch as a module, for the exporter."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.fn(pixel_values)


def prepare_for_export(model: nn.Module) -> None:
    """Frozen weights: the exporter refuses parameters that require grad as constants.
    (Never call EfficientNet's set_swish: the Lite models use ReLU6 and it would swap in Swish.)"""
    model.eval()
    model.requires_grad_(False)


def export(module: nn.Module, path: Path, size: int, output: str | list[str]) -> None:
    outputs = [output] if isinstance(output, str) else output
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.zeros(2, 3, size, size),),
            str(tmp),
            input_names=["pixel_values"],
            output_names=outputs,
            dynamic_axes={"pixel_values": {0: "batch"}, **{o: {0: "batch"} for o in outputs}},
            opset_version=OPSET,
            dynamo=False,
        )
    os.replace(tmp, path)


def sample_batch(size: int) -> torch.Tensor:
    """A deterministic image-like batch (smooth gradients and edges in the normalised range)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    r = np.sin(6 * xx) * np.cos(4 * yy)
    g = (xx > 0.5).astype(np.float32) - 0.5
    b = yy * 2 - 1
    one = np.stack([r, g, b]) * 1.5
    return torch.from_numpy(np.stack([one, one[:, ::-1, :].copy()]).astype(np.float32))


class OrtModel:
    """A thread-safe ONNX Runtime session with the callable shape of a torch module."""

    def __init__(self, path: Path) -> None:
        self.session = open_session(path)
        self.input = self.session.get_inputs()[0].name
        self.provider = self.session.get_providers()[0]

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input: batch.detach().cpu().numpy().astype(np.float32, copy=False)})[0]
        return torch.from_numpy(out)


def accelerate(
    features: Callable[[torch.Tensor], torch.Tensor], model: nn.Module, size: int, path: Path
) -> tuple[OrtModel | None, str]:
    """Export (or reuse) the feature extractor and check parity; (runtime, note). None: stay on PyTorch."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None, "onnxruntime is not installed"
    try:
        prepare_for_export(model)
        if not path.is_file():
            export(Wrapped(features), path, size, "features")
        ort_model = OrtModel(path)
        batch = sample_batch(size)
        with torch.inference_mode():
            ref = features(batch).float().numpy()
        got = ort_model(batch).numpy()
        diff = float(np.abs(got - ref).max())
        scale = max(1.0, float(np.abs(ref).max()))
        if not diff <= PARITY_TOL * scale:
            path.unlink(missing_ok=True)
            return None, f"ONNX Runtime outputs differ from PyTorch by {diff:.2e}; using PyTorch"
        return ort_model, f"ONNX Runtime ({ort_model.provider}), max difference from PyTorch {diff:.1e}"
    except Exception as exc:
        path.unlink(missing_ok=True)
        log.warning("ONNX export or load failed (%s); using PyTorch", exc)
        return None, f"ONNX export failed ({type(exc).__name__}: {str(exc)[:200]}); using PyTorch"


def export_classifier(
    module: nn.Module, path: Path, *, size: int, classes: list[str], preprocess: dict[str, Any], run: str
) -> Path:
    """One .onnx file: normalised batch -> probabilities, with class names and preprocessing in metadata."""
    import onnx

    export(module, path, size, "probabilities")
    model = onnx.load(str(path))
    meta = {
        "classes": json.dumps(classes),
        "preprocess": json.dumps(preprocess),
        "run": run,
        "input": "pixel_values: float32 [batch, 3, size, size], RGB, (x/255 - mean) / std",
        "producer": "CV Tools",
    }
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path
