"""Render the glyph family (benchmarks/fetch-glyphs.sh): every character in every typeface, once, each
with a seeded size, position, tilt (within 8 degrees), ink and paper. Deterministic: the same files on
every machine with the same fonts.

    python -m benchmarks.glyphs <fonts folder> <destination>
"""

from __future__ import annotations

import random
import string
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

CHARACTERS = string.ascii_uppercase + string.digits
SIDE = 96
COPIES = 1  # one image per typeface: a split by file is a split by typeface


def typefaces(fonts: Path) -> list[Path]:
    """Text typefaces only (DejaVu's math face is a symbol font)."""
    return sorted(p for p in fonts.rglob("*.ttf") if "Math" not in p.name)


def render(ch: str, font_path: Path, rng: random.Random) -> Image.Image:
    paper = tuple(rng.randint(215, 255) for _ in range(3))
    ink = tuple(rng.randint(0, 90) for _ in range(3))
    font = ImageFont.truetype(str(font_path), rng.randint(44, 72))
    layer = Image.new("L", (SIDE * 2, SIDE * 2), 0)
    ImageDraw.Draw(layer).text((SIDE, SIDE), ch, font=font, fill=255, anchor="mm")
    layer = layer.rotate(rng.uniform(-8, 8), resample=Image.Resampling.BICUBIC)
    dx, dy = rng.randint(-10, 10), rng.randint(-10, 10)
    box = (SIDE // 2 + dx, SIDE // 2 + dy, SIDE // 2 + dx + SIDE, SIDE // 2 + dy + SIDE)
    mask = layer.crop(box)
    img = Image.new("RGB", (SIDE, SIDE), paper)
    img.paste(Image.new("RGB", (SIDE, SIDE), ink), mask=mask)
    return img


def main(fonts: Path, dest: Path) -> None:
    faces = typefaces(fonts)
    if len(faces) < 10:
        raise SystemExit(f"only {len(faces)} typefaces under {fonts}")
    for ch in CHARACTERS:
        folder = dest / f"char-{ch}"
        folder.mkdir(parents=True, exist_ok=True)
        for face in faces:
            for k in range(COPIES):
                rng = random.Random(f"{ch}-{face.name}-{k}")
                render(ch, face, rng).save(folder / f"{face.stem}-{k}.png")
    print(f"{len(CHARACTERS)} characters x {len(faces)} typefaces x {COPIES} -> {dest}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
