"""The one place that wires the app together: dataset, jobs, models, serving, search, training and
anomalies, for the web app's lifespan, the command line, the tests and the benchmarks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .dataset import Dataset
from .jobs import JobRunner
from .schemas import Event
from .settings import Settings
from .vision.anomalies.service import AnomalyService
from .vision.context import VisionContext
from .vision.embeddings import EmbeddingStore
from .vision.models import ModelManager
from .vision.registry import Registry
from .vision.search import SearchService
from .vision.serving import Classifier
from .vision.training.service import TrainingService

Publish = Callable[[Event, dict[str, Any]], None]


def _quiet(event: Event, data: dict[str, Any]) -> None:
    """No one listens (the command line, benchmarks)."""


@dataclass
class Services:
    settings: Settings
    dataset: Dataset
    jobs: JobRunner
    models: ModelManager
    classifier: Classifier
    search: SearchService
    training: TrainingService
    anomalies: AnomalyService
    store: EmbeddingStore

    def close(self) -> None:
        self.jobs.shutdown()
        self.classifier.close()
        self.anomalies.close()
        self.store.close()
        self.dataset.close()


def build_services(settings: Settings, publish: Publish = _quiet) -> Services:
    dataset = Dataset(settings.dataset_dir, max_image_pixels=settings.max_image_pixels, label_mode=settings.label_mode)
    jobs = JobRunner()
    jobs.listeners.append(lambda data: publish(Event.JOB, data))
    dataset.listeners.append(lambda data: publish(Event.DATASET, data))
    store = EmbeddingStore(settings.state_dir / "embeddings.sqlite")
    models = ModelManager(settings, Registry(settings.state_dir / "models"), publish)
    ctx = VisionContext(settings, dataset, models, store, jobs, publish)
    search, anomalies = SearchService(ctx), AnomalyService(ctx)
    dataset.listeners.extend([search.on_dataset_change, anomalies.on_dataset_change])
    return Services(
        settings=settings,
        dataset=dataset,
        jobs=jobs,
        models=models,
        classifier=Classifier(settings, models),
        search=search,
        training=TrainingService(ctx),
        anomalies=anomalies,
        store=store,
    )
