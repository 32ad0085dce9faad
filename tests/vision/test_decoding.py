"""Decoding for the model: reduced-size decoding, orientation, transparency, the crop-box resize,
normalisation, one decode per file and the decoding threads' priority."""

from __future__ import annotations

import io
import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cvtools import imaging
from cvtools.vision import embeddings
from cvtools.vision.embeddings import Item, Pipeline
from cvtools.vision.preprocess import RESAMPLE, Preprocess

PRE = Preprocess()
BIG = 100_000_000


def drawing(w: int, h: int, mode: str = "RGB") -> Image.Image:
    """Smooth colour gradients and a dark disc: resampling differences stay small but visible."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r, g = 255 * xx / w, 255 * yy / h
    b = 128 + 100 * np.sin(xx / 37) * np.cos(yy / 23)
    disc = (xx - w / 2) ** 2 + (yy - h / 2) ** 2 < (min(w, h) / 4) ** 2
    rgb = np.stack([r, g, b], -1)
    rgb[disc] = (20, 30, 40)
    img = Image.fromarray(rgb.clip(0, 255).astype(np.uint8))
    return img if mode == "RGB" else img.convert(mode)


def model_input(img: Image.Image) -> np.ndarray:
    return PRE.array(PRE.center(img))


def reference_input(img: Image.Image) -> np.ndarray:
    """The textbook way: resize the whole image, crop the centre, then normalise in float64."""
    side = PRE.resize_side()
    w, h = img.size
    s = side / min(w, h)
    big = img.resize((max(PRE.size, round(w * s)), max(PRE.size, round(h * s))), RESAMPLE)
    left, top = (big.width - PRE.size) // 2, (big.height - PRE.size) // 2
    crop = np.asarray(big.crop((left, top, left + PRE.size, top + PRE.size)), dtype=np.float64) / 255
    return ((crop - PRE.mean) / PRE.std).transpose(2, 0, 1)


def save(img: Image.Image, path: Path, fmt: str, **kw: object) -> Path:
    img.save(path, fmt, **kw)
    return path


def grey_levels(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two normalised inputs, in 0-255 grey levels."""
    return float((np.abs(a - b) * np.asarray(PRE.std).reshape(3, 1, 1) * 255).mean())


def test_center_crop_box_matches_resize_then_crop() -> None:
    for w, h in ((640, 480), (300, 1200), (224, 224), (100, 80)):
        img = drawing(w, h)
        got, want = model_input(img), reference_input(img)
        assert got.shape == (3, 224, 224) and got.dtype == np.float32
        assert grey_levels(got, want) < 1.5, (w, h)


def test_array_is_the_normalisation_formula() -> None:
    img = drawing(224, 224)
    want = ((np.asarray(img, dtype=np.float64) / 255 - PRE.mean) / PRE.std).transpose(2, 0, 1)
    assert np.abs(PRE.array(img) - want).max() < 1e-5


def test_big_jpeg_decodes_at_reduced_size_with_the_same_model_input(tmp_path: Path) -> None:
    img = drawing(2400, 1800)
    path = save(img, tmp_path / "big.jpg", "JPEG", quality=95)
    small = imaging.load_rgb(path, max_pixels=BIG, min_side=PRE.resize_side())
    assert PRE.resize_side() <= min(small.size) < 2 * PRE.resize_side(), small.size  # draft: 1/4 scale
    full = imaging.load_rgb(path, max_pixels=BIG)
    assert full.size == (2400, 1800)
    assert grey_levels(model_input(small), model_input(full)) < 2.0


def test_huge_png_is_reduced_right_after_decoding(tmp_path: Path) -> None:
    path = save(drawing(3000, 2100), tmp_path / "big.png", "PNG", compress_level=1)
    small = imaging.load_rgb(path, max_pixels=BIG, min_side=PRE.resize_side())
    assert PRE.resize_side() <= min(small.size) < 2 * PRE.resize_side(), small.size
    full = imaging.load_rgb(path, max_pixels=BIG)
    assert grey_levels(model_input(small), model_input(full)) < 3.0  # box-reduce + bicubic vs one bicubic
    # Never below what the model needs: a 300-px image is left as it is.
    path = save(drawing(400, 300), tmp_path / "small.png", "PNG")
    assert imaging.load_rgb(path, max_pixels=BIG, min_side=PRE.resize_side()).size == (400, 300)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (200, 100), "white")
    img.paste((255, 0, 0), (0, 0, 100, 100))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: display rotated 90 degrees clockwise
    path = save(img, tmp_path / "turned.jpg", "JPEG", exif=exif, quality=95)
    out = imaging.load_rgb(path, max_pixels=BIG)
    assert out.size == (100, 200)
    top, bottom = np.asarray(out)[20, 50], np.asarray(out)[180, 50]
    assert top[0] > 200 and top[1] < 60, top  # the red half is now on top
    assert bottom.min() > 200, bottom
    # Without the tag the same pixels stay as stored.
    assert imaging.load_rgb(save(img, tmp_path / "plain.jpg", "JPEG"), max_pixels=BIG).size == (200, 100)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparency_is_composited_on_white(mode: str, tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (120, 80), (0, 0, 0, 0))
    rgba.paste((10, 10, 10, 255), (40, 20, 80, 60))
    if mode == "LA":
        img = rgba.convert("LA")
    elif mode == "P":
        img = Image.new("P", (120, 80), 0)
        img.putpalette([0, 0, 0, 10, 10, 10] + [0] * 762)
        img.paste(1, (40, 20, 80, 60))
        img.info["transparency"] = 0
    else:
        img = rgba
    path = tmp_path / "t.png"
    img.save(path, "PNG", **({"transparency": 0} if mode == "P" else {}))
    out = imaging.load_rgb(path, max_pixels=BIG)
    assert out.mode == "RGB" and out.size == (120, 80)
    px = np.asarray(out)
    assert (px[5, 5] == 255).all(), px[5, 5]  # transparent -> white, not black
    assert px[40, 60].max() <= 12, px[40, 60]  # the opaque square keeps its colour


