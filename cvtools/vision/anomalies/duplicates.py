"""Duplicates: candidate pairs from cheap layers that scale (identical bytes, perceptual hashes, blocked
embedding neighbours: pairs.py), each judged by local-feature geometry (geometry.py) before it is listed."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ... import imaging
from ...schemas import DuplicatePair, ImageRef
from ..vectors import power_unit
from . import geometry
from .pairs import embedding_pairs, exact_pairs, phash_pairs

# The second embedding layer: the drawn part, grey and squared (embeddings.CANONICAL). Chosen on dev
# (benchmarks/dup_bench.py; docs/BENCHMARKS.md, "Duplicates"): copies that were framed, greyed or cropped
# are often not among their original's nearest by the centre crop, but are by this view.
DRAWN_PART_DISTANCE = 0.2
DRAWN_PART_NEIGHBOURS = 5


class FeatureStore:
    """Keypoints per image content (sha256) and verifier version: a changed file has another sha256,
    so its features are computed anew; nothing is computed twice."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # a cache: losing the last writes costs recomputation
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS feat (sha TEXT, version TEXT, blob BLOB, PRIMARY KEY (sha, version))"
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def get(self, sha: str) -> geometry.Features | None:
        with self._lock:
            row = self._db.execute(
                "SELECT blob FROM feat WHERE sha = ? AND version = ?", (sha, geometry.VERSION)
            ).fetchone()
        return geometry.Features.from_bytes(row[0]) if row else None

    def put(self, sha: str, features: geometry.Features) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO feat VALUES (?, ?, ?)", (sha, geometry.VERSION, features.to_bytes())
            )


@dataclass
class Candidate:
    i: int
    j: int
    layers: list[str] = field(default_factory=list)
    distance: float = 1.0  # cosine distance of the power-normalised embeddings


def candidates(
    refs: list[ImageRef],
    vecs: np.ndarray,
    *,
    max_distance: float,
    phash_bits: int,
    drawn: np.ndarray | None = None,
    drawn_distance: float = DRAWN_PART_DISTANCE,
) -> list[Candidate]:
    """Every pair one of the cheap layers proposes, with the layers that did; `drawn`: the embeddings of
    the drawn-part view, row for row (None: that layer is left out)."""
    found: dict[tuple[int, int], Candidate] = {}

    def add(i: int, j: int, layer: str) -> None:
        found.setdefault((min(i, j), max(i, j)), Candidate(min(i, j), max(i, j))).layers.append(layer)

    for i, j in exact_pairs([r.sha256 for r in refs]):
        add(i, j, "identical")
    for i, j, _ in phash_pairs([r.phash for r in refs], phash_bits):
        add(i, j, "perceptual hash")
    # Compared power-normalised: greyed, framed or recompressed copies otherwise look more like each
    # other than like their originals (benchmarks/dup_bench.py; docs/BENCHMARKS.md, "Duplicates").
    u = power_unit(vecs)
    for i, j, d in embedding_pairs(u, max_distance):
        add(i, j, "embedding")
        found[(i, j)].distance = d
    if drawn is not None:
        for i, j, _ in embedding_pairs(power_unit(drawn), drawn_distance, neighbours=DRAWN_PART_NEIGHBOURS):
            add(i, j, "drawn part")
    for c in found.values():
        if "identical" in c.layers:
            c.distance = 0.0
        elif "embedding" not in c.layers:  # proposed by its hash or its drawn part alone
            c.distance = max(0.0, float(1.0 - u[c.i] @ u[c.j]))
    return list(found.values())


class Features:
    """The features of the images taken part in candidate pairs: from the store, or computed (two
    threads: decoding and OpenCV both leave the interpreter lock)."""

    def __init__(self, store: FeatureStore | None, max_pixels: int) -> None:
        self.store, self.max_pixels = store, max_pixels
        self.skipped: list[dict[str, str]] = []

    def load(self, refs: list[ImageRef], which: set[int]) -> dict[int, geometry.Features]:
        out: dict[int, geometry.Features] = {}
        todo = []
        for k in sorted(which):
            cached = self.store.get(refs[k].sha256) if self.store else None
            if cached is not None:
                out[k] = cached
            else:
                todo.append(k)
        with ThreadPoolExecutor(2, thread_name_prefix="keypoints") as pool:
            for k, got in zip(todo, pool.map(lambda k: self._compute(refs[k]), todo), strict=True):
                if isinstance(got, str):
                    self.skipped.append({"name": f"{refs[k].group}/{refs[k].filename}", "reason": got})
                else:
                    out[k] = got
        return out

    def _compute(self, ref: ImageRef) -> geometry.Features | str:
        try:
            f = geometry.extract(ref.path, max_pixels=self.max_pixels)
        except (imaging.ImageRejected, OSError) as exc:
            return f"unreadable ({exc})"
        if self.store:
            self.store.put(ref.sha256, f)
        return f


def find_duplicates(
    refs: list[ImageRef],
    vecs: np.ndarray,
    *,
    max_distance: float,
    phash_bits: int,
    features: Features,
    drawn: np.ndarray | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[DuplicatePair]:
    """The verified pairs, across groups first, then by distance. Identical bytes need no check."""
    cands = candidates(refs, vecs, max_distance=max_distance, phash_bits=phash_bits, drawn=drawn)
    return judge(refs, cands, features, progress)


def judge(
    refs: list[ImageRef],
    cands: list[Candidate],
    features: Features,
    progress: Callable[[int, int], None] | None = None,
) -> list[DuplicatePair]:
    """The candidates the check accepts, as numbered pairs."""
    loaded = features.load(refs, {k for c in cands if "identical" not in c.layers for k in (c.i, c.j)})
    pairs = []
    for n, (c, verdict) in enumerate(_judged(cands, loaded)):
        if progress and n % 200 == 0:
            progress(n, len(cands))
        if verdict is None or verdict.same:
            a, b = refs[c.i], refs[c.j]
            detail = {"layers": c.layers, **(verdict.to_json() if verdict else {"same": True, "method": "bytes"})}
            pairs.append(DuplicatePair(a, b, round(c.distance, 6), c.layers, a.group != b.group, verdict=detail))
    pairs.sort(key=lambda x: (not x.cross_group, x.distance))
    for k, pair in enumerate(pairs, 1):
        pair.pair = k
    return pairs


def _judged(
    cands: list[Candidate], loaded: dict[int, geometry.Features]
) -> Iterator[tuple[Candidate, geometry.Verdict | None]]:
    """Each candidate with its verdict (None: identical bytes), two at a time: OpenCV leaves the
    interpreter lock. A candidate with an unreadable image is left out."""

    def judge(c: Candidate) -> geometry.Verdict | None:
        return None if "identical" in c.layers else geometry.verify(loaded[c.i], loaded[c.j])

    usable = [c for c in cands if "identical" in c.layers or (c.i in loaded and c.j in loaded)]
    pool = ThreadPoolExecutor(2, thread_name_prefix="verify")
    try:
        yield from zip(usable, pool.map(judge, usable), strict=True)
    finally:  # a cancelled job stops here: the pairs not yet judged are dropped, not waited for
        pool.shutdown(wait=True, cancel_futures=True)
