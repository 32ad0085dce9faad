"""Safe image decoding: format sniffing, pixel limits, EXIF orientation, RGB, thumbnails, hashes."""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import imagehash
from PIL import ExifTags, Image, ImageFile, ImageOps

from .errors import NotAnImage, TooLarge

# Our own pixel check runs before any decode; Pillow's bomb guard stays on as a second line.
Image.MAX_IMAGE_PIXELS = 200_000_000
ImageFile.LOAD_TRUNCATED_IMAGES = False

FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}
THUMB_SIZE = 256


class ImageRejected(ValueError):
    """The bytes are not an acceptable image; str() is the skip reason."""

    def __init__(self, reason: str, *, too_large: bool = False) -> None:
        super().__init__(reason)
        self.too_large = too_large


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    phash: str

    @property
    def ext(self) -> str:
        return FORMATS[self.format]


def sniff(head: bytes) -> str | None:
    """The image format from the first bytes, ignoring names and Content-Type."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM" and len(head) >= 26:
        return "BMP"
    return None


def _open(src: Path | bytes | BinaryIO) -> Image.Image:
    if isinstance(src, bytes):
        return Image.open(io.BytesIO(src))
    return Image.open(src)


def read_head(src: Path | bytes) -> bytes:
    if isinstance(src, bytes):
        return src[:32]
    with open(src, "rb") as fh:
        return fh.read(32)


def check_image(src: Path | bytes, *, max_pixels: int) -> ImageInfo:
    """Fully validate an image without trusting its header: sniff, size check, full decode."""
    fmt = sniff(read_head(src))
    if fmt is None:
        raise ImageRejected("not an image (JPEG, PNG, WebP, GIF or BMP expected)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with _open(src) as img:
                if img.format != fmt:
                    raise ImageRejected(f"not a valid {fmt} file")
                w, h = img.size
                if w < 1 or h < 1:
                    raise ImageRejected("image has no pixels")
                if w * h > max_pixels:
                    raise ImageRejected(
                        f"too large: {w}x{h} pixels exceeds the {max_pixels:,} pixel limit",
                        too_large=True,
                    )
                img.load()  # a truncated or corrupt file fails here, not later
                phash = perceptual_hash(img)
    except ImageRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageRejected("too large: decompression bomb", too_large=True) from None
    except Exception as exc:  # Pillow raises many types for corrupt data
        raise ImageRejected(f"corrupt or truncated {fmt} file ({type(exc).__name__})") from None
    return ImageInfo(fmt, w, h, phash)


def to_rgb(img: Image.Image) -> Image.Image:
    """EXIF orientation applied, transparency composited on white, RGB."""
    # Every branch returns a new image, detached from the (closing) file, with one full-size pass
    # at most after the turn: this runs for every image of every embedding job.
    if img.getexif().get(ExifTags.Base.Orientation, 1) != 1:
        img = ImageOps.exif_transpose(img) or img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img if img.mode == "RGBA" else img.convert("RGBA")
        bg = Image.new("RGB", img.size, (255, 255, 255))
        bg.paste(rgba, mask=rgba)
        return bg
    return img.convert("RGB")


def load_rgb(src: Path | bytes, *, max_pixels: int, min_side: int | None = None) -> Image.Image:
    """Decode to RGB; with min_side, JPEGs decode at a reduced scale (draft) and other formats are
    reduced by a whole factor, never below min_side."""
    fmt = sniff(read_head(src))
    if fmt is None:
        raise ImageRejected("not an image (JPEG, PNG, WebP, GIF or BMP expected)")
    try:
        with _open(src) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise ImageRejected(f"too large: {w}x{h} pixels", too_large=True)
            if min_side and img.format == "JPEG":
                scale = min(w, h) / min_side
                if scale >= 2:
                    img.draft("RGB", (max(1, int(w / scale)), max(1, int(h / scale))))
            img.load()
            rgb = to_rgb(img)
            if min_side and min(rgb.size) >= 2 * min_side:
                # A big image (a PNG has no draft mode) is box-reduced by a whole factor right away,
                # keeping at least min_side: the later bicubic resize then works on a few pixels, not
                # millions.
                rgb = rgb.reduce(min(rgb.size) // min_side)
            return rgb
    except ImageRejected:
        raise
    except Exception as exc:
        raise ImageRejected(f"corrupt or truncated image ({type(exc).__name__})") from None


def load_query(data: bytes, *, max_pixels: int, min_side: int) -> Image.Image:
    """load_rgb for an image sent to be answered (/cv, /api/classify, a bundle): a rejection is the
    client's error, 413 for a too large image, 400 otherwise."""
    try:
        return load_rgb(data, max_pixels=max_pixels, min_side=min_side)
    except ImageRejected as exc:
        raise (TooLarge if exc.too_large else NotAnImage)(str(exc)) from None


def thumbnail_jpeg(src: Path, *, max_pixels: int, size: int = THUMB_SIZE) -> bytes:
    img = load_rgb(src, max_pixels=max_pixels, min_side=size)
    img.thumbnail((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=82, optimize=False)
    return out.getvalue()


def perceptual_hash(img: Image.Image) -> str:
    """64-bit difference hash (hex); robust to resizing and re-compression."""
    small = img.copy()
    small.thumbnail((64, 64), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return str(imagehash.dhash(to_rgb(small), hash_size=8))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temp name beside the target, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A name of its own per write: two threads writing the same target never share a temp file.
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(6)}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
