"""A dataset with duplicates and hard negatives made by construction, for benchmarks/dup_bench.py."""

from __future__ import annotations

import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cvtools import imaging
from cvtools.dataset import Incoming
from cvtools.schemas import ImageRef, ImageStatus
from cvtools.services import Services
from cvtools.settings import Settings
from cvtools.vision.anomalies import duplicates, geometry
from cvtools.vision.embeddings import CANONICAL, Item, cached_views

from . import edits
from .common import build
from .families import MAX_PIXELS, Family, openclipart, wesnoth


@dataclass
class World:
    sv: Services
    refs: list[ImageRef] = field(default_factory=list)
    vecs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    drawn: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # the drawn-part view
    truth: dict[frozenset[str], bool] = field(default_factory=dict)  # constructed pairs: copy True, else False
    origin: dict[str, str] = field(default_factory=dict)  # image id -> the original it was made from
    kind: dict[str, str] = field(default_factory=dict)  # original, copy, mirror, canvas
    edits: dict[str, list[str]] = field(default_factory=dict)  # copy id -> the edits made

    def label(self, a: str, b: str) -> bool | None:
        """True: a copy pair; False: a constructed negative or unrelated; None: the truth depends on the
        data itself (two of its images, or things made from two of them: the data may hold duplicates
        of its own: judged by eye, never counted)."""
        if frozenset((a, b)) in self.truth:
            return self.truth[frozenset((a, b))]
        ka, kb = self.kind[a], self.kind[b]
        if "canvas" in (ka, kb):
            return False
        oa, ob = self.origin.get(a, a), self.origin.get(b, b)
        if oa == ob:  # made from one original: a copy pair unless one is the mirror image
            return "mirror" not in (ka, kb)
        if (ka == "mirror") != (kb == "mirror"):  # one mirrored, one not: at best a mirror image
            return False
        return None


def add_file(sv: Services, group: str, name: str, data: bytes) -> ImageRef | None:
    if group not in sv.dataset.group_names():
        sv.dataset.create_group(group)
    tmp = sv.dataset.new_tmp_path()
    tmp.write_bytes(data)
    added = sv.dataset.add_images(group, [Incoming(name, tmp)]).added
    return added[0] if added else None


def build_world(family: Family, *, originals: int, copies: int, mirrors: int, canvases: int, seed: int) -> World:
    _, sv = build(Path(tempfile.mkdtemp(prefix=f"cvtools-dup-{family.name}-")))
    w = World(sv)
    rng = random.Random(seed)
    pool = [(c.replace("/", "-"), p) for c, files in family.categories.items() for p in files]
    rng.shuffle(pool)
    groups = sorted({g for g, _ in pool})
    sources = _canvas_sources(pool[: 8 * canvases], canvases)
    used = {p for _, p in sources}
    chosen: list[tuple[ImageRef, object]] = []
    for group, path in [x for x in pool if x[1] not in used]:
        if len(chosen) == originals:
            break
        ref = add_file(sv, group, path.name, path.read_bytes())
        if ref is not None:
            w.kind[ref.id] = "original"
            chosen.append((ref, imaging.load_rgb(path, max_pixels=MAX_PIXELS)))
    _copies(w, chosen[:copies], groups, rng)
    _mirrors(w, chosen[copies:], mirrors)
    _canvases(w, sources, rng)
    return w


def _canvas_sources(pool: list, canvases: int) -> list:
    """Drawings for the canvases: each with enough ink and clearly unlike every other one chosen (every
    two canvases share the template, so every two are a negative: truth stays by construction even
    where the data holds look-alikes of its own)."""
    out: list = []
    kept: list = []
    for group, path in pool:
        img = imaging.load_rgb(path, max_pixels=MAX_PIXELS)
        if edits.inked(img) and all(edits.unlike(img, other) for other in kept):
            out.append((group, path))
            kept.append(img)
            if len(out) == 2 * canvases:
                break
    return out


