"""Answering with the production model: one path for /cv, /api/analyze, /api/classify and the command
line. Requests meet in a batcher, so concurrent callers share forward passes."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from PIL import Image

from .. import imaging, netfetch
from ..cvquery import cv_list
from ..errors import CVError
from ..settings import Settings
from .answers import Ranked, answered, failed, rank, verdict
from .batcher import Batcher
from .models import ModelManager
from .predictor import Predictor


class Classifier:
    def __init__(self, settings: Settings, models: ModelManager) -> None:
        self.settings = settings
        self.models = models
        self.batcher = Batcher(settings.batch_size)
        self.policy = netfetch.UrlPolicy(allow_private=settings.allow_private_urls, max_bytes=settings.max_upload_bytes)

    def close(self) -> None:
        self.batcher.close()

    # ---- sources and decoding ------------------------------------------------------------------
    def locate(self, target: str) -> netfetch.ImageSource:
        """A path or URL judged by the policy (public_dirs, private addresses) before anything is read."""
        s = self.settings
        return netfetch.locate(target, public_dirs=list(s.public_dirs), base=s.dataset_dir, policy=self.policy)

    def read(self, target: str) -> bytes:
        return self.locate(target).read(self.policy)

    def decode_side(self) -> int:
        """The shorter side a query is decoded to at least: the main model's, as for its stored
        embeddings, so that a file of the dataset gets the same vector either way."""
        return self.models.require_production().preprocess.resize_side()

    def decode(self, data: bytes) -> Image.Image:
        return imaging.load_query(data, max_pixels=self.settings.max_image_pixels, min_side=self.decode_side())

    # ---- answers -------------------------------------------------------------------------------
    def classify(self, images: list[Image.Image], predictor: Predictor | None = None) -> list[Ranked]:
        """Ranked (group, probability) per image, highest first (direct, one batch)."""
        p = predictor or self.models.require_production()
        return [rank(p.classes, row) for row in p.probs(p.preprocess.batch(images))]

    def _forward(self, image: Image.Image) -> tuple[Predictor, np.ndarray, np.ndarray, np.ndarray]:
        p = self.models.require_production()
        probs, feats, logits = self.batcher.submit(p, p.preprocess.array(p.preprocess.center(image))).result()
        return p, probs, feats, logits

    def _vector(self, feats: np.ndarray, logits: np.ndarray) -> np.ndarray:
        return logits if self.settings.similarity_space == "logits" else feats

    def analyze(self, image: Image.Image) -> tuple[Ranked, np.ndarray]:
        """One image through the batcher: ranked groups and its vector in the similarity space."""
        p, probs, feats, logits = self._forward(image)
        return rank(p.classes, probs), self._vector(feats, logits)

    def analyze_full(self, image: Image.Image) -> tuple[Ranked, np.ndarray, dict[str, Any]]:
        """As analyze, plus the open-set verdict (unknown, reason, fallback, nearest): a search over the
        training embeddings, so only the callers that report it pay for it."""
        p, probs, feats, logits = self._forward(image)
        return rank(p.classes, probs), self._vector(feats, logits), self.verdict(p, probs, feats)

    def verdict(self, p: Predictor, probs: np.ndarray, feats: np.ndarray) -> dict[str, Any]:
        labels = p.label_set(probs) if p.layout is not None else None
        return verdict(
            probs, feats, labels=labels, calibration=p.calibration, unknown_detection=self.settings.unknown_detection
        )

    def cv(self, data: bytes, n: int | None) -> list[list[Any]]:
        """The original's answer: [[group, probability], ...], highest first, the top n when n > 0."""
        self.models.require_production()
        image = self.decode(data)
        if self.settings.cv_unknown:
            ranked, _, judged = self.analyze_full(image)
        else:  # the original format: no open-set search on this hot path
            (ranked, _), judged = self.analyze(image), {}
        return cv_list(ranked, n, judged.get("score"))

    def classify_many(
        self,
        items: list[tuple[str, bytes | str]],
        *,
        read: Callable[[str], bytes] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Many images (bytes, or paths and URLs read by `read`: by default under the policy of /cv): for
        each the ranked groups and the verdict, or its own error; one bad item does not fail the others."""
        self.models.require_production()
        read = read or self.read

        def one(item: tuple[str, bytes | str]) -> dict[str, Any]:
            name, src = item
            try:
                data = src if isinstance(src, bytes) else read(src)
                ranked, _, judged = self.analyze_full(self.decode(data))
            except (CVError, OSError) as exc:
                return {"name": name, **failed(exc)}
            return {"name": name, **answered(ranked, judged)}

        results: list[dict[str, Any]] = []
        # Threads decode in parallel and their requests meet in the batcher.
        with ThreadPoolExecutor(max(2, self.settings.batch_size)) as pool:
            for r in pool.map(one, items):
                results.append(r)
                if progress:
                    progress(len(results), len(items))
        return results
