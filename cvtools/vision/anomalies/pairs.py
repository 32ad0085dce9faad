"""The cheap layers' pair searches for the duplicate pass: identical bytes, perceptual hashes within a
few bits, and each image's nearest embeddings (blocked, exact up to PROJECT_ABOVE images)."""

from __future__ import annotations

import numpy as np

from ..vectors import unit

BLOCK = 1024  # rows per band in the all-pairs search
TILE = 8192  # columns per product: memory is BLOCK x TILE floats, never N x N
NEIGHBOURS = 10  # the nearest embeddings of an image that are compared with it in detail
PROJECT_ABOVE = 15000  # images; above, a projection is faster than the exact search (BENCHMARKS)
PROJECTION_MARGIN = 0.05  # of cosine distance, added to the cut in the projection
OVERFETCH = 3  # neighbours found in the projection per neighbour kept at full dimension


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
    vectors: np.ndarray,
    max_distance: float,
    *,
    neighbours: int = NEIGHBOURS,
    project_to: int = 256,
    project_above: int = PROJECT_ABOVE,
) -> list[tuple[int, int, float]]:
    """(i, j, cosine distance) within max_distance, each image with at most `neighbours` nearest others
    (a family of look-alikes, such as sprites of one style, would otherwise propose every pair of its
    members). Blocked; above `project_above` images a projection finds OVERFETCH x `neighbours` candidates
    per image and they are ranked again at full dimension."""
    n = len(vectors)
    if n < 2:
        return []
    x = unit(vectors)
    if n > project_above and x.shape[1] > project_to:
        cut = 1.0 - (max_distance + PROJECTION_MARGIN)
        ii, jj, _ = _nearest(_projected(x, project_to), cut, OVERFETCH * neighbours)
        sims = _similarity(x, ii, jj)  # at full dimension
        keep = sims >= 1.0 - max_distance
        ii, jj, sims = _top(ii[keep], jj[keep], sims[keep], neighbours)
    else:
        ii, jj, sims = _nearest(x, 1.0 - max_distance, neighbours)
    lo, hi = np.minimum(ii, jj), np.maximum(ii, jj)
    _, first = np.unique(lo * n + hi, return_index=True)  # (i, j) and (j, i) are one pair
    dist = np.maximum(1.0 - sims[first], 0.0)
    return list(zip(lo[first].tolist(), hi[first].tolist(), dist.tolist(), strict=True))


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


def _nearest(x: np.ndarray, cut: float, k: int) -> tuple[np.ndarray, ...]:
    """(rows, columns, similarities): each row's at most k most similar other rows among those reaching `cut`.
    Only the tiles on and above the diagonal are multiplied (the similarity is symmetric), the cut
    comes first (few pass it) and only rows with a hit are searched for their positions; the kept
    neighbours are pruned to k per row whenever they pass 4 x n x k, so memory stays bounded."""
    x = x.astype(np.float32, copy=False)
    n = len(x)
    # One BLOCK x TILE buffer for every product: a fresh block per row band (200 MB at 50,000 images)
    # was paged in anew each time, and the cut read it back from memory, not from the cache (the
    # 50,000-vector search 8.3-10.3 s -> 6.1-6.5 s, the same pairs).
    buf = np.empty((min(BLOCK, n), min(TILE, n)), np.float32)
    found: list[tuple[np.ndarray, ...]] = []
    kept = 0
    for start in range(0, n, BLOCK):
        rows = x[start : start + BLOCK]
        for col in range(start, n, TILE):
            tile = buf[: len(rows), : min(TILE, n - col)]
            np.matmul(rows, x[col : col + tile.shape[1]].T, out=tile)
            diagonal = min(tile.shape[1], start + len(rows) - col)  # columns that are rows of this band
            if diagonal > 0:  # itself and the pairs seen from the other side
                diag = tile[:, :diagonal]
                np.copyto(diag, -np.inf, where=np.tri(*diag.shape, k=start - col, dtype=bool))
            hit = np.flatnonzero(tile.max(1) >= cut)
            r, c = np.nonzero(tile[hit] >= cut)
            r = hit[r]
            s = tile[r, c]
            r, c = r + start, c + col
            found.append((np.concatenate([r, c]), np.concatenate([c, r]), np.concatenate([s, s])))
            kept += 2 * len(s)
        if kept > 4 * n * k:  # the top k of a row survive any pruning: prune only when memory asks
            found = [_top(*(np.concatenate(part) for part in zip(*found, strict=True)), k)]
            kept = len(found[0][0])
    if not found:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return _top(*(np.concatenate(part) for part in zip(*found, strict=True)), k)


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
