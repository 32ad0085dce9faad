"""Pixel comparisons of two drawn parts on their thumbnails (geometry.py places them): correlation
and the share of the worst part that differs, once aligned, refined by OpenCV's ECC."""

from __future__ import annotations

import cv2
import numpy as np

BLOCKS = 4  # the differing share is that of the worst of BLOCKS x BLOCKS parts
DIFF_SIGMA = 1.0  # a pixel differs when the normalised grey levels differ by more than this
# ... from every pixel of the other image within this many pixels (a 3 x 3 neighbourhood): a placement
# a pixel off, or an edge smeared by JPEG or a turn, is not a different picture. Chosen on the dev
# family of benchmarks/dup_bench.py (docs/BENCHMARKS.md, "Duplicates", twenty-fourth session).
TOLERANCE = 1
ECC_ITERATIONS = 25  # at most per alignment: a refused pair runs them all; 40 found no more copies on dev


def ncc(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    a, b = a.astype(np.float32), b.astype(np.float32)
    if mask is not None:
        a, b = a[mask], b[mask]
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 1e-6 else 0.0


def compare(
    a: tuple[np.ndarray, np.ndarray],
    b: tuple[np.ndarray, np.ndarray],
    warp: np.ndarray | None,
    native: int,
    gate: float = -1.0,
    differing: bool = True,
) -> tuple[float, float, float, np.ndarray]:
    """(correlation, differing share of the worst part, correlation before refinement, the placement
    that counted: a 2 x 3 matrix) of b moved onto a, over the area both drawn parts cover: `warp` maps
    a's thumbnail coordinates to b's (None: from the identity), refined by ECC (an affine motion that
    does not reflect) on thumbnails of half the size, unless the start correlates less than `gate` (ECC
    is most of the cost of a check). Both are blurred to the sharpness of the smaller image (`native`
    pixels): a 50-pixel copy is not a different picture for being blurred. a and b: (thumbnail, 0/1
    mask of its drawn part). Without `differing` the differing share is not measured (1.0 is
    returned): the mirror image needs only the correlation."""
    (fa, ma), (fb, mb) = ((t.astype(np.float32), m) for t, m in (a, b))
    sigma = 0.6 * fa.shape[0] / max(1, native)
    if sigma > 0.5:
        fa, fb = cv2.GaussianBlur(fa, (0, 0), sigma), cv2.GaussianBlur(fb, (0, 0), sigma)
    start = np.eye(2, 3, dtype=np.float32) if warp is None else warp.astype(np.float32)
    first = _placed(fa, fb, start, ma, mb)
    best, placement = first, start
    refined = _ecc(fa, fb, start) if first[0] >= gate else None
    if refined is not None:  # ECC may also walk away from a good start: the better of the two counts
        then = _placed(fa, fb, refined, ma, mb)
        if then[0] > best[0]:
            best, placement = then, refined
    corr, moved, inside = best
    if not differing or moved is None:
        return corr, 1.0, first[0], placement
    return corr, _worst_part(fa, moved, inside), first[0], placement


def stretch(w: np.ndarray) -> float:
    """How far a placement is from a rotation with one scale: the ratio of its two singular values (1:
    not at all). Copies are cropped, rescaled and turned, not sheared or stretched unevenly, but an
    affine ECC can bend one small blurred shape onto another (a bold 4 onto an A)."""
    sv = np.linalg.svd(np.asarray(w, np.float64)[:, :2], compute_uv=False)
    return float(sv[0] / max(sv[1], 1e-9))


def _ecc(fa: np.ndarray, fb: np.ndarray, start: np.ndarray) -> np.ndarray | None:
    half = [cv2.resize(x, (x.shape[1] // 2, x.shape[0] // 2), interpolation=cv2.INTER_AREA) for x in (fa, fb)]
    w = start.copy()
    w[:, 2] /= 2
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ECC_ITERATIONS, 1e-4)
    try:
        _, w = cv2.findTransformECC(half[0], half[1], w, cv2.MOTION_AFFINE, criteria, None, 3)
    except cv2.error:  # no convergence
        return None
    if np.linalg.det(w[:, :2]) <= 0.25:  # a reflection or a collapse is no alignment
        return None
    w[:, 2] *= 2
    return w


def _placed(
    fa: np.ndarray, fb: np.ndarray, w: np.ndarray, ma: np.ndarray, mb: np.ndarray
) -> tuple[float, np.ndarray | None, np.ndarray]:
    """(correlation, b moved onto a, where both drawn parts are) for the placement w; the differing
    share is measured only for the placement that wins (most of a score's cost)."""
    size = (fa.shape[1], fa.shape[0])
    moved = cv2.warpAffine(fb, w, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    covered = cv2.warpAffine(mb, w, size, flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)
    inside = (covered > 0.5) & (ma > 0.5)
    if inside.sum() < 0.3 * (ma > 0.5).sum():
        return 0.0, None, inside
    return ncc(fa, moved, inside), moved, inside


def _worst_part(a: np.ndarray, b: np.ndarray, inside: np.ndarray) -> float:
    """The largest share of differing pixels in any of the BLOCKS x BLOCKS parts (grey levels
    normalised over the common area): a different drawing on a shared template differs strongly in
    its part of the picture, a recompressed copy a little everywhere."""
    va, vb = a[inside], b[inside]
    za = (a - va.mean()) / (va.std() + 1e-3)
    zb = (b - vb.mean()) / (vb.std() + 1e-3)
    differs = (_outside(za, zb) | _outside(zb, za)) & inside
    h, w = a.shape
    ys, xs = [y * h // BLOCKS for y in range(BLOCKS)], [x * w // BLOCKS for x in range(BLOCKS)]
    n_in, n_diff = _part_sums(inside, ys, xs), _part_sums(differs, ys, xs)
    size = np.outer(np.diff([*ys, h]), np.diff([*xs, w]))
    counted = n_in >= 0.5 * size  # parts mostly outside the common area say nothing
    return float((n_diff[counted] / n_in[counted]).max()) if counted.any() else 0.0


def _outside(za: np.ndarray, zb: np.ndarray) -> np.ndarray:
    """Where za lies more than DIFF_SIGMA outside the range of zb's neighbourhood (TOLERANCE pixels; 0:
    the same pixel only)."""
    k = np.ones((2 * TOLERANCE + 1, 2 * TOLERANCE + 1), np.uint8)
    return (za < cv2.erode(zb, k) - DIFF_SIGMA) | (za > cv2.dilate(zb, k) + DIFF_SIGMA)


def _part_sums(mask: np.ndarray, ys: list[int], xs: list[int]) -> np.ndarray:
    """The True count of each part; by a reshape when the parts are equal (every thumbnail: 4x faster)."""
    h, w = mask.shape
    if h % BLOCKS == 0 and w % BLOCKS == 0:
        return mask.reshape(BLOCKS, h // BLOCKS, BLOCKS, w // BLOCKS).sum(axis=(1, 3), dtype=np.int32)
    return np.add.reduceat(np.add.reduceat(mask.astype(np.int32), ys, 0), xs, 1)
