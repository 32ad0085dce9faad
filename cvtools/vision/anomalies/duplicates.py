"""Duplicates: candidate pairs from cheap layers that scale (identical bytes, perceptual hashes, blocked
embedding neighbours), each judged by local-feature geometry (geometry.py) before it is listed."""

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
from ..vectors import power_unit, unit
from . import geometry

BLOCK = 1024  # rows per block in the all-pairs search: memory is BLOCK x N floats, never N x N
NEIGHBOURS = 10  # the nearest embeddings of an image that are compared with it in detail
PROJECT_ABOVE = 4000  # images; above, the neighbours are searched in a projection first
PROJECTION_MARGIN = 0.05  # of cosine distance, added to the cut in the projection
OVERFETCH = 3  # neighbours found in the projection per neighbour kept at full dimension
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


def embedding_pairs(
    vectors: np.ndarray, max_distance: float, *, neighbours: int = NEIGHBOURS, project_to: int = 256
) -> list[tuple[int, int, float]]:
    """(i, j, cosine distance) within max_distance, each image with at most `neighbours` nearest others
    (a family of look-alikes, such as sprites of one style, would otherwise propose every pair of its
    members). Blocked; for large sets a projection finds OVERFETCH x `neighbours` candidates per image
    and they are ranked again at full dimension."""
    n = len(vectors)
    if n < 2:
        return []
    x = unit(vectors)
    if n > PROJECT_ABOVE and x.shape[1] > project_to:
        ii, jj = _nearest(_projected(x, project_to), 1.0 - (max_distance + PROJECTION_MARGIN), OVERFETCH * neighbours)
        sims = _similarity(x, ii, jj)
        keep = sims >= 1.0 - max_distance
        ii, jj = _top(ii[keep], jj[keep], sims[keep], neighbours)[:2]
    else:
        ii, jj = _nearest(x, 1.0 - max_distance, neighbours)
    lo, hi = np.minimum(ii, jj), np.maximum(ii, jj)
    _, first = np.unique(lo * n + hi, return_index=True)  # (i, j) and (j, i) are one pair
    lo, hi = lo[first], hi[first]
    dist = 1.0 - _similarity(x, lo, hi)
    keep = dist <= max_distance
    return list(zip(lo[keep].tolist(), hi[keep].tolist(), np.maximum(dist[keep], 0.0).tolist(), strict=True))


def _similarity(x: np.ndarray, ii: np.ndarray, jj: np.ndarray) -> np.ndarray:
    """The cosine similarity of the rows ii and jj of unit vectors x, a bounded slice at a time."""
    parts = [np.einsum("ij,ij->i", x[ii[k : k + 65536]], x[jj[k : k + 65536]]) for k in range(0, len(ii), 65536)]
    return np.concatenate(parts or [np.zeros(0, np.float32)]).astype(np.float32)


def _projected(x: np.ndarray, dims: int) -> np.ndarray:
    """x on the `dims` axes that carry most of its second moment, at unit length. Not centred: centring
    features that share a large mean (pooled activations) made near neighbours look far apart."""
    sample = x[np.random.default_rng(0).choice(len(x), size=min(len(x), 4000), replace=False)].astype(np.float64)
    # The axes from the d x d matrix of the sample: the same as an SVD of the sample, 4x faster.
    axes = np.linalg.eigh(sample.T @ sample)[1][:, ::-1][:, :dims].astype(np.float32)
    return unit(x @ axes)


def _nearest(x: np.ndarray, cut: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns): each row's at most k most similar other rows among those reaching `cut`.
    Only the blocks on and above the diagonal are multiplied (the similarity is symmetric), the cut
    comes first (few pass it) and only rows with a hit are searched for their positions; the kept
    neighbours are pruned to k per row whenever they pass 4 x n x k, so memory stays bounded."""
    n = len(x)
    rows, cols, sims = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    for start in range(0, n, BLOCK):
        block = x[start : start + BLOCK] @ x[start:].T
        size = len(block)
        block[:, :size][np.tril_indices(size)] = -np.inf  # itself and pairs seen from the other side
        hit = np.flatnonzero(block.max(1) >= cut)
        if len(hit) > size // 4:  # most rows have a neighbour: a copy of them would cost more than it saves
            r, c = np.nonzero(block >= cut)
        else:
            r, c = np.nonzero(block[hit] >= cut)
            r = hit[r]
        s = block[r, c]
        r, c = r + start, c + start
        rows, cols = np.concatenate([rows, r, c]), np.concatenate([cols, c, r])
        sims = np.concatenate([sims, s, s])
        if len(rows) > 4 * n * k:  # the top k of a row survive any pruning: prune only when memory asks
            rows, cols, sims = _top(rows, cols, sims, k)
    return _top(rows, cols, sims, k)[:2]


def _top(rows: np.ndarray, cols: np.ndarray, sims: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """Each row's k most similar entries; ties broken by column: the same answer in any block order.
    Ordered by one integer key (row, then similarity falling) after a stable sort by column: the
    lexsort of the three it replaces took 2.6 s on 2.6 million entries, this 0.9 s."""
    bits = (0.0 - sims).astype(np.float32).view(np.int32).astype(np.int64)  # 0.0 - : no negative zero
    falling = np.where(bits < 0, -(bits & 0x7FFFFFFF) - 1, bits) + 2**31  # float order as 0 .. 2^32 - 1
    by_col = np.argsort(cols, kind="stable")
    order = by_col[np.argsort(((rows << 32) | falling)[by_col], kind="stable")]
    rows, cols, sims = rows[order], cols[order], sims[order]
    rank = np.arange(len(rows)) - np.searchsorted(rows, rows)
    keep = rank < k
    return rows[keep], cols[keep], sims[keep]


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
