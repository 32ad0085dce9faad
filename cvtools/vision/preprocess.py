"""Resize, centre crop, normalise and augment without torchvision (PIL + numpy; torch only for batch)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

RESAMPLE = Image.Resampling.BICUBIC


@dataclass(frozen=True)
class Preprocess:
    size: int = 224  # side of the square the network sees, in pixels
    crop_pct: float = 0.875  # resize the shorter side to size / crop_pct, then centre crop
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def resize_side(self) -> int:
        return round(self.size / self.crop_pct)

    def center(self, img: Image.Image) -> Image.Image:
        """Shorter side to size/crop_pct, then the central size x size square. Only the square is
        computed: the crop is given to the resize as its source box (the same pixels as resizing the
        whole image and cropping, up to rounding, at a fraction of the work for long images)."""
        side = self.resize_side()
        w, h = img.size
        scale = side / min(w, h)
        nw, nh = max(self.size, round(w * scale)), max(self.size, round(h * scale))
        left, top = (nw - self.size) // 2, (nh - self.size) // 2
        sx, sy = w / nw, h / nh
        box = (left * sx, top * sy, (left + self.size) * sx, (top + self.size) * sy)
        return img.resize((self.size, self.size), RESAMPLE, box=box)

    def augmented(self, img: Image.Image, rng: random.Random) -> Image.Image:
        """Random resized crop (35-100 % of the area, aspect 3/4-4/3) and a random horizontal flip."""
        w, h = img.size
        area = w * h
        for _ in range(10):
            target = area * rng.uniform(0.35, 1.0)
            ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
            cw, ch = round((target * ratio) ** 0.5), round((target / ratio) ** 0.5)
            if 0 < cw <= w and 0 < ch <= h:
                left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
                img = img.crop((left, top, left + cw, top + ch))
                break
        img = img.resize((self.size, self.size), RESAMPLE)
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return img

    def array(self, img: Image.Image) -> np.ndarray:
        """HWC uint8 RGB -> CHW float32, normalised: (x / 255 - mean) / std as one multiply-add."""
        std = np.asarray(self.std, dtype=np.float32)
        scale = (1 / (255.0 * std)).reshape(3, 1, 1)
        offset = (-np.asarray(self.mean, dtype=np.float32) / std).reshape(3, 1, 1)
        chw = np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)
        out = np.empty(chw.shape, dtype=np.float32)
        np.multiply(chw, scale, out=out)
        out += offset
        return out

    def batch(self, images: list[Image.Image]) -> torch.Tensor:
        import torch  # lazily: the model bundle uses this class without torch

        return torch.from_numpy(np.stack([self.array(self.center(i)) for i in images]))


def flip(img: Image.Image) -> Image.Image:
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