def _copies(w: World, chosen: list, groups: list[str], rng: random.Random) -> None:
    for n, (ref, img) in enumerate(chosen):
        data, made = edits.copy_of(img, rng)
        group = ref.group if n % 2 == 0 else rng.choice([g for g in groups if g != ref.group])  # half elsewhere
        copy = add_file(w.sv, group, f"copy-{ref.filename}", data)
        if copy is not None:
            w.truth[frozenset((ref.id, copy.id))] = True
            w.origin[copy.id], w.kind[copy.id], w.edits[copy.id] = ref.id, "copy", made


def _mirrors(w: World, chosen: list, n: int) -> None:
    for ref, img in [(r, i) for r, i in chosen if not edits.symmetric(i)][:n]:
        m = add_file(w.sv, ref.group, f"mirror-{ref.filename}", edits.mirror(img))
        if m is not None:
            w.truth[frozenset((ref.id, m.id))] = False
            w.origin[m.id], w.kind[m.id] = ref.id, "mirror"


def _canvases(w: World, sources: list, rng: random.Random) -> None:
    for k in range(0, len(sources) - 1, 2):
        pair = []
        for _, path in sources[k : k + 2]:
            ref = add_file(
                w.sv,
                "certificates",
                f"canvas-{path.name}",
                edits.on_canvas(imaging.load_rgb(path, max_pixels=MAX_PIXELS), k),
            )
            if ref is not None:
                w.kind[ref.id] = "canvas"
                pair.append(ref.id)
        if len(pair) == 2:
            w.truth[frozenset(pair)] = False


def embed(w: World) -> float:
    """The embeddings of every image, as the duplicate pass uses them (the backbone's pooled features of
    the plain view and of the drawn part); returns the seconds."""
    t0 = time.perf_counter()
    refs = w.sv.dataset.with_status(ImageStatus.GROUP)
    s = w.sv.settings
    items = [Item(r.sha256, r.path) for r in refs]
    kept, (vecs, drawn), _ = cached_views(
        w.sv.store,
        w.sv.models.backbone(),
        items,
        [0, CANONICAL],
        batch_size=s.batch_size,
        max_pixels=s.max_image_pixels,
        job=None,
    )
    w.refs, w.vecs, w.drawn = [refs[k] for k in kept], vecs, drawn
    return time.perf_counter() - t0


def measures(
    w: World, max_distance: float, drawn_distance: float
) -> tuple[list[duplicates.Candidate], list[geometry.Measure | None], dict[str, float]]:
    """Every candidate within max_distance (drawn part: drawn_distance) and its full measure (None:
    identical bytes); with timings."""
    cands = duplicates.candidates(
        w.refs,
        w.vecs,
        max_distance=max_distance,
        phash_bits=w.sv.settings.phash_max_bits,
        drawn=w.drawn,
        drawn_distance=drawn_distance,
    )
    feats = duplicates.Features(None, MAX_PIXELS)
    t0 = time.perf_counter()
    which = {k for c in cands for k in (c.i, c.j)}
    loaded = feats.load(w.refs, which)
    t_feat = (time.perf_counter() - t0) / max(1, len(which))
    t0 = time.perf_counter()
    out = [None if "identical" in c.layers else geometry.measure(loaded[c.i], loaded[c.j]) for c in cands]
    t_measure = (time.perf_counter() - t0) / max(1, len(cands))
    t0 = time.perf_counter()
    for c in cands:  # the app's check: what its thresholds do not need is skipped
        if "identical" not in c.layers:
            geometry.verify(loaded[c.i], loaded[c.j])
    t_verify = (time.perf_counter() - t0) / max(1, len(cands))
    return (
        cands,
        out,
        {
            "keypoints_ms_per_image_2_threads": round(1000 * t_feat, 2),
            "full_measure_ms_per_pair_1_thread": round(1000 * t_measure, 2),
            "verification_ms_per_pair_1_thread": round(1000 * t_verify, 2),
        },
    )


def real_files() -> list[tuple[str, Path]]:
    """(group, path) of every image of the openclipart and Wesnoth families, a group per category."""
    return [
        (f"{f.name}-{c.replace('/', '-')}", p)
        for f in (openclipart(), wesnoth())
        for c, ps in f.categories.items()
        for p in ps
    ]


