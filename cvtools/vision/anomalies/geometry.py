"""Is it the same picture? Local features decide, as copy-detection systems do: ORB keypoints on each
image's drawn part, matches kept by the ratio test, a similarity transform (rotation, scale, shift: no
reflection) fitted by RANSAC, then the inliers counted, the share of each image they cover, and the
two images compared pixel by pixel once aligned. That accepts crops, rescales, recompression, borders
and small rotations, and rejects mirror images and different drawings on one template.

The fallback rule, for images too plain or too small for keypoints (a flat icon, a 72-pixel sprite):
the two drawn parts, at one size, are aligned by ECC (an affine motion without reflection) and must
then correlate strongly, and clearly better than the mirror image does, unless the picture is
symmetric. Every threshold was chosen on the dev family of benchmarks/dup_bench.py."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import cv2
import faiss
import numpy as np
from PIL import Image

from ... import imaging
from ..drawn import drawn_part, scaled, square
from . import pixels

VERSION = "orb4"  # part of every cached feature set: they follow changes of this module
SIDE = 384  # the drawn part is scaled so that its longer side has this many pixels
THUMB = 128  # the drawn part for the pixel comparisons, longer side (aligned at half of it)
N_FEATURES = 600
RATIO = 0.8  # Lowe's ratio test
RANSAC_PX = 8.0  # reprojection error of an inlier, pixels at SIDE


@dataclass(frozen=True)
class Thresholds:
    """Chosen on the dev family (benchmarks/dup_bench.py); docs/BENCHMARKS.md, "Duplicates"."""

    min_inliers: int = 6
    min_coverage: float = 0.0  # of each drawn part, by the inliers' convex hull
    max_rotation: float = 45.0  # degrees; the pixels decide the rest
    min_aligned: float = 0.3  # grey-level correlation once aligned by the keypoints
    max_differing: float = 0.08  # share of the worst part of the aligned picture that may differ
    min_plain: float = 0.85  # the pixel rule: correlation once aligned by ECC alone
    max_plain_differing: float = 0.05  # the pixel rule: share of the worst part that may differ
    mirror_margin: float = 0.0  # the pixel rule: the copy beats the mirror image by this, unless symmetric
    # The pixel rule: the placement's stretch at most this (pixels.stretch). Chosen on the glyph family
    # (benchmarks/dup_stretch.py), which neither family of the other thresholds is.
    max_plain_stretch: float = 1.05
    # A keypoint placement correlating less than this before ECC refines it is refused unrefined (a speed
    # knob, at most min_aligned). The pixel rule is never gated: its start (the drawn parts centred on
    # each other) may be far off for a true copy, its refinement is what finds the placement.
    min_start: float = 0.3
    # The keypoint route refuses a mirror image too (the pixel rule's test, with the keypoint placement's
    # correlation): keypoints may place a mirror image turned, when the drawing is nearly symmetric.
    keypoint_mirror: bool = True


THRESHOLDS = Thresholds()


@dataclass
class Features:
    """What one image contributes to a comparison (cached per image content)."""

    points: np.ndarray  # float32 (n, 2), in the drawn part scaled to SIDE
    descriptors: np.ndarray  # uint8 (n, 32)
    size: tuple[int, int]  # (w, h) of the scaled drawn part
    thumb: np.ndarray  # uint8 grey drawn part on a square canvas, THUMB x THUMB
    native: int  # the drawn part's longer side in the image's own pixels

    def to_bytes(self) -> bytes:
        out = io.BytesIO()
        extra = np.array([*self.size, self.native])
        np.savez(out, points=self.points, descriptors=self.descriptors, extra=extra, thumb=self.thumb)
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Features:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            w, h, native = (int(v) for v in z["extra"])
            return cls(z["points"], z["descriptors"], (w, h), z["thumb"], native)


@dataclass
class Measure:
    """What the comparison found; decide() turns it into a verdict (the benchmark re-decides it)."""

    keypoints: int = 0  # the smaller keypoint count of the two
    small: int = 0  # the smaller native side of the two drawn parts
    inliers: int = 0
    coverage: float = 0.0  # the smaller of the two images' covered shares
    rotation: float = 0.0  # degrees
    aligned: float = 0.0  # correlation once aligned by the keypoints (refined by ECC)
    aligned_start: float = 0.0  # ... before the refinement
    differing: float = 1.0  # share of the aligned area where the two differ by more than DIFF_SIGMA
    plain: float | None = None  # the fallback: correlation once aligned by ECC
    plain_start: float = 0.0  # ... before it (the drawn parts centred on each other)
    mirrored: float | None = None  # ... with the mirror image
    symmetric: float | None = None  # ... of the first image with its own mirror image
    plain_differing: float = 1.0  # ... the share of the area that differs
    plain_stretch: float = 1.0  # ... how far its placement is from a rotation with one scale


@dataclass
class Verdict:
    same: bool
    method: str  # "keypoints" or "pixels"
    reason: str
    measure: Measure

    def to_json(self) -> dict[str, object]:
        m = self.measure
        return {
            "same": self.same,
            "method": self.method,
            "reason": self.reason,
            "inliers": m.inliers,
            "coverage": round(m.coverage, 3),
            "correlation": round(m.plain if self.method == "pixels" and m.plain is not None else m.aligned, 3),
        }


def extract(path: Path, *, max_pixels: int) -> Features:
    """The features of an image file; raises imaging.ImageRejected or OSError."""
    return of_image(imaging.load_rgb(path, max_pixels=max_pixels, min_side=2 * SIDE))


def of_image(img: Image.Image) -> Features:
    part = drawn_part(np.asarray(img.convert("L")))
    big = scaled(part, SIDE)
    orb = cv2.ORB_create(nfeatures=N_FEATURES, fastThreshold=10, edgeThreshold=15, patchSize=15)
    padded = cv2.copyMakeBorder(big, 16, 16, 16, 16, cv2.BORDER_REPLICATE)  # keypoints near the edge too
    kps, desc = orb.detectAndCompute(padded, None)
    points = np.array([(k.pt[0] - 16, k.pt[1] - 16) for k in kps], dtype=np.float32).reshape(-1, 2)
    if desc is None:
        desc = np.zeros((0, 32), np.uint8)
    return Features(points, desc, (big.shape[1], big.shape[0]), square(part, THUMB), max(part.shape))


def _hull_share(points: np.ndarray, size: tuple[int, int]) -> float:
    if len(points) < 3:
        return 0.0
    return float(cv2.contourArea(cv2.convexHull(points.astype(np.float32)))) / float(size[0] * size[1])


def _to_thumb(f: Features) -> np.ndarray:
    """SIDE coordinates -> the centred THUMB canvas, as a 3 x 3 matrix."""
    s = THUMB / max(f.size)
    return np.array([[s, 0, (THUMB - f.size[0] * s) / 2], [0, s, (THUMB - f.size[1] * s) / 2], [0, 0, 1]])


def _content(f: Features) -> np.ndarray:
    """Where the thumbnail shows the drawn part (not the canvas around it), as 0/1 float32."""
    s = THUMB / max(f.size)
    w, h = max(1, round(f.size[0] * s)), max(1, round(f.size[1] * s))
    mask = np.zeros((THUMB, THUMB), np.float32)
    y, x = (THUMB - h) // 2, (THUMB - w) // 2
    mask[y : y + h, x : x + w] = 1.0
    return mask


def _compare(
    a: Features, b: Features, warp: np.ndarray | None, native: int, mirror: bool = False, gate: float = -1.0
) -> tuple[float, float, float, np.ndarray]:
    """pixels.compare of the two thumbnails over their drawn parts; `mirror`: b's mirror image (its
    correlation alone is looked at)."""
    tb, mb = b.thumb, _content(b)
    if mirror:
        tb, mb = tb[:, ::-1].copy(), mb[:, ::-1].copy()
    return pixels.compare((a.thumb, _content(a)), (tb, mb), warp, native, gate, differing=not mirror)


def two_nearest(query: np.ndarray, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Hamming distances, indices) of each query descriptor's two nearest in `base`; index -1 where
    `base` has fewer than two. FAISS, not cv2.batchDistance or BFMatcher.knnMatch: OpenCV's wheel
    counts bits without the POPCNT instruction, 2.0 ms for 600 x 600 descriptors against 0.4-0.7 ms
    (the same distances; ties at the nearest fail the ratio test, so which index a tie names never
    matters)."""
    return faiss.knn_hamming(np.ascontiguousarray(query), np.ascontiguousarray(base), 2)


