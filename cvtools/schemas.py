"""The names and records that cross module boundaries: enums instead of bare strings, typed records
instead of dicts. JSON is made from them in one place (web/presenters.py)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ImageStatus(StrEnum):
    GROUP = "group"  # confirmed, in the group's folder, used for training
    NEW = "new"  # waiting for review
    DELETED = "deleted"  # rejected, kept so it is never offered again


class LabelMode(StrEnum):
    SINGLE = "single"
    MULTI = "multi"  # an image may be a Group member of several groups


class TrainMode(StrEnum):
    AUTO = "auto"
    HEAD = "head"
    FINETUNE = "finetune"


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


class RunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # the server stopped during the run


class AnomalyKind(StrEnum):
    ERRORS = "errors"
    DUPLICATES = "duplicates"


class AnomalyMethod(StrEnum):
    CROSS_VALIDATION = "cross_validation"  # each image judged by a head that did not learn from it
    PRODUCTION = "production"  # the main model's own answers (the original's way)


class Event(StrEnum):
    """Server-sent event names: the pages subscribe to exactly this list (served in base.html)."""

    JOB = "job"  # a job's state or progress
    DATASET = "dataset"  # groups or images changed
    MODEL = "model"  # the main model changed
    RUN = "run"  # a training run's record, after every epoch
    INDEX = "index"  # the similarity index changed


@dataclass(frozen=True)
class ImageRef:
    """One catalog image, where its file is now."""

    id: str
    group: str
    status: ImageStatus
    filename: str
    ext: str
    sha256: str
    phash: str | None
    source: str | None
    width: int
    height: int
    size: int
    created: float
    path: Path


@dataclass
class ErrorItem:
    """An image another group fits better (multi-label: a membership that is doubtful, see `kind`)."""

    image: ImageRef
    group: str
    probability: float
    detected: str
    detected_probability: float
    kind: str | None = None  # multi-label: "rejected" (in group, unlikely) or "missing" (likely, not in it)


@dataclass
class DuplicatePair:
    a: ImageRef
    b: ImageRef
    distance: float  # cosine distance of the embeddings (0 for identical bytes)
    layers: list[str]  # which candidate layers matched: identical, perceptual hash, embedding
    cross_group: bool
    pair: int = 0  # its number in the list, 1 first
    verdict: dict[str, Any] = field(default_factory=dict)  # why it is listed (the geometric check)


@dataclass
class RunRecord:
    """A training run, stored as run.json in its model folder. Fields other versions wrote and this one
    does not know are kept in `extra` and written back."""

    id: str
    state: RunState = RunState.QUEUED
    mode: TrainMode = TrainMode.HEAD
    requested_mode: TrainMode = TrainMode.AUTO
    backbone: str = ""
    backbone_kind: str = ""
    classes: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    confusion: list[list[int]] | None = None
    created: str = ""
    finished: str | None = None
    preprocess: dict[str, Any] | None = None
    counts: dict[str, int] | None = None
    group_sizes: dict[str, int] | None = None
    embedded_images: int | None = None
    accuracy: float | None = None
    per_group: dict[str, Any] | None = None
    predictions: list[dict[str, Any]] | None = None
    seconds: float | None = None
    error: str | None = None
    calibration: dict[str, Any] | None = None
    label_mode: LabelMode = LabelMode.SINGLE
    multi: dict[str, Any] | None = None
    micro_f1: float | None = None
    macro_f1: float | None = None
    attributes: dict[str, Any] | None = None
    comparison: dict[str, Any] | None = None  # auto mode: the head and the fine-tuned network, and the winner
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self, *, predictions: bool = True) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        out = {k: (str(v) if isinstance(v, StrEnum) else v) for k, v in out.items()}
        if not predictions:
            out.pop("predictions")
        return {**self.extra, **{k: v for k, v in out.items() if v is not None or k in ("best", "confusion")}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in known}
        for name, enum in (("state", RunState), ("mode", TrainMode), ("requested_mode", TrainMode)):
            if name in values:
                try:
                    values[name] = enum(values[name])
                except ValueError:
                    values.pop(name)
        if "label_mode" in values:
            try:
                values["label_mode"] = LabelMode(values["label_mode"])
            except ValueError:
                values.pop("label_mode")
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})


def _param(default: Any, mode: TrainMode, help: str, **limits: Any) -> Any:
    return Field(default, description=help, json_schema_extra={"mode": mode.value}, **limits)


class TrainParams(BaseModel):
    """Training parameters: each with its range (out of range -> 422 naming it), the mode it belongs to
    and a one-line help for the Learning page. Strict: true is not a number, "yes" is not true."""

    model_config = ConfigDict(extra="forbid", strict=True)

    epochs: int = _param(40, TrainMode.HEAD, "Passes over the training images.", ge=1, le=2000)
    head_learning_rate: float = _param(3e-3, TrainMode.HEAD, "Step size of the head's optimiser.", ge=1e-6, le=1.0)
    # 256, not a linear head: chosen on the dev half of benchmarks/head_bench.py (docs/BENCHMARKS.md).
    hidden_units: int = _param(
        256, TrainMode.HEAD, "0: a linear head; more: a small neural network with that many units.", ge=0, le=4096
    )
    augment_views: int = _param(
        4, TrainMode.HEAD, "Randomly cropped and mirrored copies of each training image.", ge=0, le=16
    )
    weight_decay: float = _param(1e-4, TrainMode.HEAD, "Pull towards small weights (against over-fitting).", ge=0, le=1)
    tta_flip: bool = _param(True, TrainMode.HEAD, "Average every answer with that of the mirror image.")
    seed: int = _param(
        0,
        TrainMode.HEAD,
        "Seed of the head's random draws (first weights, dropout, batch order); another seed, another draw.",
        ge=0,
        le=2**31 - 1,
    )
    use_all_images: bool = _param(
        True, TrainMode.HEAD, "After the check, train once more on all images (the check images too)."
    )
    learning_rate: float | None = _param(
        None,
        TrainMode.FINETUNE,
        "Step size (default 3e-4 for ConvNeXt and EfficientNet-Lite, else 5e-5).",
        ge=1e-7,
        le=1.0,
    )
    per_device_train_batch_size: int = _param(16, TrainMode.FINETUNE, "Images per training step.", ge=1, le=1024)
    gradient_accumulation_steps: int = _param(
        4,
        TrainMode.FINETUNE,
        "Steps added up before each weight update (EfficientNet-Lite: 1 unless set).",
        ge=1,
        le=1024,
    )
    per_device_eval_batch_size: int = _param(16, TrainMode.FINETUNE, "Images per evaluation step.", ge=1, le=1024)
    num_train_epochs: int = _param(
        10, TrainMode.FINETUNE, "Passes over the training images (EfficientNet-Lite: 30 unless set).", ge=1, le=1000
    )
    warmup_ratio: float = _param(
        0.1, TrainMode.FINETUNE, "Share of the steps spent raising the step size.", ge=0, le=0.9
    )
    logging_steps: int = _param(10, TrainMode.FINETUNE, "Log the training loss every this many steps.", ge=1, le=100000)

    @classmethod
    def help(cls) -> dict[str, dict[str, Any]]:
        """name -> {mode, help, min, max} for the Learning page."""
        out = {}
        for name, f in cls.model_fields.items():
            limits = {type(m).__name__: m for m in f.metadata}
            low = getattr(limits.get("Ge"), "ge", 0)
            high = getattr(limits.get("Le"), "le", 1)
            extra = f.json_schema_extra if isinstance(f.json_schema_extra, dict) else {}
            out[name] = {"mode": extra.get("mode"), "help": f.description, "min": low, "max": high}
        return out
