"""The image families of the benchmarks, each with its categories (Debian packages, fetched once).

Which categories are **dev** (every threshold, default and method is chosen on them) and which are
**report** (every published figure comes from them) is fixed here, once, and nowhere else;
tests/test_benchmark_protocol.py keeps the two apart. benchmarks/README.md says the same in words.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from .common import fetched, usable

MAX_PIXELS = 20_000_000  # a few openclipart PNGs are 150-600 megapixels: left out of every benchmark


@dataclass
class Family:
    name: str
    root: Path
    categories: dict[str, list[Path]]  # category -> image files (wesnoth: one file per unit)
    dev: list[str] = field(default_factory=list)
    report: list[str] = field(default_factory=list)

    def files(self, which: str = "all") -> list[Path]:
        cats = self.dev if which == "dev" else self.report if which == "report" else sorted(self.categories)
        return [p for c in cats for p in self.categories[c]]


def _usable(files: list[Path]) -> list[Path]:
    return usable(files, MAX_PIXELS)


def _halves(names: list[str], seed: str) -> tuple[list[str], list[str]]:
    """A fixed, seeded split of the categories into dev and report (never re-drawn)."""
    shuffled = sorted(names)
    random.Random(seed).shuffle(shuffled)
    half = len(shuffled) // 2
    return sorted(shuffled[:half]), sorted(shuffled[half:])


def openclipart(min_images: int = 25, max_images: int = 120) -> Family:
    """Drawings; a category is a folder with at least `min_images` PNGs of its own (at most
    `max_images` of them, in name order). 'special' (gradients, patterns) is no category of things."""
    root = fetched("openclipart")
    cats: dict[str, list[Path]] = {}
    for folder in sorted(p for p in root.rglob("*") if p.is_dir()):
        rel = folder.relative_to(root).as_posix()
        if rel.startswith("special"):
            continue
        files = sorted(folder.glob("*.png"))
        if len(files) >= min_images:
            usable = _usable(files[: max_images + 10])[:max_images]
            if len(usable) >= min_images:
                cats[rel] = usable
    dev, report = _halves(list(cats), "openclipart")
    return Family("openclipart", root, cats, dev, report)


def unit_of(path: Path, root: Path) -> str:
    """Wesnoth: the unit a sprite belongs to, its animation frames and variants sharing it: the first
    word of the file name in its folder ('drakes/arbiter-blade-s-4.png' -> 'drakes/arbiter')."""
    rel = path.relative_to(root)
    return "/".join([*rel.parts[:-1], re.split(r"[-+_]", rel.stem, maxsplit=1)[0]])


def wesnoth(min_units: int = 8, frames: bool = False) -> Family:
    """Unit sprites by race; one file per unit (the shortest name: the unit's standing sprite) unless
    `frames`. A split is always by unit, never by frame."""
    root = fetched("wesnoth")
    by_unit: dict[str, list[Path]] = {}
    for p in sorted(root.rglob("*.png")):
        if p.parent == root:
            continue
        by_unit.setdefault(unit_of(p, root), []).append(p)
    cats: dict[str, list[Path]] = {}
    for unit, files in sorted(by_unit.items()):
        chosen = (
            sorted(files, key=lambda p: (len(p.name), p.name))
            if frames
            else [min(files, key=lambda p: (len(p.name), p.name))]
        )
        cats.setdefault(unit.split("/")[0], []).extend(_usable(chosen))
    cats = {c: f for c, f in cats.items() if len({unit_of(p, root) for p in f}) >= min_units}
    dev, report = _halves(list(cats), "wesnoth")
    return Family("wesnoth", root, cats, dev, report)


def glyphs() -> Family:
    """Characters rendered from Debian's fonts (fetch-glyphs.sh); a category is a character (A-Z, 0-9),
    its images one per typeface (37), so a split by file is a split by typeface. Synthetic print: a
    style unlike drawings and sprites."""
    root = fetched("glyphs")
    cats = {p.name: sorted(p.glob("*.png")) for p in sorted(root.iterdir()) if p.is_dir()}
    dev, report = _halves(list(cats), "glyphs")
    return Family("glyphs", root, cats, dev, report)


FAMILIES = {"openclipart": openclipart, "wesnoth": wesnoth, "glyphs": glyphs}
