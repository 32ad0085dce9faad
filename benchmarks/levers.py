"""Accuracy levers on frozen features, measured on one trained run's held-out images (protocol_bench):
the shipped head, scikit-learn's logistic probe (C by 5-fold CV on the training images only; plain and
power-normalised features), and a Tip-Adapter-style cache blend of the head with the training images'
similarities (a k-NN vote). The blend's two constants are a grid here; the choice is read on dev."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegressionCV

from cvtools.vision.vectors import power_unit

CS = np.logspace(-3, 2, 11).tolist()
ALPHAS = (0.5, 1.0, 2.0)  # weight of the cache against the head's log-probabilities
BETAS = (5.0, 10.0)  # sharpness of the similarity affinity exp(-beta * (1 - cos))


def head_logprobs(head: torch.nn.Module, h0: np.ndarray, h1: np.ndarray) -> np.ndarray:
    head.eval()
    with torch.inference_mode():
        p = sum(torch.softmax(head(torch.from_numpy(v)), 1) for v in (h0, h1)) / 2
    return np.log(np.clip(p.numpy(), 1e-12, 1))


def cache_votes(cos: np.ndarray, y_tr: np.ndarray, beta: float, n_classes: int) -> np.ndarray:
    """Per class, the summed affinity of each query to that class's training images, from their cosine
    similarities (power-normalised features)."""
    affinity = np.exp(-beta * (1 - cos))
    onehot = np.eye(n_classes, dtype=np.float32)[y_tr]
    votes = affinity @ onehot
    return votes / np.maximum(votes.sum(1, keepdims=True), 1e-12)


def probes(x_tr: np.ndarray, y_tr: np.ndarray, h0: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The logistic probe's held-out accuracy (C by 5-fold CV on the training images only), on the
    plain and on the power-normalised features."""
    out = {}
    for label, f in (("acc | probe", lambda v: v), ("acc | probe, power-normalised", power_unit)):
        fitted = LogisticRegressionCV(Cs=CS, cv=5, max_iter=3000).fit(f(x_tr), y_tr)
        out[label] = float((fitted.predict(f(h0)) == y).mean())
    return out


def accuracy(
    head: torch.nn.Module, x_tr: np.ndarray, y_tr: np.ndarray, h0: np.ndarray, h1: np.ndarray, y: np.ndarray
) -> dict[str, float]:
    n = int(y_tr.max()) + 1
    lp = head_logprobs(head, h0, h1)
    out = {"acc | head (shipped)": float((lp.argmax(1) == y).mean())}
    out.update(probes(x_tr, y_tr, h0, y))
    cos = power_unit(h0) @ power_unit(x_tr).T
    for beta in BETAS:
        votes = cache_votes(cos, y_tr, beta, n)
        out[f"acc | k-NN vote alone, beta {beta:g}"] = float((votes.argmax(1) == y).mean())
        for alpha in ALPHAS:
            blend = lp + alpha * np.log(np.clip(votes, 1e-12, 1))
            out[f"acc | head + cache, alpha {alpha:g}, beta {beta:g}"] = float((blend.argmax(1) == y).mean())
    return out
