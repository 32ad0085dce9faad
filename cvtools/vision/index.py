"""Exact cosine similarity index over the Group images' embeddings (numpy; persisted without pickle)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclass
class SimilarityIndex:
    fingerprint: str  # the production model's feature space
    space: str  # "features" or "logits"
    run: str | None
    ids: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    built: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._reindex()

    def _reindex(self) -> None:
        self._pos = {i: k for k, i in enumerate(self.ids)}
        self._code_of = {g: k for k, g in enumerate(dict.fromkeys(self.groups))}
        self._codes = np.fromiter((self._code_of[g] for g in self.groups), np.int32, len(self.groups))

    def __len__(self) -> int:
        return len(self.ids)

    def has(self, image_id: str) -> bool:
        return image_id in self._pos

    # ---- queries --------------------------------------------------------------------------
    def query(self, vector: np.ndarray, k: int, group: str | None = None) -> list[tuple[str, str, float]]:
        """The k nearest (id, group, cosine distance), nearest first; only `group` when given."""
        with self._lock:
            if not self.ids:
                return []
            q = normalise(vector.reshape(1, -1))[0]
            dist = 1.0 - self.vectors @ q
            if group is not None:
                dist = np.where(self._codes == self._code_of.get(group, -1), dist, np.inf)
            k = min(k, len(dist))
            top = np.argpartition(dist, k - 1)[:k] if k < len(dist) else np.arange(len(dist))
            top = top[np.argsort(dist[top], kind="stable")]
            return [(self.ids[i], self.groups[i], float(max(0.0, dist[i]))) for i in top if np.isfinite(dist[i])]

    # ---- changes --------------------------------------------------------------------------
    def update(self, keep: dict[str, str], add: dict[str, tuple[str, np.ndarray]]) -> None:
        """Keep only ids in `keep` (with their current group), then add new (group, vector)."""
        with self._lock:
            rows = [self._pos[i] for i in self.ids if i in keep]
            ids = [self.ids[r] for r in rows]
            groups = [keep[i] for i in ids]
            vecs = [self.vectors[rows]] if rows else []
            new = [(i, g, v) for i, (g, v) in add.items() if i not in self._pos or i not in keep]
            if new:
                ids += [i for i, _, _ in new]
                groups += [g for _, g, _ in new]
                vecs.append(normalise(np.stack([v for _, _, v in new])))
            self.ids, self.groups = ids, groups
            dim = self.vectors.shape[1] if self.vectors.size else (new[0][2].shape[0] if new else 0)
            self.vectors = np.concatenate(vecs) if vecs else np.zeros((0, dim), np.float32)
            self._reindex()

    # ---- persistence ----------------------------------------------------------------------
    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        with self._lock:
            np.savez(
                tmp,
                vectors=self.vectors,
                ids=np.array(self.ids, dtype=np.str_),
                groups=np.array(self.groups, dtype=np.str_),
                meta=np.array([self.fingerprint, self.space, self.run or "", str(self.built)], dtype=np.str_),
            )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> SimilarityIndex:
        with np.load(path, allow_pickle=False) as z:
            fp, space, run, built = (str(x) for x in z["meta"])
            return cls(
                fp,
                space,
                run or None,
                [str(i) for i in z["ids"]],
                [str(g) for g in z["groups"]],
                z["vectors"].astype(np.float32),
                float(built),
            )