def _keypoints(a: Features, b: Features, m: Measure, th: Thresholds | None) -> None:
    """The placement by keypoints; the aligned comparison (its costly part) only when the placement has
    at least th.min_inliers inliers: with fewer, decide() never looks at it."""
    dist, idx = two_nearest(b.descriptors, a.descriptors)
    good = np.flatnonzero((idx[:, 1] >= 0) & (dist[:, 0] < RATIO * dist[:, 1]))
    if len(good) < 4:
        return
    src, dst = b.points[good].astype(np.float32), a.points[idx[good, 0]].astype(np.float32)
    t, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX)
    if t is None:
        return
    keep = mask.ravel().astype(bool)
    m.inliers = int(keep.sum())
    m.coverage = min(_hull_share(dst[keep], a.size), _hull_share(src[keep], b.size))
    m.rotation = abs(float(np.degrees(np.arctan2(t[1, 0], t[0, 0]))))
    if th is not None and m.inliers < th.min_inliers:
        return
    b_to_a = _to_thumb(a) @ np.vstack([t, [0, 0, 1]]) @ np.linalg.inv(_to_thumb(b))
    if abs(np.linalg.det(b_to_a)) < 1e-6:  # everything mapped onto a point: no placement
        return
    gate = th.min_start if th else -1.0
    m.aligned, m.differing, m.aligned_start, _ = _compare(a, b, np.linalg.inv(b_to_a)[:2], m.small, gate=gate)


