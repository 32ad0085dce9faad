"""Which outputs of a multi-label model form one attribute, and the set of groups an answer names.
Plain numpy: the app and the model bundle (which has no torch) share it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Layout:
    outputs: list[str]  # one per leaf group with images, sorted
    attributes: dict[str, list[int]]  # exclusive root -> output indices of its values

    @property
    def independent(self) -> list[int]:
        taken = {i for idx in self.attributes.values() for i in idx}
        return [i for i in range(len(self.outputs)) if i not in taken]

    @classmethod
    def build(cls, groups: list[str], exclusive_roots: list[str]) -> Layout:
        outputs = sorted(groups)
        attributes: dict[str, list[int]] = {}
        for root in sorted(exclusive_roots):
            idx = [i for i, g in enumerate(outputs) if g.startswith(root + "/")]
            if len(idx) >= 2:
                attributes[root] = idx
        return cls(outputs, attributes)

    def to_json(self) -> dict[str, Any]:
        return {"outputs": self.outputs, "attributes": self.attributes}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Layout:
        return cls(list(d["outputs"]), {k: list(v) for k, v in d["attributes"].items()})


def predict_sets(probs: np.ndarray, layout: Layout, thresholds: np.ndarray) -> np.ndarray:
    """Bool matrix: each label above its threshold; per attribute at most its best value."""
    out = probs >= thresholds[None, :]
    for idx in layout.attributes.values():
        best = np.array(idx)[probs[:, idx].argmax(1)]
        keep = np.zeros_like(out[:, idx])
        keep[np.arange(len(probs)), [idx.index(b) for b in best]] = True
        out[:, idx] &= keep
    return out
