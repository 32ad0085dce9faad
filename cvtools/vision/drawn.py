"""The drawn part of an image: what differs from its border colour, with a margin, a frame or an empty
canvas peeled off. A copy's margin, frame, crop, greying or rescale leave it as it was, so the
duplicate search embeds it (the embedding view CANONICAL) and the local-feature check
(anomalies/geometry.py) finds its keypoints and compares its pixels there."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image


def border_colour(grey: np.ndarray) -> int:
    """The median grey level of the outermost rows and columns."""
    return int(np.median(np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])))


def drawn_part(grey: np.ndarray) -> np.ndarray:
    """The image cropped to what differs from its border colour (a margin or an empty canvas says
    nothing about the picture), peeled again while the new edge has another colour (a frame around a
    margin); the whole image when nothing differs."""
    for _ in range(3):
        differs = np.abs(grey.astype(np.int16) - border_colour(grey)) > 24
        if np.count_nonzero(differs) < 16:
            return grey
        ys, xs = np.flatnonzero(differs.any(1)), np.flatnonzero(differs.any(0))  # the rows and columns hit
        inner = grey[ys[0] : ys[-1] + 1, xs[0] : xs[-1] + 1]
        if inner.shape == grey.shape:
            return grey
        grey = inner
    return grey


def scaled(grey: np.ndarray, side: int) -> np.ndarray:
    """grey scaled so that its longer side has `side` pixels."""
    h, w = grey.shape
    s = side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)


def square(grey: np.ndarray, side: int) -> np.ndarray:
    """The drawn part scaled into a side x side canvas of its border colour, centred."""
    small = scaled(grey, side)
    canvas = np.full((side, side), border_colour(grey), np.uint8)
    y, x = (side - small.shape[0]) // 2, (side - small.shape[1]) // 2
    canvas[y : y + small.shape[0], x : x + small.shape[1]] = small
    return canvas


def canonical(img: Image.Image, side: int) -> Image.Image:
    """The drawn part, grey, on a square canvas of its border colour: what a copy's margin, frame, crop,
    greying or rescale leave as they were. Embedded as the duplicate search's second view."""
    return Image.fromarray(square(drawn_part(np.asarray(img.convert("L"))), side)).convert("RGB")
