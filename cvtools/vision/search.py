"""Similar-image search: the index of the Group images in the production model's similarity space,
persisted, built as a job and kept current as images come and go."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import numpy as np
import torch

from ..jobs import Job
from ..schemas import Event, ImageRef, ImageStatus, JobState
from .context import VisionContext, VisionService
from .embeddings import Item, cached_views
from .index import SimilarityIndex
from .predictor import Predictor

log = logging.getLogger(__name__)


class SearchService(VisionService):
    def __init__(self, ctx: VisionContext) -> None:
        super().__init__(ctx)
        self.path = ctx.settings.state_dir / "index" / "index.npz"
        self._index: SimilarityIndex | None = None
        self._loaded = False
        self._lock = threading.Lock()

    def index(self) -> SimilarityIndex | None:
        """The persisted index when it matches the production model, else None."""
        if not self._loaded:
            with self._lock:
                if not self._loaded:
                    self._loaded = True
                    if self.path.is_file():
                        try:
                            self._index = SimilarityIndex.load(self.path)
                        except (OSError, ValueError, KeyError) as exc:
                            log.warning("similarity index unreadable (%s); it will be rebuilt on demand", exc)
        idx, p = self._index, self.models.production()
        if idx is None or p is None or idx.fingerprint != p.fingerprint or idx.space != self.settings.similarity_space:
            return None
        if idx.space == "logits" and idx.run != p.run:  # logits depend on the head, not only the backbone
            return None
        return idx

    def status(self) -> dict[str, Any]:
        idx = self.index()
        running = [j.id for j in self.jobs.active("index")]
        return {
            "exists": idx is not None,
            "images": len(idx) if idx else 0,
            "space": self.settings.similarity_space,
            "run": idx.run if idx else None,
            "built": idx.built if idx else None,
            "job": running[0] if running else None,
        }

    def similar(self, vector: np.ndarray, k: int, group: str | None = None) -> list[tuple[str, str, float]] | None:
        """The k nearest Group images (id, group, distance); None when there is no current index."""
        idx = self.index()
        return None if idx is None else idx.query(vector, k, group)

    def _vectors(self, p: Predictor, refs: list[ImageRef], job: Job | None) -> dict[str, np.ndarray]:
        items = [Item(r.sha256, r.path) for r in refs]
        s = self.settings
        kept, (feats,), _ = cached_views(
            self.store,
            p.backbone,
            items,
            [0],
            batch_size=s.batch_size,
            max_pixels=s.max_image_pixels,
            job=job,
            label="Indexing",
        )
        if not kept:
            return {}
        if s.similarity_space == "logits":
            with torch.inference_mode():
                feats = p.logits_from_features(torch.from_numpy(feats)).float().numpy()
        return {refs[k].id: v for k, v in zip(kept, feats, strict=True)}

    def build(self, job: Job | None = None, *, full: bool = True) -> dict[str, Any]:
        """Embed every Group image with the production model (cached) and save the index."""
        p = self.models.require_production()
        refs = self.dataset.with_status(ImageStatus.GROUP)
        space = self.settings.similarity_space
        with self._lock:
            current = None if full else self._index
            if current is not None and (current.fingerprint != p.fingerprint or current.space != space):
                current = None
        keep = {r.id: r.group for r in refs}
        todo = refs if current is None else [r for r in refs if not current.has(r.id)]
        vectors = self._vectors(p, todo, job)
        if current is None:
            current = SimilarityIndex(p.fingerprint, space, p.run)
        current.update(keep, {i: (keep[i], v) for i, v in vectors.items()})
        current.built = time.time()
        current.save(self.path)
        with self._lock:
            self._index, self._loaded = current, True
        self.publish(Event.INDEX, self.status())
        return {"images": len(current), "embedded": len(vectors)}

    def start_job(self, *, full: bool = True) -> Job:
        self.models.require_production()
        for j in self.jobs.active("index"):
            if j.state == JobState.QUEUED:
                return j
        return self.jobs.submit("index", lambda job: self.build(job, full=full), message="Building the image index")

    def on_dataset_change(self, event: dict[str, Any]) -> None:
        """Keep the index current: an incremental update after images are added, moved or deleted."""
        active = self._loaded and self._index is not None and self.models.peek_production() is not None
        if event.get("op") in ("images", "groups") and active:
            self.start_job(full=False)
