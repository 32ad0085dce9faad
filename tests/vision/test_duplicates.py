"""Duplicates judged by local-feature geometry: copies made the way people make them are accepted,
mirror images and different drawings on one template are not; features are cached per image content;
an unreadable file is skipped with its reason, never a failed job."""

from __future__ import annotations

import dataclasses
import io
import random
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

from cvtools.schemas import ImageRef, ImageStatus
from cvtools.settings import Settings
from cvtools.vision import drawn
from cvtools.vision.anomalies import duplicates, geometry, pairs, pixels
from cvtools.vision.embeddings import CANONICAL
from cvtools.vision.vectors import power_unit, unit
from cvtools.web import create_app

from ..conftest import wait_jobs
from ..helpers import TestClient, class_image


def drawing(seed: int, size: tuple[int, int] = (420, 320)) -> Image.Image:
    """An asymmetric drawing: shapes, lines and text at seeded places on white."""
    rnd = random.Random(seed)
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    for _ in range(14):
        x, y = rnd.randint(10, size[0] - 80), rnd.randint(10, size[1] - 80)
        w, h = rnd.randint(15, 70), rnd.randint(15, 70)
        colour = tuple(rnd.randint(0, 200) for _ in range(3))
        kind = rnd.choice(["rect", "ellipse", "line", "poly"])
        if kind == "rect":
            d.rectangle((x, y, x + w, y + h), outline=colour, width=3)
        elif kind == "ellipse":
            d.ellipse((x, y, x + w, y + h), fill=colour)
        elif kind == "line":
            d.line((x, y, x + w, y + h), fill=colour, width=4)
        else:
            d.polygon([(x, y), (x + w, y + h // 3), (x + w // 3, y + h)], fill=colour)
    d.text((rnd.randint(10, 200), rnd.randint(10, 250)), f"label {seed}", fill="black")
    return img


def jpeg(img: Image.Image, quality: int = 60) -> Image.Image:
    out = io.BytesIO()
    img.convert("RGB").save(out, "JPEG", quality=quality)
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def verdict(a: Image.Image, b: Image.Image) -> geometry.Verdict:
    return geometry.verify(geometry.of_image(a), geometry.of_image(b))


EDITS = {
    "crop, rescale, JPEG": lambda im: jpeg(im.crop((20, 12, 400, 300)).resize((228, 173)), 55),
    "border and WebP-like recompression": lambda im: jpeg(ImageOps.expand(im, border=30, fill="black"), 40),
    "rotation by 7 degrees": lambda im: im.rotate(7, expand=True, fillcolor="white", resample=Image.Resampling.BICUBIC),
    "grey and darker": lambda im: ImageEnhance.Brightness(im.convert("L").convert("RGB")).enhance(0.85),
    "text overlay": lambda im: _with_text(im),
}


def _with_text(im: Image.Image) -> Image.Image:
    im = im.copy()
    ImageDraw.Draw(im).text((300, 290), "(c) 2026", fill="red")
    return im


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_edited_copies_are_the_same_picture(edit: str) -> None:
    for seed in (1, 2):
        original = drawing(seed)
        v = verdict(original, EDITS[edit](original))
        assert v.same, (edit, seed, v.reason, v.measure)


def test_mirror_images_and_shared_templates_are_not() -> None:
    for seed in (3, 4):
        original = drawing(seed)
        v = verdict(original, ImageOps.mirror(original))
        assert not v.same, (seed, v.reason)
    template = Image.new("RGB", (800, 600), (250, 248, 240))
    d = ImageDraw.Draw(template)
    d.rectangle((20, 20, 779, 579), outline=(40, 60, 120), width=8)
    d.rectangle((40, 40, 759, 110), fill=(40, 60, 120))
    cards = []
    for seed in (5, 6):
        card = template.copy()
        card.paste(drawing(seed, (380, 300)), (210, 180))
        cards.append(card)
    v = verdict(*cards)
    assert not v.same and "differs" in v.reason, (v.reason, v.measure)
    assert not verdict(drawing(7), drawing(8)).same


def test_plain_images_use_the_pixel_rule() -> None:
    plain = Image.new("RGB", (200, 200), "white")
    ImageDraw.Draw(plain).ellipse((40, 60, 160, 140), fill=(30, 90, 200))
    copy = jpeg(plain.resize((120, 120)), 70)
    v = verdict(plain, copy)
    assert v.same and v.method == "pixels", (v.reason, v.measure)
    other = Image.new("RGB", (200, 200), "white")
    ImageDraw.Draw(other).rectangle((20, 20, 90, 180), fill=(200, 40, 40))
    assert not verdict(plain, other).same


def plain_shape(kind: str, w: int, h: int) -> Image.Image:
    img = Image.new("RGB", (200, 200), "white")
    x, y = (200 - w) // 2, (200 - h) // 2
    if kind == "ellipse":
        ImageDraw.Draw(img).ellipse((x, y, x + w, y + h), fill=(30, 90, 200))
    else:
        ImageDraw.Draw(img).polygon([(x, y + h), (x + w // 2, y), (x + w, y + h)], fill=(30, 90, 200))
    return img


@pytest.mark.parametrize("kind", ["ellipse", "triangle"])
def test_a_shape_stretched_unevenly_is_not_a_copy(kind: str) -> None:
    """The pixel rule's affine alignment bends one plain shape onto another (a circle onto an ellipse
    correlates 0.99 once stretched; on glyphs, a bold 4 onto an A). Copies are cropped, rescaled and
    turned, not stretched unevenly: a placement stretched beyond max_plain_stretch is refused, and the
    reason says so; an evenly rescaled copy is still listed."""
    shape = plain_shape(kind, 120, 120)
    v = verdict(shape, plain_shape(kind, 160, 100))
    assert not v.same and "stretched" in v.reason, (v.reason, v.measure)
    assert v.measure.plain is not None and v.measure.plain >= geometry.THRESHOLDS.min_plain
    assert v.measure.plain_stretch > geometry.THRESHOLDS.max_plain_stretch
    copy = verdict(shape, jpeg(shape.resize((90, 90)), 70))
    assert copy.same and copy.method == "pixels", (copy.reason, copy.measure)


def test_stretch_of_a_placement() -> None:
    turn = cv2.getRotationMatrix2D((64, 64), 8, 0.6)  # rotation, one scale and a shift
    assert pixels.stretch(turn) == pytest.approx(1.0)
    assert pixels.stretch(np.array([[1.5, 0, 3], [0, 1.0, -2]])) == pytest.approx(1.5)
    assert pixels.stretch(np.array([[1.0, 0.4, 0], [0, 1.0, 0]])) > 1.4  # a shear


def test_skipped_comparisons_never_change_a_verdict() -> None:
    """verify() skips what decide() would not look at: without the gate (min_start), its verdicts are
    those of the full measure under the same thresholds."""
    originals = [drawing(seed) for seed in (11, 12, 13)]
    images = originals + [edit(originals[0]) for edit in EDITS.values()] + [ImageOps.mirror(originals[1])]
    feats = [geometry.of_image(im) for im in images]
    ungated = dataclasses.replace(geometry.THRESHOLDS, min_start=-1.0)
    for a in feats[:3]:
        for b in feats:
            fast, full = geometry.verify(a, b, ungated), geometry.decide(geometry.measure(a, b), ungated)
            assert (fast.same, fast.method, fast.reason) == (full.same, full.method, full.reason)
            # The gate may only refuse without refining, never accept what the full check refuses.
            assert full.same or not geometry.verify(a, b, dataclasses.replace(ungated, min_start=0.5)).same


def test_two_nearest_descriptors_are_opencvs() -> None:
    """FAISS counts the bits (faster than OpenCV's wheel): the same two nearest distances as OpenCV's
    brute-force matcher, the same nearest wherever it is unique, and -1 past the end of a short list."""
    a, b = (geometry.of_image(jpeg(drawing(seed), 50)) for seed in (21, 22))
    for query, base in ((a.descriptors, b.descriptors), (b.descriptors, a.descriptors), (a.descriptors, a.descriptors)):
        got_d, got_i = geometry.two_nearest(query, base)
        want_d, want_i = cv2.batchDistance(query, base, cv2.CV_32S, normType=cv2.NORM_HAMMING, K=2)
        assert len(query) > 200 and np.array_equal(got_d, want_d)
        unique = want_d[:, 0] < want_d[:, 1]
        assert unique.mean() > 0.5 and np.array_equal(got_i[unique, 0], want_i[unique, 0])
    _, short = geometry.two_nearest(a.descriptors, a.descriptors[:1])
    assert (short[:, 0] == 0).all() and (short[:, 1] == -1).all()


def test_part_counts_are_those_of_the_general_sums() -> None:
    """Thumbnails are counted by a reshape; any other size by reduceat: both give each part's count."""
    rng = np.random.default_rng(5)
    for shape in ((128, 128), (130, 126), (64, 64)):
        mask = rng.random(shape) < 0.3
        h, w = shape
        ys, xs = [y * h // pixels.BLOCKS for y in range(pixels.BLOCKS)], [x * w // pixels.BLOCKS for x in range(4)]
        rows, cols = list(zip(ys, [*ys[1:], h], strict=True)), list(zip(xs, [*xs[1:], w], strict=True))
        want = [[mask[y0:y1, x0:x1].sum() for x0, x1 in cols] for y0, y1 in rows]
        assert pixels._part_sums(mask, ys, xs).tolist() == want


@pytest.mark.parametrize(("block", "tile"), [(1024, 8192), (256, 384), (300, 256)])
def test_blocked_neighbour_search_is_the_brute_force_one(block: int, tile: int, monkeypatch) -> None:
    """Tiles on and above the diagonal only, pruned to k per row when memory asks: the same pairs as
    every row's k nearest within the distance, over band and tile boundaries (also where a band's
    first tile is narrower than the band) and with ties."""
    monkeypatch.setattr(pairs, "BLOCK", block)
    monkeypatch.setattr(pairs, "TILE", tile)
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(40, 64)).astype(np.float32)
    x = np.repeat(centres, 60, axis=0) + 0.6 * rng.normal(size=(2400, 64)).astype(np.float32)
    x[100] = x[101]  # an exact tie
    got = {(i, j): d for i, j, d in pairs.embedding_pairs(x, 0.3, neighbours=5)}
    want, sims = brute_force_pairs(x, 0.3, 5)
    assert len(want) > 2000 and set(got) == want
    assert all(abs(d - (1.0 - sims[i, j])) < 1e-5 for (i, j), d in got.items())


def brute_force_pairs(x: np.ndarray, max_distance: float, k: int) -> tuple[set[tuple[int, int]], np.ndarray]:
    """Every row's k nearest within max_distance, from the whole similarity matrix (also returned)."""
    u = unit(x)
    sims = u @ u.T
    np.fill_diagonal(sims, -np.inf)
    want = set()
    for i in range(len(x)):
        near = [j for j in np.argsort(-sims[i], kind="stable")[:k] if sims[i, j] >= 1.0 - max_distance]
        want |= {(min(i, j), max(i, j)) for j in near}
    return want, sims


def test_projected_search_of_a_large_set_is_the_brute_force_one() -> None:
    """Above pairs.PROJECT_ABOVE images the neighbours are found in a projection first (here above 4,000).
    Features that share a large mean and are never negative (pooled activations) once lost most of their
    pairs there (the projection was centred: 589 of these 4,503); now every image's 5 nearest are the
    brute-force ones."""
    rng = np.random.default_rng(4)
    centres = rng.normal(size=(1500, 512)).astype(np.float32)
    x = np.maximum(1.5 + np.repeat(centres, 3, axis=0) + 0.7 * rng.normal(size=(4500, 512)), 0).astype(np.float32)
    got = {(i, j) for i, j, _ in pairs.embedding_pairs(x, 0.25, neighbours=5, project_above=4000)}
    want, _ = brute_force_pairs(x, 0.25, 5)
    assert len(want) > 4000 and got == want


def test_features_are_cached_per_content(tmp_path: Path) -> None:
    store = duplicates.FeatureStore(tmp_path / "features.sqlite")
    f = geometry.of_image(drawing(9))
    store.put("sha-a", f)
    again = store.get("sha-a")
    assert again is not None and np.array_equal(again.descriptors, f.descriptors) and again.size == f.size
    assert store.get("sha-b") is None  # another content (a changed file) is computed anew
    store.close()


def test_duplicate_pass_in_the_app_with_an_unreadable_file(tiny_settings: Settings, dataset_dir: Path) -> None:
    """Copies listed with why (layers, method, inliers or correlation); a file that vanished is skipped
    with its reason, and the job is done, not failed."""
    with TestClient(create_app(tiny_settings)) as c:
        wait_jobs(c)
        for g in ("a", "b"):
            c.post("/api/groups", json={"name": g})
        originals = [drawing(10 + k) for k in range(4)]
        files = [("files", (f"d{k}.png", _png(im), "image/png")) for k, im in enumerate(originals)]
        files += [
            ("files", ("r.png", class_image("red", 1), "image/png")),
            ("files", ("g.png", class_image("green", 1), "image/png")),
        ]
        ids = [x["id"] for x in c.post("/api/groups/a/images", files=files).json()["added"]]
        copy = EDITS["crop, rescale, JPEG"](originals[0])
        copy_id = c.post("/api/groups/b/images", files=[("files", ("copy.jpg", _png(copy), "image/png"))]).json()[
            "added"
        ][0]["id"]
        c.post("/api/groups/b/images", files=[("files", ("x.png", class_image("blue", 2), "image/png"))])
        run = c.post("/api/train", json={"mode": "head", "params": {"epochs": 2}}).json()["run"]
        wait_jobs(c, 120)
        assert c.post("/api/models/promote", json={"run": run, "build_index": False}).status_code == 200
        Path(c.get(f"/api/images/{ids[3]}").json()["path"]).unlink()  # vanished behind the app's back
        job = c.post("/api/anomalies?type=duplicates").json()["job"]
        wait_jobs(c, 120)
        done = c.get(f"/api/jobs/{job}").json()
        assert done["state"] == "done", done
        result = c.get("/api/anomalies?type=duplicates").json()
        pair = next(p for p in result["pairs"] if {p["a"]["id"], p["b"]["id"]} == {ids[0], copy_id})
        assert pair["cross_group"] and pair["verdict"]["same"] and pair["verdict"]["method"] in ("keypoints", "pixels")
        assert "layers" in pair["verdict"] and pair["layers"]
        assert all({p["a"]["id"], p["b"]["id"]} != {ids[1], ids[2]} for p in result["pairs"])
        # Both views the search compares are cached for every readable image (a second pass embeds nothing).
        sv = c.app.state.services  # type: ignore[attr-defined]
        shas = [c.get(f"/api/images/{i}").json()["sha256"] for i in (*ids[:3], copy_id)]
        assert not sv.store.missing(sv.models.production().backbone.fingerprint, shas, [0, CANONICAL])


def _png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, "PNG")
    return out.getvalue()


def test_candidates_compare_power_normalised_embeddings() -> None:
    """Pictures of one style (a shared base) whose copies share an edit (a few large feature values, like
    a grey or framed look): by plain cosine a copy's nearest are other copies and an original's other
    originals; power-normalised, most copies and originals find each other among their 10 nearest."""
    rng = np.random.default_rng(1)
    n = 30
    orig = np.abs(rng.normal(size=64)) + 0.7 * np.abs(rng.normal(size=(n, 64))) * (rng.random((n, 64)) < 0.3)
    style = np.zeros(64)
    style[:4] = 2.5
    x = np.concatenate([orig, orig + style + 0.05 * np.abs(rng.normal(size=(n, 64)))]).astype(np.float32)
    refs = [
        ImageRef(f"i{k}", "g", ImageStatus.GROUP, f"{k}.png", ".png", f"sha{k}", None, None, 1, 1, 1, 0.0, Path("/x"))
        for k in range(2 * n)
    ]
    found = {(c.i, c.j): c for c in duplicates.candidates(refs, x, max_distance=0.45, phash_bits=6)}
    proposed = sum((i, n + i) in found for i in range(n))
    plain = {(i, j) for i, j, _ in pairs.embedding_pairs(x, 0.45)}
    assert proposed >= 25 and sum((i, n + i) in plain for i in range(n)) <= 15
    p = power_unit(x)
    assert all(abs(c.distance - (1.0 - float(p[c.i] @ p[c.j]))) < 1e-5 for c in found.values())


def test_the_drawn_part_view_ignores_margin_frame_and_colour() -> None:
    """The drawn-part view of a copy that was greyed, given a wide margin (and a frame) and saved as a
    JPEG is nearly that of its original; another drawing's is not. (A frame saved below quality ~75
    rings into the margin, and the drawn part is then the whole inside of the frame.)"""
    original = drawing(21)
    margin = ImageOps.expand(original.convert("L"), border=90, fill=255)
    copies = [jpeg(margin, 60), jpeg(ImageOps.expand(margin, border=6, fill=0), 85)]
    views = [np.asarray(drawn.canonical(im, 224).convert("L")) for im in (original, *copies, drawing(22))]
    assert all(v.shape == (224, 224) for v in views)
    assert min(pixels.ncc(views[0], v) for v in views[1:3]) > 0.9 and pixels.ncc(views[0], views[3]) < 0.5


def test_the_drawn_part_layer_proposes_what_the_centre_crop_misses() -> None:
    """Pairs far apart by the centre crop's embedding but close by the drawn part's are proposed, named by
    their layer, with the centre crop's distance; without that view they are not."""
    rng = np.random.default_rng(2)
    n = 20
    plain = rng.normal(size=(2 * n, 64)).astype(np.float32)
    base = rng.normal(size=(n, 64))
    drawn = np.concatenate([base, base + 0.05 * rng.normal(size=(n, 64))]).astype(np.float32)
    refs = [
        ImageRef(f"i{k}", "g", ImageStatus.GROUP, f"{k}.png", ".png", f"sha{k}", None, None, 1, 1, 1, 0.0, Path("/x"))
        for k in range(2 * n)
    ]
    without = {(c.i, c.j) for c in duplicates.candidates(refs, plain, max_distance=0.35, phash_bits=6)}
    found = {(c.i, c.j): c for c in duplicates.candidates(refs, plain, max_distance=0.35, phash_bits=6, drawn=drawn)}
    assert not any((i, n + i) in without for i in range(n))
    assert all((i, n + i) in found and found[(i, n + i)].layers == ["drawn part"] for i in range(n))
    p = power_unit(plain)
    assert all(abs(found[(i, n + i)].distance - (1.0 - float(p[i] @ p[n + i]))) < 1e-5 for i in range(n))


def _lines(seed: int) -> np.ndarray:
    """A line drawing: a few dark strokes on white, blurred a little as a rescale would."""
    rng = np.random.default_rng(seed)
    img = np.full((128, 128), 255, np.uint8)
    for _ in range(12):
        p, q = rng.integers(8, 120, 2), rng.integers(8, 120, 2)
        cv2.line(img, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), 0, 2)
    return cv2.GaussianBlur(img.astype(np.float32), (0, 0), 0.8)


def test_a_placement_a_pixel_off_does_not_differ_but_another_drawing_does(monkeypatch):
    a, inside = _lines(1), np.ones((128, 128), bool)
    shifted = np.roll(a, 1, axis=1)
    other = a.copy()
    other[:32, :32] = _lines(2)[:32, :32]  # one part drawn differently, as on a shared template
    assert pixels._worst_part(a, shifted, inside) == 0.0
    assert pixels._worst_part(a, other, inside) > geometry.THRESHOLDS.max_differing
    monkeypatch.setattr(pixels, "TOLERANCE", 0)  # without the tolerance the shifted strokes differ
    assert pixels._worst_part(a, shifted, inside) > 0.05


def test_a_mirror_image_placed_turned_by_keypoints_is_refused():
    placed = geometry.Measure(keypoints=400, small=200, inliers=60, coverage=0.5, rotation=13.0, aligned=0.9)
    placed.aligned_start, placed.differing, placed.plain, placed.mirrored, placed.symmetric = 0.9, 0.0, 0.1, 0.99, 0.3
    verdict = geometry.decide(placed)
    assert not verdict.same and verdict.reason == "a mirror image, turned"
    assert geometry.decide(placed, dataclasses.replace(geometry.THRESHOLDS, keypoint_mirror=False)).same
    placed.symmetric = 0.95  # a symmetric drawing's mirror image is no evidence against it
    assert geometry.decide(placed).same
