"""What a training run passes around: samples and the split, and what it needs from the services."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..backbone import Backbone
from ..embeddings import EmbeddingStore
from ..multilabel import Layout
from ..registry import Registry

MIN_IMAGES = 2  # per group: one to learn from and one to check against


@dataclass
class Sample:
    id: str
    sha256: str
    path: Path
    label: Any  # the class index; multi-label: a multi-hot float32 vector


@dataclass
class Split:
    classes: list[str]  # multi-label: the layout's outputs
    train: list[Sample]
    val: list[Sample]
    layout: Layout | None = None  # multi-label datasets
    left_out: dict[str, int] = field(default_factory=dict)

    @property
    def multi(self) -> bool:
        return self.layout is not None

    def labels(self, samples: list[Sample]) -> np.ndarray:
        return np.array([s.label for s in samples])


@dataclass
class TrainContext:
    """What a training run needs, passed explicitly so that tests and benchmarks can build it."""

    store: EmbeddingStore
    registry: Registry
    backbone: Backbone
    batch_size: int
    max_pixels: int
    unknown_frr: float | None = None  # calibrate unknown detection for this false-rejection rate
