"""A trained model ready to serve: backbone features + head, or a whole fine-tuned network."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ..schemas import RunRecord, RunState, TrainMode
from .answers import label_set
from .backbone import Backbone, load_backbone
from .head import HeadModel
from .multilabel import Layout, probabilities
from .openset import Calibration
from .preprocess import Preprocess


@dataclass
class Predictor:
    run: str
    mode: str  # "head" or "finetune"
    classes: list[str]
    backbone: Backbone  # for finetune: the fine-tuned network itself
    head: HeadModel | None
    tta_flip: bool = True
    calibration: Calibration | None = None
    layout: Layout | None = None  # multi-label: which outputs form one softmax; else one softmax over all
    thresholds: np.ndarray | None = None  # multi-label: per group, the probability from which it is predicted

    def label_set(self, probs: np.ndarray) -> list[str]:
        """Multi-label models: the groups predicted for one image (highest first)."""
        return label_set(self.classes, probs, self.layout, self.thresholds)

    @property
    def preprocess(self) -> Preprocess:
        return self.backbone.preprocess

    @property
    def fingerprint(self) -> str:
        """Identifies the feature space of this model (the embedding cache key)."""
        return self.backbone.fingerprint

    def features(self, batch: torch.Tensor) -> torch.Tensor:
        return self.backbone.features(batch)

    def logits_from_features(self, feats: torch.Tensor) -> torch.Tensor:
        if self.head is not None:
            return self.head(feats)
        if self.backbone.kind == "hf":
            return self.backbone.model.classifier(feats)  # type: ignore[no-any-return, operator]
        return self.backbone.model._fc(feats)  # type: ignore[no-any-return, operator]

    def analyze(self, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(probabilities, pooled features, logits) for a preprocessed batch; features of the plain view."""
        n = len(batch)
        with torch.inference_mode():
            # The image and its mirror image in one forward pass: one runtime call instead of two.
            both = torch.cat([batch, torch.flip(batch, dims=[3])]) if self.tta_flip else batch
            all_feats = self.features(both)
            all_logits = self.logits_from_features(all_feats)
            p = probabilities(all_logits, self.layout) if self.layout else F.softmax(all_logits, dim=1)
            if self.tta_flip:
                p = (p[:n] + p[n:]) / 2
        return p.float().numpy(), all_feats[:n].float().numpy(), all_logits[:n].float().numpy()

    def probs(self, batch: torch.Tensor) -> np.ndarray:
        """Softmax over classes for a preprocessed batch; with tta_flip, averaged with the mirror image."""
        return self.analyze(batch)[0]


def load_finetuned(run_dir: Path, record: RunRecord) -> Backbone:
    classes = record.classes
    pre = Preprocess(**(record.preprocess or {}))
    fp = f"ft-{record.id}"
    if record.backbone_kind == "hf":
        from transformers import AutoModelForImageClassification

        model = AutoModelForImageClassification.from_pretrained(run_dir / "model", local_files_only=True)
        model.eval()
        dim = int(model.classifier.in_features)
        return Backbone(name=record.backbone, kind="hf", model=model, preprocess=pre, feature_dim=dim, fingerprint=fp)
    from efficientnet_lite_pytorch import EfficientNet
    from safetensors.torch import load_file

    net = EfficientNet.from_name("efficientnet-lite0", num_classes=len(classes))
    net.load_state_dict(load_file(str(run_dir / "model" / "model.safetensors")))
    net.eval()
    return Backbone(
        name=record.backbone, kind="efficientnet", model=net, preprocess=pre, feature_dim=1280, fingerprint=fp
    )


def load_predictor(run_dir: Path, base: Backbone | None) -> Predictor:
    """Load a run's weights; a head run reuses `base` when it is the backbone it was trained on."""
    record = RunRecord.from_json(json.loads((run_dir / "run.json").read_text()))
    if record.state != RunState.DONE:
        raise ValueError(f"run {record.id} is {record.state}, not a finished model")
    layout, thresholds = None, None
    if record.multi:
        layout = Layout.from_json(record.multi["layout"])
        thresholds = np.array(record.multi["thresholds"], dtype=np.float32)
    if record.mode == TrainMode.HEAD:
        head, cfg = HeadModel.load(run_dir / "head")
        bb = base
        if bb is None or bb.fingerprint != cfg["fingerprint"]:
            bb = load_backbone(cfg["backbone"])
            if bb.fingerprint != cfg["fingerprint"]:
                raise ValueError(f"the backbone {cfg['backbone']!r} of run {record.id} is not available")
        tta = bool(record.params.get("tta_flip", True))
        calibration = None if layout else Calibration.load(run_dir)
        return Predictor(record.id, "head", record.classes, bb, head, tta, calibration, layout, thresholds)
    bb = load_finetuned(run_dir, record)
    return Predictor(record.id, "finetune", record.classes, bb, None, False, None, layout, thresholds)
