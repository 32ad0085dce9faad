"""Which images a run learns from and which it is checked on: stratified per group (single-label) or per
label combination (multi-label), with a fixed seed.

Written by hand rather than with scikit-learn's train_test_split: images are ranked by a seeded hash of
their bytes, so adding an image moves at most one other between the two sides and the cached
augmented views stay useful from run to run (a shuffled split reshuffles everything)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from ...errors import BadInput
from ...schemas import ImageRef
from ..multilabel import Layout
from .types import MIN_IMAGES, Sample, Split


def _rank(key: str, seed: int) -> bytes:
    return hashlib.sha256(f"{seed}:{key}".encode()).digest()


def split_single(refs: Sequence[ImageRef], *, test_size: float, seed: int = 0) -> Split:
    """Stratified per group; a group with too few images is refused with what to do."""
    by_group: dict[str, list[ImageRef]] = {}
    for r in refs:
        by_group.setdefault(r.group, []).append(r)
    small = {g: len(v) for g, v in by_group.items() if len(v) < MIN_IMAGES}
    if small:
        g, n = next(iter(small.items()))
        raise BadInput(
            f"group {g!r} has only {n} image(s); each group needs at least {MIN_IMAGES} Group images "
            "(add images, or move them to another group)"
        )
    classes = sorted(by_group)
    if len(classes) < 2:
        raise BadInput(f"at least 2 groups need Group images to train (found {len(classes)})")
    train, val = [], []
    for label, g in enumerate(classes):
        items = sorted(by_group[g], key=lambda r: _rank(r.sha256, seed))
        n_val = min(len(items) - 1, max(1, round(len(items) * test_size)))
        for i, r in enumerate(items):
            (val if i < n_val else train).append(Sample(r.id, r.sha256, r.path, label))
    return Split(classes, train, val)


def mask_by_combination(shas: list[str], y: np.ndarray, *, test_size: float, seed: int = 0) -> np.ndarray:
    """Bool mask of check images, stratified by label combination: each combination with 2 or more
    images gives about test_size of them (at least one)."""
    combos: dict[bytes, list[int]] = {}
    for i, row in enumerate(y):
        combos.setdefault(np.packbits(row.astype(bool)).tobytes(), []).append(i)
    val = np.zeros(len(shas), dtype=bool)
    for members in combos.values():
        if len(members) < 2:
            continue
        members.sort(key=lambda i: _rank(shas[i], seed))
        n_val = min(len(members) - 1, max(1, round(len(members) * test_size)))
        val[members[:n_val]] = True
    return val


def memberships(refs: Sequence[ImageRef]) -> tuple[dict[str, ImageRef], dict[str, set[str]]]:
    """Multi-label datasets: one sample per image content (sha256) and the groups it is a member of."""
    first: dict[str, ImageRef] = {}
    sets: dict[str, set[str]] = {}
    for r in refs:
        first.setdefault(r.sha256, r)
        sets.setdefault(r.sha256, set()).add(r.group)
    return first, sets


def split_multi(refs: Sequence[ImageRef], exclusive_roots: list[str], *, test_size: float) -> Split:
    first, sets = memberships(refs)
    layout = Layout.build(sorted({g for s in sets.values() for g in s}), exclusive_roots)
    if len(layout.outputs) < 2:
        raise BadInput(f"at least 2 groups need Group images to train (found {len(layout.outputs)})")
    shas = sorted(sets)
    y = np.array([[g in sets[s] for g in layout.outputs] for s in shas], dtype=bool)
    is_val = mask_by_combination(shas, y, test_size=test_size)
    if not is_val.any():
        raise BadInput("too few images to keep some aside for checking (each label combination needs 2 or more)")
    samples = [Sample(first[s].id, s, first[s].path, y[i].astype(np.float32)) for i, s in enumerate(shas)]
    train = [x for x, v in zip(samples, is_val, strict=True) if not v]
    val = [x for x, v in zip(samples, is_val, strict=True) if v]
    return Split(layout.outputs, train, val, layout)
