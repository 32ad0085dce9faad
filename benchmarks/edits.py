"""Copies made the way people make them, and hard negatives, for the duplicate benchmark.

A copy is one to three of the edits below, then saved as JPEG or WebP (quality 30-95) or PNG:
crop 0-20 % per side, rescale 20-100 % (never below 48 pixels on the shorter side: the grabber takes no
image under 50), a padding or a border, rotation within +-10 degrees, brightness and contrast within
+-20 %, grey scale, a small text overlay. Hard negatives: the mirror image (of a picture that is not
symmetric), and two different drawings on the same canvas (a frame with a title; the drawings come from
images that are not in the dataset otherwise).
"""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageOps

MIN_SIDE = 48
EDITS = ("crop", "rescale", "border", "rotate", "tone", "grayscale", "text")


def _crop(img: Image.Image, rng: random.Random) -> Image.Image:
    w, h = img.size
    left, top, right, bottom = (rng.uniform(0, 0.2) for _ in range(4))
    return img.crop((round(left * w), round(top * h), round(w * (1 - right)), round(h * (1 - bottom))))


def _rescale(img: Image.Image, rng: random.Random) -> Image.Image:
    s = max(rng.uniform(0.2, 1.0), MIN_SIDE / min(img.size))
    return img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))), Image.Resampling.BICUBIC)


def _border(img: Image.Image, rng: random.Random) -> Image.Image:
    pad = max(2, round(rng.uniform(0.03, 0.15) * max(img.size)))
    colour = rng.choice([(255, 255, 255), (0, 0, 0), tuple(rng.randint(0, 255) for _ in range(3))])
    return ImageOps.expand(img, border=pad, fill=colour)


def _rotate(img: Image.Image, rng: random.Random) -> Image.Image:
    return img.rotate(rng.uniform(-10, 10), resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(255, 255, 255))


def _tone(img: Image.Image, rng: random.Random) -> Image.Image:
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.8, 1.2))
    return ImageEnhance.Contrast(img).enhance(rng.uniform(0.8, 1.2))


def _grayscale(img: Image.Image, rng: random.Random) -> Image.Image:
    return img.convert("L").convert("RGB")


def _text(img: Image.Image, rng: random.Random) -> Image.Image:
    img = img.copy()
    d = ImageDraw.Draw(img)
    x, y = rng.randint(0, max(0, img.width // 2)), rng.randint(0, max(0, img.height - 12))
    d.text((x, y), rng.choice(["© photo", "sample", "2026", "draft", "wm"]), fill=(rng.randint(0, 255),) * 3)
    return img


OPS = {
    "crop": _crop,
    "rescale": _rescale,
    "border": _border,
    "rotate": _rotate,
    "tone": _tone,
    "grayscale": _grayscale,
    "text": _text,
}


def save(img: Image.Image, rng: random.Random) -> tuple[bytes, str]:
    fmt = rng.choice(["JPEG", "JPEG", "WEBP", "PNG"])
    out = io.BytesIO()
    if fmt == "PNG":
        img.save(out, fmt)
        return out.getvalue(), "png"
    q = rng.randint(30, 95)
    img.save(out, fmt, quality=q)
    return out.getvalue(), f"{fmt.lower()} q{q}"


def copy_of(img: Image.Image, rng: random.Random) -> tuple[bytes, list[str]]:
    """The encoded copy and the edits made, in order."""
    ops = rng.sample(EDITS, rng.randint(1, 3))
    for op in ops:
        img = OPS[op](img, rng)
    data, fmt = save(img.convert("RGB"), rng)
    return data, [*ops, fmt]


def symmetric(img: Image.Image) -> bool:
    """A picture that is (nearly) its own mirror image: its mirror is no negative. Measured on the drawn
    part (what differs from the border colour): a symmetric drawing off the centre of its canvas is
    still its own mirror image once the margins are cut, as every duplicate check cuts them."""
    grey = np.asarray(img.convert("L"), dtype=np.int16)
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    ys, xs = np.nonzero(np.abs(grey - int(np.median(border))) > 24)
    if len(ys) >= 16:
        grey = grey[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    g = np.asarray(Image.fromarray(grey.astype(np.uint8)).resize((64, 64)), dtype=np.float32)
    a, b = g - g.mean(), g[:, ::-1] - g.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum())) or 1.0
    return float((a * b).sum()) / den > 0.8


def inked(img: Image.Image) -> bool:
    """A drawing with enough to see (not a faint line on white): usable on a shared canvas."""
    g = np.asarray(img.convert("L").resize((64, 64)), dtype=np.float32)
    return float((g < 200).mean()) > 0.15


def unlike(a: Image.Image, b: Image.Image) -> bool:
    """Two clearly different pictures: grey thumbnails correlate below 0.6. A re-used or recoloured
    drawing correlates above 0.85 (Wesnoth's slasher / thrasher 0.98, guard / stalwart 0.95); two
    different sprites of one style, centred on white, 0.5 on median, so a lower limit leaves Wesnoth
    with almost no drawings for the shared-canvas negatives (2 at 0.3, 16 pairs at 0.6)."""
    ga, gb = (np.asarray(x.convert("L").resize((64, 64)), dtype=np.float32) for x in (a, b))
    ga, gb = ga - ga.mean(), gb - gb.mean()
    den = float(np.sqrt((ga * ga).sum() * (gb * gb).sum())) or 1.0
    return float((ga * gb).sum()) / den < 0.6


def mirror(img: Image.Image) -> bytes:
    out = io.BytesIO()
    ImageOps.mirror(img).save(out, "PNG")
    return out.getvalue()


def on_canvas(drawing: Image.Image, rng_seed: int) -> bytes:
    """A drawing placed in the middle of a fixed template (frame, corner marks, a title bar): two
    different drawings on it share everything but the drawing."""
    canvas = Image.new("RGB", (800, 600), (250, 248, 240))
    d = ImageDraw.Draw(canvas)
    d.rectangle((20, 20, 779, 579), outline=(40, 60, 120), width=8)
    d.rectangle((40, 40, 759, 110), fill=(40, 60, 120))
    d.text((60, 60), "CERTIFICATE OF ACHIEVEMENT", fill=(250, 248, 240))
    for x, y in ((30, 30), (750, 30), (30, 550), (750, 550)):
        d.ellipse((x, y, x + 20, y + 20), fill=(200, 150, 40))
    d.line((100, 530, 700, 530), fill=(40, 60, 120), width=3)
    s = 380 / max(drawing.size)  # the drawing fills its place, small ones enlarged
    art = drawing.resize(
        (max(1, round(drawing.width * s)), max(1, round(drawing.height * s))), Image.Resampling.LANCZOS
    )
    canvas.paste(art, ((800 - art.width) // 2, 125 + (400 - art.height) // 2))
    out = io.BytesIO()
    canvas.save(out, "PNG")
    return out.getvalue()