def big_pass(total: int, real: int = 3000, seed: int = 0) -> dict:
    """The duplicate pass at scale, embeddings given: `real` files drawn from both families (embedded
    once, not timed) plus random directions (no files: the rest of a large dataset, images without a
    look-alike), `total` in all. Timed cold (no keypoints cached), including the check of every
    candidate; and what 50,000 images like the real ones would cost at the measured rates. With the
    drawn-part layer and, in the same process, without it (the baseline)."""
    _, sv = build(Path(tempfile.mkdtemp(prefix="cvtools-dup-big-")))
    w = World(sv)
    files = real_files()
    random.Random(seed).shuffle(files)
    for group, path in files[:real]:
        add_file(sv, group, path.name, path.read_bytes())
    t_embed = embed(w)
    n_real = len(w.refs)
    rng = np.random.default_rng(seed)
    fake = rng.standard_normal((2, total - n_real, w.vecs.shape[1])).astype(np.float32)
    refs = w.refs + [_fake_ref(k) for k in range(total - n_real)]
    vecs, drawn = np.concatenate([w.vecs, fake[0]]), np.concatenate([w.drawn, fake[1]])
    out = {"images": total, "real_images": n_real, "embedding_seconds_not_counted": round(t_embed, 1)}
    # The drawn-part layer first, then the baseline without it: the second pass reads warmer files.
    out["with_the_drawn_part"] = timed_pass(sv.settings, refs, vecs, drawn, n_real)
    out["without_the_drawn_part"] = timed_pass(sv.settings, refs, vecs, None, n_real)
    return out


def timed_pass(s: Settings, refs: list[ImageRef], vecs: np.ndarray, drawn: np.ndarray | None, n_real: int) -> dict:
    """One duplicate pass, cold keypoints, timed by stage."""
    t0 = time.perf_counter()
    cands = duplicates.candidates(
        refs, vecs, max_distance=s.max_equal_distance, phash_bits=s.phash_max_bits, drawn=drawn
    )
    t_cands = time.perf_counter() - t0
    store = duplicates.FeatureStore(Path(tempfile.mkdtemp(prefix="cvtools-dup-feat-")) / "features.sqlite")
    checked = {k for c in cands if "identical" not in c.layers for k in (c.i, c.j)}
    t0 = time.perf_counter()
    duplicates.Features(store, MAX_PIXELS).load(refs, checked)  # cold: decoded and computed, then stored
    t_keypoints = time.perf_counter() - t0
    t0 = time.perf_counter()
    pairs = duplicates.judge(refs, cands, duplicates.Features(store, MAX_PIXELS))  # reads them back
    t_judge = time.perf_counter() - t0
    store.close()
    per_image = len(cands) / max(1, n_real)
    per_pair = (t_keypoints + t_judge) / max(1, len(cands))
    return {
        "candidate_search_seconds": round(t_cands, 1),
        "keypoints_seconds_cold": round(t_keypoints, 1),
        "verification_seconds": round(t_judge, 1),
        "pass_seconds": round(t_cands + t_keypoints + t_judge, 1),
        "candidates": len(cands),
        "candidates_per_real_image": round(per_image, 2),
        "images_in_candidates": len(checked),
        "keypoints_ms_per_image": round(1000 * t_keypoints / max(1, len(checked)), 2),
        "verification_ms_per_candidate": round(1000 * t_judge / max(1, len(cands)), 2),
        "pairs_listed": len(pairs),
        "seconds_per_candidate_incl_keypoints": round(per_pair, 4),
        "estimate_50000_real_images_seconds": round(t_cands + 50000 * per_image * per_pair, 0),
    }


def _fake_ref(k: int) -> ImageRef:
    path = Path(f"/nonexistent/{k}.png")
    return ImageRef(
        f"fake{k}", "fake", ImageStatus.GROUP, f"{k}.png", ".png", f"fake{k}", None, None, 1, 1, 1, 0.0, path
    )