def test_decoded_image_outlives_its_file(tmp_path: Path) -> None:
    for fmt, name in (("JPEG", "a.jpg"), ("PNG", "a.png"), ("WEBP", "a.webp")):
        path = save(drawing(300, 200), tmp_path / name, fmt)
        img = imaging.load_rgb(path, max_pixels=BIG)
        path.unlink()
        assert img.mode == "RGB" and np.asarray(img).shape == (200, 300, 3)


def test_pipeline_decodes_each_file_once_for_all_its_views(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = [save(drawing(260 + 10 * i, 280), tmp_path / f"{i}.png", "PNG") for i in range(5)]
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    calls: list[Path] = []
    real = imaging.load_rgb

    def counting(src: Path | bytes, **kw: int) -> Image.Image:
        calls.append(Path(str(src)))
        return real(src, **kw)

    monkeypatch.setattr(imaging, "load_rgb", counting)
    seen: list[torch.Tensor] = []

    def forward(batch: torch.Tensor) -> torch.Tensor:
        seen.append(batch)
        return batch.mean(dim=(2, 3))

    pipe = Pipeline(pre=PRE, forward=forward, batch_size=4, max_pixels=BIG)
    work = [(Item(f"s{i}", f), [0, 1, 2]) for i, f in enumerate(files)] + [(Item("bad", tmp_path / "bad.png"), [0])]
    out = list(pipe.run(work))
    keys = [k for ks, _ in out for k in ks]
    assert sorted(keys) == sorted((f"s{i}", v) for i in range(5) for v in (0, 1, 2))
    assert sorted(calls) == sorted([*files, tmp_path / "bad.png"])  # one decode per file, whatever the views
    assert [len(b) for b in seen] == [4, 4, 4, 3]
    assert len(pipe.errors) == 1 and "bad.png" in pipe.errors[0]
    # The mirror view (1) is the centre crop flipped: the same channel means.
    vec = {k: v for ks, vs in out for k, v in zip(ks, vs, strict=True)}
    assert np.allclose(vec[("s0", 0)], vec[("s0", 1)], atol=1e-5)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is a Linux feature")
def test_decoding_threads_yield_to_the_forward_pass() -> None:
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    got: list[int] = []

    def worker() -> None:
        embeddings.yield_to_forward()
        got.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert got == [min(19, base + embeddings.DECODE_NICENESS)]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # the caller is untouched


def test_truncated_jpeg_is_rejected_not_half_decoded(tmp_path: Path) -> None:
    buf = io.BytesIO()
    drawing(800, 600).save(buf, "JPEG", quality=90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(imaging.ImageRejected):
        imaging.load_rgb(path, max_pixels=BIG, min_side=PRE.resize_side())


def transparent_drawing(w: int, h: int) -> Image.Image:
    """A drawing on a transparent canvas with soft (half-transparent) edges and coloured transparent
    pixels, which a wrong compositing order would let bleed in."""
    img = drawing(w, h).convert("RGBA")
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = np.hypot(xx - w * 0.45, yy - h * 0.55) / (min(w, h) * 0.3)
    alpha = (np.clip(1.5 - d, 0, 1) * 255).astype(np.uint8)
    px = np.asarray(img).copy()
    px[..., 3] = alpha
    px[alpha == 0, :3] = (0, 200, 0)  # invisible green
    return Image.fromarray(px, "RGBA")


def test_pipeline_vectors_are_the_views_of_the_decoded_image(tmp_path: Path) -> None:
    files = [save(transparent_drawing(300 + 70 * i, 260), tmp_path / f"{i}.png", "PNG") for i in range(3)]
    pipe = Pipeline(pre=PRE, forward=lambda b: b.flatten(1), batch_size=8, max_pixels=BIG)
    got = {
        k: v
        for ks, vs in pipe.run([(Item(f"s{i}", f), [0, 1, 2]) for i, f in enumerate(files)])
        for k, v in zip(ks, vs, strict=True)
    }
    for i, f in enumerate(files):
        rgb = imaging.load_rgb(f, max_pixels=BIG, min_side=PRE.resize_side())
        for v, im in zip((0, 1, 2), embeddings.view_images(rgb, [0, 1, 2], f"s{i}", PRE), strict=True):
            assert grey_levels(got[(f"s{i}", v)].reshape(3, 224, 224), PRE.array(im)) < 0.01, (i, v)
