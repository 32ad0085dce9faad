"""Writing a finished run as a model bundle (see cvtools.bundle): the whole answer as one ONNX graph,
checked against the app's own answer before anything is written."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .. import __version__
from ..bundle.model import FORMAT, FORMAT_VERSION, MANIFEST, Bundle, BundleError
from ..errors import BadInput
from . import multilabel as ml
from .models import ModelManager
from .onnx_runtime import export, prepare_for_export, sample_batch
from .predictor import Predictor

PARITY_TOL = 1e-5  # probabilities: the bundle against the app's own forward pass


class AnswerModule(nn.Module):
    """Normalised batch -> (probabilities, features): the app's Predictor.analyze as one graph."""

    def __init__(self, p: Predictor) -> None:
        super().__init__()
        self.p = p
        prepare_for_export(p.backbone.model)
        if p.head is not None:
            prepare_for_export(p.head)

    def _probs(self, feats: torch.Tensor) -> torch.Tensor:
        logits = self.p.logits_from_features(feats)
        return ml.probabilities(logits, self.p.layout) if self.p.layout else F.softmax(logits, dim=1)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.p.backbone.features_torch(pixel_values)
        probs = self._probs(feats)
        if self.p.tta_flip:
            probs = (probs + self._probs(self.p.backbone.features_torch(torch.flip(pixel_values, dims=[3])))) / 2
        return probs, feats


def _manifest(p: Predictor, max_pixels: int, files: dict[str, bytes]) -> dict[str, object]:
    pre = p.preprocess
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "cvtools_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run": p.run,
        "mode": p.mode,
        "backbone": p.backbone.name,
        "classes": p.classes,
        "preprocess": {"size": pre.size, "crop_pct": pre.crop_pct, "mean": list(pre.mean), "std": list(pre.std)},
        "decoding": "EXIF turned, transparency on white, RGB; big images reduced to at least size / crop_pct",
        "max_pixels": max_pixels,
        "tta_flip": p.tta_flip,
        "calibration": p.calibration is not None,
        "multi": (
            {"layout": p.layout.to_json(), "thresholds": [float(t) for t in p.thresholds]}
            if p.layout is not None and p.thresholds is not None
            else None
        ),
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
    }


def _files(p: Predictor, run_dir: Path, work: Path) -> dict[str, bytes]:
    export(AnswerModule(p), work / "model.onnx", p.preprocess.size, ["probabilities", "features"])
    files = {"model.onnx": (work / "model.onnx").read_bytes()}
    if p.calibration is not None:
        for name in ("calibration.json", "calibration.npz"):
            files[name] = (run_dir / name).read_bytes()
    return files


def check_parity(p: Predictor, files: dict[str, bytes]) -> float:
    """The largest probability difference between the bundle and the app's forward pass."""
    batch = sample_batch(p.preprocess.size)
    want = p.analyze(batch)[0]
    got = Bundle.from_files(files, threads=1).run(batch.numpy())[0]
    return float(np.abs(got - want).max())


def _stage(files: dict[str, bytes], staged: Path, as_zip: bool) -> None:
    if as_zip:
        with zipfile.ZipFile(staged, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in files.items():
                z.writestr(name, data)
        return
    staged.mkdir()
    for name, data in files.items():
        (staged / name).write_bytes(data)


def write_bundle(models: ModelManager, run: str | None, dest: Path, *, max_pixels: int) -> Path:
    """Export `run` (default: the production model) as a bundle folder, or a zip when dest ends in .zip."""
    if run:
        models.finished(run)
    p = models.load_run(run) if run else models.require_production()
    if dest.exists() and not (dest.is_dir() and not any(dest.iterdir())):
        raise BadInput(f"{dest} already exists; give a new folder or .zip")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        files = _files(p, models.registry.run_dir(p.run), Path(tmp))
        files[MANIFEST] = json.dumps(_manifest(p, max_pixels, files), indent=1).encode()
        diff = check_parity(p, files)
        if not diff <= PARITY_TOL:
            raise BundleError(f"the exported model differs from the app's answers by {diff:.1e}; not written")
        staged = Path(tmp) / "out"
        _stage(files, staged, dest.suffix.lower() == ".zip")
        if dest.is_dir():
            dest.rmdir()
        os.replace(staged, dest)  # one rename: a stop half-way leaves no half-written bundle
    return dest


def bundle_zip(models: ModelManager, run: str, *, max_pixels: int) -> Path:
    """The run's bundle as a zip, written once into the run's folder (a finished run never changes)."""
    path = models.registry.run_dir(run) / "bundle.zip"
    if not path.is_file():
        write_bundle(models, run, path, max_pixels=max_pixels)
    return path
