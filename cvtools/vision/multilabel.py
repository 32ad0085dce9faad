"""Multi-label heads: one softmax per exclusive attribute, one sigmoid per independent label.

A top-level group marked exclusive is an attribute; its leaf sub-groups are the values, trained as
one softmax (images without a value for it are left out of that attribute's loss). Every other leaf
group is an independent yes/no label with binary cross-entropy. Each output keeps a threshold
calibrated on the check images (best F1), so an answer is a set of groups.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from .head import EpochRow, HeadModel, HeadParams, fit, new_head
from .labelsets import Layout, predict_sets

THRESHOLD_GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)


def probabilities(logits: torch.Tensor, layout: Layout) -> torch.Tensor:
    """Each group's own probability: softmax within an attribute, sigmoid for a label. Written with
    matrix products instead of in-place indexing so that it exports to ONNX as it is."""
    n = logits.shape[1]
    keep = torch.ones(n, dtype=logits.dtype)
    p = torch.sigmoid(logits)
    parts = []
    for idx in layout.attributes.values():
        place = torch.zeros(len(idx), n, dtype=logits.dtype)
        place[torch.arange(len(idx)), torch.tensor(idx)] = 1.0
        keep[idx] = 0.0
        parts.append(F.softmax(logits[:, idx], dim=1) @ place)
    return p * keep + sum(parts) if parts else p


def loss_fn(logits: torch.Tensor, y: torch.Tensor, layout: Layout, pos_weight: torch.Tensor) -> torch.Tensor:
    total = logits.new_zeros(())
    ind = layout.independent
    if ind:
        total = total + F.binary_cross_entropy_with_logits(logits[:, ind], y[:, ind], pos_weight=pos_weight[ind])
    for idx in layout.attributes.values():
        has = y[:, idx].sum(1) > 0
        if has.any():
            target = y[has][:, idx].argmax(1)
            total = total + F.cross_entropy(logits[has][:, idx], target, label_smoothing=0.05)
    return total


def f1_counts(pred: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tp = (pred & y).sum(0)
    return tp, (pred & ~y).sum(0), (~pred & y).sum(0)


def micro_macro_f1(pred: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    tp, fp, fn = f1_counts(pred, y)
    micro = 2 * tp.sum() / max(1, 2 * tp.sum() + fp.sum() + fn.sum())
    per = 2 * tp / np.maximum(1, 2 * tp + fp + fn)
    present = y.sum(0) > 0
    return float(micro), float(per[present].mean()) if present.any() else 0.0


def calibrate_thresholds(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per output, the threshold with the best F1 on the check images; 0.5 without positives there."""
    out = np.full(probs.shape[1], 0.5, dtype=np.float32)
    for j in range(probs.shape[1]):
        if not y[:, j].any():
            continue
        scores = []
        for t in THRESHOLD_GRID:
            pred = probs[:, j] >= t
            tp = int((pred & y[:, j]).sum())
            scores.append(2 * tp / max(1, 2 * tp + int((pred & ~y[:, j]).sum()) + int((~pred & y[:, j]).sum())))
        # Ties: the threshold nearest 0.5, the least surprising one.
        best = max(range(len(scores)), key=lambda k: (round(scores[k], 6), -abs(THRESHOLD_GRID[k] - 0.5)))
        out[j] = THRESHOLD_GRID[best]
    return out


def evaluate_multi(head: HeadModel, views: list[np.ndarray], layout: Layout) -> np.ndarray:
    head.eval()
    with torch.inference_mode():
        return torch.stack([probabilities(head(torch.from_numpy(v)), layout) for v in views]).mean(0).numpy()


def train_multi_head(
    x_train: np.ndarray,
    y_train: np.ndarray,
    val_views: list[np.ndarray],
    y_val: np.ndarray,
    *,
    layout: Layout,
    params: HeadParams,
    on_epoch: Callable[[EpochRow], None] | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> tuple[HeadModel, list[EpochRow]]:
    """As head.train_head, with the multi-label loss; the kept epoch has the best micro-F1 (then loss).
    EpochRow.accuracy carries the micro-F1 at 0.5 (per attribute: its best value)."""
    head, xt = new_head(x_train, len(layout.outputs), params)
    yt = torch.from_numpy(y_train.astype(np.float32))
    pos = yt.sum(0)
    # Rare labels weigh more, capped so that a label seen twice does not dominate.
    pos_weight = torch.clamp((len(yt) - pos) / torch.clamp(pos, min=1), 1.0, 10.0)
    half = np.full(len(layout.outputs), 0.5, dtype=np.float32)
    yv, yv_t = y_val.astype(bool), torch.from_numpy(y_val.astype(np.float32))
    rows: list[EpochRow] = []

    def batch_loss(idx: torch.Tensor) -> torch.Tensor:
        return loss_fn(head(xt[idx]), yt[idx], layout, pos_weight)

    def score(epoch: int) -> tuple[float, float]:
        if not len(y_val):
            return 0.0, -float(epoch)
        with torch.inference_mode():
            vloss = float(
                np.mean([float(loss_fn(head(torch.from_numpy(v)), yv_t, layout, pos_weight)) for v in val_views])
            )
        probs = evaluate_multi(head, val_views, layout)
        return micro_macro_f1(predict_sets(probs, layout, half), yv)[0], vloss

    fit(
        head,
        len(xt),
        batch_loss,
        score,
        params=params,
        on_epoch=lambda r: (rows.append(r), on_epoch(r) if on_epoch else None),
        cancelled=cancelled,
    )
    return head, rows


def report(probs: np.ndarray, y: np.ndarray, layout: Layout, thresholds: np.ndarray) -> dict[str, Any]:
    """micro/macro F1, per-group precision/recall/F1, per-attribute accuracy and confusion matrix."""
    yb = y.astype(bool)
    pred = predict_sets(probs, layout, thresholds)
    micro, macro = micro_macro_f1(pred, yb)
    tp, fp, fn = f1_counts(pred, yb)
    per_group = {
        g: {
            "precision": round(float(tp[j] / max(1, tp[j] + fp[j])), 4),
            "recall": round(float(tp[j] / max(1, tp[j] + fn[j])), 4),
            "f1": round(float(2 * tp[j] / max(1, 2 * tp[j] + fp[j] + fn[j])), 4),
            "support": int(yb[:, j].sum()),
            "threshold": round(float(thresholds[j]), 3),
        }
        for j, g in enumerate(layout.outputs)
    }
    attributes = {}
    for root, idx in layout.attributes.items():
        has = yb[:, idx].any(1)
        truth, guess = yb[has][:, idx].argmax(1), probs[has][:, idx].argmax(1)
        confusion = np.zeros((len(idx), len(idx)), dtype=int)
        for t, p in zip(truth, guess, strict=True):
            confusion[t, p] += 1
        attributes[root] = {
            "values": [layout.outputs[i] for i in idx],
            "accuracy": round(float((truth == guess).mean()), 4) if len(truth) else 0.0,
            "confusion": confusion.tolist(),
        }
    return {"micro_f1": round(micro, 4), "macro_f1": round(macro, 4), "per_group": per_group, "attributes": attributes}
