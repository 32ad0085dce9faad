"""What the vision services (search, training, anomalies) share, made once in services.py."""

from __future__ import annotations

from dataclasses import dataclass

from ..dataset import Dataset
from ..jobs import JobRunner
from ..settings import Settings
from .embeddings import EmbeddingStore
from .models import ModelManager, Publish


@dataclass(frozen=True)
class VisionContext:
    settings: Settings
    dataset: Dataset
    models: ModelManager
    store: EmbeddingStore  # cached embeddings by (network, image, view)
    jobs: JobRunner
    publish: Publish


class VisionService:
    """Base of the services built on a VisionContext: its parts as attributes."""

    def __init__(self, ctx: VisionContext) -> None:
        self.ctx = ctx
        self.settings, self.dataset, self.models, self.store = ctx.settings, ctx.dataset, ctx.models, ctx.store
        self.jobs, self.publish = ctx.jobs, ctx.publish
