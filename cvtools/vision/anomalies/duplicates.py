"""Duplicates: candidate pairs from cheap layers that scale (identical bytes, perceptual hashes, blocked
embedding neighbours), each judged before it is listed."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ... import imaging
from ...schemas import DuplicatePair, ImageRef

BLOCK = 1024  # rows per block in the all-pairs search: memory is BLOCK x N floats, never N x N
PHASH_CONFIRM = 1.5
# Differing bits of 1024 between the drawn parts of two images (imaging.content_signature), from
# openclipart pairs (anomaly_bench): copies 0-41, different drawings on the same template 20-170,
# mirror images and small objects on the same empty canvas 150-433 (a copy cropped into its drawing: 206).
# None (a tiny or blank drawing) keeps the pair: the check only removes.
CONTENT_SAME_BITS = 45
CONTENT_DIFFERENT_BITS = 240
CONTENT_ASPECT = 0.2  # |log| of the aspect-ratio quotient beyond which the drawn parts differ


def exact_pairs(shas: list[str]) -> list[tuple[int, int]]:
    by: dict[str, list[int]] = {}
    for i, s in enumerate(shas):
        by.setdefault(s, []).append(i)
    return [(a, b) for idx in by.values() for n, a in enumerate(idx) for b in idx[n + 1 :]]


def phash_pairs(hashes: list[str | None], max_bits: int) -> list[tuple[int, int, int]]:
    """(i, j, Hamming distance) for 64-bit hashes within max_bits, all pairs in blocks.
    Near-constant hashes (a plain background, almost no edges) say nothing and are left out."""
    valid = [i for i, h in enumerate(hashes) if h and 8 <= bin(int(h, 16)).count("1") <= 56]
    if len(valid) < 2:
        return []
    vals = np.array([int(hashes[i], 16) for i in valid], dtype=np.uint64)  # type: ignore[arg-type]
    out = []
    for start in range(0, len(vals), BLOCK):
        dist = np.bitwise_count(vals[start : start + BLOCK, None] ^ vals[None, start:])
        for a, b in zip(*np.nonzero(dist <= max_bits), strict=True):
            i, j = start + int(a), start + int(b)
            if j > i:
                out.append((valid[i], valid[j], int(dist[a, b])))
    return out


def embedding_pairs(vectors: np.ndarray, max_distance: float, *, project_to: int = 256) -> list[tuple[int, int, float]]:
    """(i, j, cosine distance) within max_distance. Blocked; for large sets a PCA projection finds
    candidates (with a safety margin) and every candidate is re-checked at full dimension."""
    n = len(vectors)
    if n < 2:
        return []
    x = unit(vectors)
    search, margin = x, 0.0
    if n > 4000 and x.shape[1] > project_to:
        rng = np.random.default_rng(0)
        sample = x[rng.choice(n, size=min(n, 4000), replace=False)]
        mean = sample.mean(0)
        _, _, vt = np.linalg.svd(sample - mean, full_matrices=False)
        # Distances are kept in the projected space with the full norm, so the cut stays comparable.
        search = unit((x - mean) @ vt[:project_to].T)
        margin = 0.05
    cut = 1.0 - (max_distance + margin)
    out: list[tuple[int, int, float]] = []
    for start in range(0, n, BLOCK):
        sims = search[start : start + BLOCK] @ search[start:].T
        ii, jj = np.nonzero(sims >= cut)
        keep = jj > ii
        for a, b in zip(ii[keep], jj[keep], strict=True):
            i, j = start + int(a), start + int(b)
            d = float(1.0 - x[i] @ x[j])
            if d <= max_distance:
                out.append((i, j, max(0.0, d)))
    return out


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class DrawnParts:
    """Compares the drawn parts of two images (imaging.content_signature), computed once per image."""

    def __init__(self, refs: list[ImageRef], max_pixels: int) -> None:
        self.refs, self.max_pixels = refs, max_pixels
        self._cache: dict[int, tuple[np.ndarray, float] | None] = {}

    def _signature(self, k: int) -> tuple[np.ndarray, float] | None:
        if k not in self._cache:
            try:
                img = imaging.load_rgb(self.refs[k].path, max_pixels=self.max_pixels, min_side=512)
                self._cache[k] = imaging.content_signature(img)
            except (OSError, ValueError, Image.DecompressionBombError):
                self._cache[k] = None
        return self._cache[k]

    def bits(self, i: int, j: int) -> int | None:
        """Differing bits of the two drawn parts; None when unknown."""
        a, b = self._signature(i), self._signature(j)
        if a is None or b is None:
            return None
        if abs(np.log(a[1] / b[1])) > CONTENT_ASPECT:
            return len(a[0])
        return int((a[0] != b[0]).sum())


def find_duplicates(
    refs: list[ImageRef], vecs: np.ndarray, *, max_distance: float, phash_bits: int, max_pixels: int
) -> list[DuplicatePair]:
    """Pairs across groups first, then by distance."""
    found: dict[tuple[int, int], list[str]] = {}

    def add(i: int, j: int, layer: str) -> None:
        found.setdefault((min(i, j), max(i, j)), []).append(layer)

    for i, j in exact_pairs([r.sha256 for r in refs]):
        add(i, j, "identical")
    u = unit(vecs)
    drawn = DrawnParts(refs, max_pixels)
    # A hash match alone is weak on plain drawings (white backgrounds hash alike): the embeddings must
    # agree too, within PHASH_CONFIRM times the duplicate distance, and then the drawn parts as well.
    for i, j, _ in phash_pairs([r.phash for r in refs], phash_bits):
        d = 1.0 - float(u[i] @ u[j])
        bits = drawn.bits(i, j) if max_distance < d <= PHASH_CONFIRM * max_distance else None
        if d <= max_distance or (d <= PHASH_CONFIRM * max_distance and (bits is None or bits <= CONTENT_SAME_BITS)):
            add(i, j, "perceptual hash")
    for i, j, _ in embedding_pairs(vecs, max_distance):
        # Close embeddings of drawings that differ (mirror images, small objects on the same empty canvas)
        # are left out when the drawn parts disagree strongly.
        bits = drawn.bits(i, j) if (i, j) not in found else None
        if bits is None or bits <= CONTENT_DIFFERENT_BITS:
            add(i, j, "embedding")
    pairs = [_pair(refs, u, i, j, layers) for (i, j), layers in found.items()]
    pairs.sort(key=lambda x: (not x.cross_group, x.distance))
    for n, pair in enumerate(pairs, 1):
        pair.pair = n
    return pairs


def _pair(refs: list[ImageRef], u: np.ndarray, i: int, j: int, layers: list[str]) -> DuplicatePair:
    a, b = refs[i], refs[j]
    dist = 0.0 if "identical" in layers else max(0.0, float(1.0 - u[i] @ u[j]))
    return DuplicatePair(a, b, round(dist, 6), layers, a.group != b.group)
