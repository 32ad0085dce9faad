"""The anomaly lists as a service: computed as a job with progress, kept until the dataset or the main
model changes."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from ...errors import BadInput
from ...jobs import Job
from ...schemas import AnomalyKind, AnomalyMethod, ImageRef, ImageStatus, LabelMode
from ..context import VisionContext, VisionService
from ..embeddings import CANONICAL, Item, cached_views
from . import duplicates, errors


class AnomalyService(VisionService):
    def __init__(self, ctx: VisionContext) -> None:
        super().__init__(ctx)
        self.version = 0  # bumped by every dataset change
        self._cache: dict[tuple[AnomalyKind, AnomalyMethod], tuple[tuple[Any, ...], dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.features = duplicates.FeatureStore(ctx.settings.state_dir / "features.sqlite")

    def close(self) -> None:
        self.features.close()

    def on_dataset_change(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.version += 1

    @staticmethod
    def parse(kind: str, method: str | None, default: str) -> tuple[AnomalyKind, AnomalyMethod]:
        try:
            k = AnomalyKind(kind)
        except ValueError:
            raise BadInput("type must be errors or duplicates") from None
        try:
            m = AnomalyMethod(method or default)
        except ValueError:
            raise BadInput("method must be cross_validation or production") from None
        return k, m

    def get(
        self, kind: str, method: str | None = None, job: Job | None = None, *, fresh: bool = False
    ) -> dict[str, Any]:
        """The anomaly list, recomputed only when the dataset or the main model changed."""
        k, m = self.parse(kind, method, self.settings.anomaly_method)
        p = self.models.require_production()
        key = (self.version, p.run, self.settings.max_equal_distance)
        cached = self._cache.get((k, m))
        if cached and cached[0] == key and not fresh:
            return cached[1]
        result = self._errors(m, job) if k == AnomalyKind.ERRORS else self._duplicates(job)
        result.update(method=m.value, computed=time.time())
        self._cache[(k, m)] = (key, result)
        return result

    def start_job(self, kind: str, method: str | None = None) -> Job:
        self.models.require_production()
        k, m = self.parse(kind, method, self.settings.anomaly_method)
        return self.jobs.submit(
            "anomalies", lambda job: _count(self.get(k, m, job, fresh=True)), message=f"Looking for {k.value}"
        )

    def _views(self, job: Job | None) -> errors.Views:
        """Cached embeddings of the production model's backbone; images that cannot be read are skipped."""
        p = self.models.require_production()
        s = self.settings

        def views(refs: list[ImageRef], which: list[int]) -> tuple[list[ImageRef], list[np.ndarray]]:
            items = [Item(r.sha256, r.path) for r in refs]
            kept, arrays, _ = cached_views(
                self.store, p.backbone, items, which, batch_size=s.batch_size, max_pixels=s.max_image_pixels, job=job
            )
            return [refs[k] for k in kept], arrays

        return views

    def _errors(self, method: AnomalyMethod, job: Job | None) -> dict[str, Any]:
        p = self.models.require_production()
        refs = self.dataset.with_status(ImageStatus.GROUP)
        folds = self.settings.anomaly_folds
        if self.dataset.label_mode == LabelMode.MULTI:
            exclusive = self.dataset.exclusive_roots()
            return errors.multi_label(p, refs, exclusive, method, self._views(job), folds, job)
        return errors.single_label(p, refs, method, self._views(job), folds, job)

    def _duplicates(self, job: Job | None) -> dict[str, Any]:
        refs = self.dataset.with_status(ImageStatus.GROUP) + self.dataset.with_status(ImageStatus.NEW)
        if len(refs) < 2:
            return {"pairs": [], "checked": len(refs), "skipped": []}
        refs, (vecs, drawn) = self._views(job)(refs, [0, CANONICAL])
        s = self.settings
        features = duplicates.Features(self.features, s.max_image_pixels)
        pairs = duplicates.find_duplicates(
            refs,
            vecs,
            max_distance=s.max_equal_distance,
            phash_bits=s.phash_max_bits,
            features=features,
            drawn=drawn,
            progress=(lambda d, t: job.progress(d, t, f"Checking pair {d} of {t}")) if job else None,
        )
        return {"pairs": pairs, "checked": len(refs), "skipped": features.skipped}


def _count(result: dict[str, Any]) -> dict[str, Any]:
    return {k: (len(v) if isinstance(v, list) else v) for k, v in result.items()}
