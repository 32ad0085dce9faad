"""Answers that know their limits: calibrated "unknown" and the parent-group fallback.

Calibrated after each head training from out-of-fold probabilities (each image judged by a head that
did not learn from it) and from the training images' own nearest-neighbour distances, so that about
`target_frr` of known images would be rejected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BLOCK = 1024
MIN_PER_GROUP = 20  # answers needed for a group's own threshold


def ancestors(group: str) -> list[str]:
    """'a/b/c' -> ['a/b', 'a'], nearest first."""
    parts = group.split("/")
    return ["/".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


def subtree_sums(probs: np.ndarray, classes: list[str]) -> dict[str, np.ndarray]:
    """A parent's probability is the sum over the leaves of its sub-tree, for each row."""
    out: dict[str, np.ndarray] = {}
    for i, c in enumerate(classes):
        for parent in ancestors(c):
            out[parent] = out.get(parent, 0) + probs[..., i]
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def nearest_distances(unit: np.ndarray) -> np.ndarray:
    """Each row's cosine distance to its nearest other row (leave-one-out), in blocks."""
    n = len(unit)
    out = np.ones(n, dtype=np.float32)
    for start in range(0, n, BLOCK):
        sims = unit[start : start + BLOCK] @ unit.T
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = -np.inf
        out[start : start + BLOCK] = 1.0 - sims.max(1)
    return np.maximum(out, 0.0)


@dataclass
class Calibration:
    classes: list[str]
    thresholds: dict[str, float]  # leaf group -> lowest top probability accepted when it is the answer
    parents: dict[str, float]  # parent group -> lowest summed probability accepted
    distance: float  # largest cosine distance to the nearest training image accepted
    target_frr: float
    vectors: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0), np.float32))
    ids: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)

    def save(self, folder: Path) -> None:
        meta = {
            "classes": self.classes,
            "thresholds": self.thresholds,
            "parents": self.parents,
            "distance": self.distance,
            "target_frr": self.target_frr,
        }
        (folder / "calibration.json").write_text(json.dumps(meta, indent=1))
        np.savez(
            folder / "calibration.npz",
            vectors=self.vectors.astype(np.float16),
            ids=np.array(self.ids, dtype=np.str_),
            groups=np.array(self.groups, dtype=np.str_),
        )

    @classmethod
    def load(cls, folder: Path) -> Calibration | None:
        if not (folder / "calibration.json").is_file():
            return None
        meta = json.loads((folder / "calibration.json").read_text())
        with np.load(folder / "calibration.npz", allow_pickle=False) as z:
            vectors = z["vectors"].astype(np.float32)
            ids, groups = [str(i) for i in z["ids"]], [str(g) for g in z["groups"]]
        return cls(
            meta["classes"],
            meta["thresholds"],
            meta["parents"],
            meta["distance"],
            meta["target_frr"],
            vectors,
            ids,
            groups,
        )

    def summary(self) -> dict[str, Any]:
        return {
            "thresholds": {k: round(v, 4) for k, v in self.thresholds.items()},
            "parents": {k: round(v, 4) for k, v in self.parents.items()},
            "distance": round(self.distance, 4),
            "target_frr": self.target_frr,
        }

    # ---- the decision -----------------------------------------------------------------------
    def judge(self, probs: np.ndarray, vector: np.ndarray) -> dict[str, Any]:
        """unknown (bool), its reason, the fallback parent, the nearest training image, a score (>1: unknown)."""
        top = int(np.argmax(probs))
        group, p = self.classes[top], float(probs[top])
        nearest: dict[str, Any] | None = None
        dist = 0.0
        if len(self.vectors):
            sims = self.vectors @ _unit(vector)
            k = int(np.argmax(sims))
            dist = max(0.0, float(1.0 - sims[k]))
            nearest = {"id": self.ids[k], "group": self.groups[k], "distance": round(dist, 6)}
        leaf_t = self.thresholds.get(group, 0.0)
        confident = p >= leaf_t
        fallback = None
        if not confident:
            sums = subtree_sums(probs, self.classes)
            for parent in ancestors(group):
                if parent in self.parents and float(sums[parent]) >= self.parents[parent]:
                    fallback = parent
                    break
        far = self.distance > 0 and dist > self.distance
        # Ranked by the probability (the stronger signal on real data); images rejected for their
        # distance are put above 1 as well.
        score = leaf_t / max(p, 1e-6)
        if far:
            score = max(score, 1.0 + (dist - self.distance))
        if far:
            reason = f"far from every training image (distance {dist:.3f} > {self.distance:.3f})"
        elif not confident and fallback is None:
            reason = f"no group is confident ({group} {p:.3f} < {leaf_t:.3f})"
        else:
            reason = None
        return {
            "unknown": reason is not None,
            "reason": reason,
            "fallback": None if far else fallback,
            "nearest": nearest,
            "score": round(score, 4),
        }


def calibrate(
    oof_probs: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    vectors: np.ndarray,
    ids: list[str],
    *,
    target_frr: float,
) -> Calibration:
    """Thresholds that reject about target_frr of the known images (out-of-fold, so honest).
    The two tests (probability, distance) share the budget: target_frr / 2 each."""
    q = target_frr / 2
    top, answer = oof_probs.max(1), oof_probs.argmax(1)
    overall = float(np.quantile(top, q))
    thresholds = {}
    for i, c in enumerate(classes):
        # The top probability of the images answered as this group; too few of them: all images'.
        values = top[answer == i]
        thresholds[c] = float(np.quantile(values, q)) if len(values) >= MIN_PER_GROUP else overall
    parents = {}
    sums = subtree_sums(oof_probs, classes)
    for parent, values in sums.items():
        members = np.array([c == parent or c.startswith(parent + "/") for c in classes])[labels]
        if members.any():
            parents[parent] = float(np.quantile(values[members], q))
    unit = _unit(vectors)
    nn = nearest_distances(unit) if len(unit) > 1 else np.zeros(1)
    distance = float(np.quantile(nn, 1.0 - q)) if len(nn) else 0.0
    groups = [classes[i] for i in labels]
    return Calibration(classes, thresholds, parents, distance, target_frr, unit, list(ids), groups)