def measure(a: Features, b: Features, th: Thresholds | None = None) -> Measure:
    """What decide() needs: the keypoint placement and, as the second opinion, the pixel alignment.
    Given thresholds, every comparison decide() would not look at is skipped (each costs an ECC
    alignment, most of a check): the keypoints' aligned one below min_inliers, the pixel route when the
    keypoints already accept, the mirror image when the plain alignment is too weak to accept; and
    ECC's refinement of a keypoint placement that starts below th.min_start."""
    m = Measure(keypoints=min(len(a.points), len(b.points)), small=min(a.native, b.native))
    if m.keypoints >= 4:
        _keypoints(a, b, m, th)
    if th is not None and _by_keypoints(m, th):
        if not th.keypoint_mirror:
            return m
        _mirror(a, b, m)
        if not _mirror_like(m, m.aligned, th):
            return m
    m.plain, m.plain_differing, m.plain_start, placement = _compare(a, b, None, m.small)
    m.plain_stretch = pixels.stretch(placement)
    if th is not None and m.plain < th.min_plain:
        return m
    _mirror(a, b, m)
    return m


def _mirror(a: Features, b: Features, m: Measure) -> None:
    if m.mirrored is None:
        m.mirrored = _compare(a, b, None, m.small, mirror=True)[0]  # never gated: it may only refuse
        m.symmetric = pixels.ncc(a.thumb, a.thumb[:, ::-1])


def _mirror_like(m: Measure, corr: float, th: Thresholds) -> bool:
    """b's mirror image agrees with a at least as well as b does (less the margin), and a is not
    symmetric (its mirror image is then no evidence)."""
    return (m.mirrored or 0.0) > corr - th.mirror_margin and (m.symmetric or 0.0) < th.min_plain


def _by_keypoints(m: Measure, th: Thresholds) -> bool:
    return (
        m.inliers >= th.min_inliers
        and m.rotation <= th.max_rotation
        and m.coverage >= th.min_coverage
        and m.aligned >= th.min_aligned
        and m.differing <= th.max_differing
    )


def decide(m: Measure, th: Thresholds = THRESHOLDS) -> Verdict:
    """The same picture when the keypoints place one image on the other and the aligned pictures agree,
    or (images too plain or small for keypoints, or a placement the keypoints miss) when the pixels
    alone align and agree, and not better as a mirror image."""
    placed = _by_keypoints(m, th)
    if placed and not (th.keypoint_mirror and _mirror_like(m, m.aligned, th)):
        return Verdict(True, "keypoints", f"{m.inliers} keypoints agree, covering {m.coverage:.0%}", m)
    plain = m.plain or 0.0
    mirror = _mirror_like(m, plain, th)
    agree = plain >= th.min_plain and m.plain_differing <= th.max_plain_differing and not mirror
    if agree and m.plain_stretch <= th.max_plain_stretch:
        return Verdict(True, "pixels", f"the aligned pictures agree (correlation {plain:.2f})", m)
    if agree:
        return Verdict(False, "pixels", f"they agree only when one is stretched ({m.plain_stretch:.2f}x)", m)
    if placed:
        return Verdict(False, "keypoints", "a mirror image, turned", m)
    if m.inliers < th.min_inliers:
        return Verdict(False, "keypoints", f"{m.inliers} keypoints agree on one placement", m)
    if mirror and plain >= th.min_plain:
        return Verdict(False, "pixels", "a mirror image", m)
    worst = max(m.differing, 0.0)
    return Verdict(False, "keypoints", f"aligned, {worst:.0%} of a part of the picture differs", m)


def verify(a: Features, b: Features, th: Thresholds = THRESHOLDS) -> Verdict:
    return decide(measure(a, b, th), th)
