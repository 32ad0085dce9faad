"""Starting a training run (one at a time) and the run itself, which reads top to bottom:
split -> label maps -> features -> fit -> evaluate -> save."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import torch

from ...errors import Conflict
from ...jobs import Job
from ...schemas import Event, ImageStatus, LabelMode, RunRecord, RunState, TrainMode, TrainParams
from ..context import VisionContext, VisionService
from ..head import EpochRow
from ..predictor import Predictor
from . import evaluate, head_mode
from .finetune import finetune
from .splits import split_multi, split_single
from .types import Split, TrainContext


def resolve_mode(mode: TrainMode | str) -> TrainMode:
    mode = TrainMode(mode)
    if mode == TrainMode.AUTO:
        return TrainMode.FINETUNE if torch.cuda.is_available() else TrainMode.HEAD
    return mode


def family_defaults(kind: str, name: str) -> dict[str, Any]:
    """The fine-tuning parameters that depend on the network: those a request leaves out take these.
    EfficientNet-Lite0, chosen on dev (benchmarks/finetune_bench.py, docs/BENCHMARKS.md "Fine-tuning"):
    the original's 5e-5, 10 epochs and 16 x 4 accumulated images reached 0.39 held-out accuracy
    (the probe on its frozen features 0.92); 3e-4, 30 epochs, no accumulation 0.92."""
    if kind == "efficientnet":
        return {"learning_rate": 3e-4, "num_train_epochs": 30, "gradient_accumulation_steps": 1}
    return {"learning_rate": 3e-4 if "convnext" in name.lower() else 5e-5}


class TrainingService(VisionService):
    def __init__(self, ctx: VisionContext) -> None:
        super().__init__(ctx)
        self._lock = threading.Lock()

    def params(self) -> dict[str, Any]:
        """The defaults; those of fine-tuning for the loaded network once it is loaded (the page sends
        only what the user changed, so a run started earlier still gets its network's defaults)."""
        params = TrainParams().model_dump()
        bb = self.models.loaded_backbone()
        if bb is not None:
            params.update(family_defaults(bb.kind, bb.name))
        return {
            "mode": self.settings.train_mode,
            "resolved_mode": resolve_mode(self.settings.train_mode).value,
            "params": params,
            "help": TrainParams.help(),
        }

    def start(self, mode: TrainMode | str | None, params: TrainParams) -> tuple[Job, str]:
        # The check and the submit under one lock: of concurrent requests exactly one starts a run.
        with self._lock:
            if self.jobs.active("train"):
                raise Conflict("a training run is already in progress")
            requested = TrainMode(mode or self.settings.train_mode)
            split = self._split()  # a 400 now, not a failed job
            bb = self.models.loaded_backbone()
            record = RunRecord(
                id=self.models.registry.new_run_id(),
                mode=resolve_mode(requested),
                requested_mode=requested,
                backbone=bb.name if bb else self.settings.neuronet,
                params=params.model_dump(),
                created=time.strftime("%Y-%m-%dT%H:%M:%S"),
                label_mode=LabelMode.MULTI if split.multi else LabelMode.SINGLE,
            )
            self.models.registry.write(record)
            job = self.jobs.submit("train", lambda job: self._run(job, record, params), message="Preparing")
            return job, record.id

    def _split(self) -> Split:
        refs = self.dataset.with_status(ImageStatus.GROUP)
        if self.dataset.label_mode == LabelMode.MULTI:
            return split_multi(refs, self.dataset.exclusive_roots(), test_size=self.settings.test_size)
        return split_single(refs, test_size=self.settings.test_size)

    def _run(self, job: Job, record: RunRecord, params: TrainParams) -> dict[str, Any]:
        record.state = RunState.RUNNING
        try:
            train(self._context(record, params), self._split(), record, params, job, self._reporter(record, job))
        except BaseException as exc:
            record.state = RunState.CANCELLED if job.cancelled else RunState.FAILED
            record.error = getattr(exc, "detail", None) or f"{type(exc).__name__}: {exc}"
            self.models.registry.write(record)
            self.publish(Event.RUN, record.to_json(predictions=False))
            raise
        self.publish(Event.RUN, record.to_json(predictions=False))
        return {"run": record.id, "accuracy": record.accuracy, "best": record.best, "epochs": record.epochs}

    def _context(self, record: RunRecord, params: TrainParams) -> TrainContext:
        bb = self.models.backbone()
        record.backbone, record.backbone_kind = bb.name, bb.kind
        pre = bb.preprocess
        record.preprocess = {"size": pre.size, "crop_pct": pre.crop_pct, "mean": list(pre.mean), "std": list(pre.std)}
        for name, value in family_defaults(bb.kind, bb.name).items():  # what the request left to the network
            if name not in params.model_fields_set or getattr(params, name) is None:
                setattr(params, name, value)
                record.params[name] = value
        self.models.registry.write(record)
        s = self.settings
        frr = s.unknown_false_rejection if s.unknown_detection else None
        return TrainContext(self.store, self.models.registry, bb, s.batch_size, s.max_image_pixels, frr)

    def _reporter(self, record: RunRecord, job: Job) -> Callable[[EpochRow], None]:
        """After every epoch: the run record, the job's progress, the live event for the Epochs table."""
        metric = "micro-F1" if record.label_mode == LabelMode.MULTI else "accuracy"

        def on_epoch(row: EpochRow) -> None:
            total = record.params["epochs" if record.mode == TrainMode.HEAD else "num_train_epochs"]
            record.epochs.append(row.to_json())
            best = max(record.epochs, key=lambda e: (e["accuracy"], -e["loss"]))
            record.best = {"epoch": best["epoch"], "accuracy": best["accuracy"]}
            job.result = {"run": record.id, "epochs": record.epochs, "best": record.best}
            job.progress(row.epoch, total, f"Epoch {row.epoch} of {total}: {metric} {row.accuracy:.3f}")
            self.publish(Event.RUN, record.to_json(predictions=False))

        return on_epoch


def train(
    ctx: TrainContext,
    split: Split,
    record: RunRecord,
    params: TrainParams,
    job: Job,
    on_epoch: Callable[[EpochRow], None],
) -> Predictor:
    """One training run, the same for the web job, the tests and the benchmarks."""
    started = time.perf_counter()
    # split and label maps
    record.classes = split.classes
    record.counts = {"train": len(split.train), "val": len(split.val)}
    record.group_sizes = _sizes(split)
    # features, fit
    if record.mode == TrainMode.HEAD:
        predictor, probs = _head(ctx, split, record, params, job, on_epoch)
    else:
        predictor, probs = finetune(ctx, split, params, record.id, job, on_epoch)
    # evaluate
    if split.multi:
        report, thresholds = evaluate.multi_label(split, probs)
        predictor.thresholds = thresholds
        assert split.layout is not None
        record.multi = {"layout": split.layout.to_json(), "thresholds": [float(t) for t in thresholds]}
        record.accuracy, record.micro_f1, record.macro_f1 = report["micro_f1"], report["micro_f1"], report["macro_f1"]
        record.per_group, record.attributes, record.predictions = report["per_group"], report["attributes"], []
        if predictor.head is not None:
            _save_head(ctx, record, predictor)
    else:
        metrics = evaluate.single_label(split, probs)
        record.accuracy, record.confusion = metrics["accuracy"], metrics["confusion"]
        record.per_group, record.predictions = metrics["per_group"], metrics["predictions"]
    # save
    record.state = RunState.DONE
    record.seconds = round(time.perf_counter() - started, 2)
    record.finished = time.strftime("%Y-%m-%dT%H:%M:%S")
    ctx.registry.write(record)
    return predictor


def _head(
    ctx: TrainContext, split: Split, record: RunRecord, params: TrainParams, job: Job, on_epoch: Any
) -> tuple[Predictor, Any]:
    train_views, record.embedded_images = head_mode.embed(ctx, split, params, job)
    head, probs = head_mode.train_head_mode(ctx, split, params, job, on_epoch, train_views)
    calibration = None
    if ctx.unknown_frr and not split.multi:
        calibration = head_mode.calibrate_unknown(ctx, split, params, job)
        calibration.save(ctx.registry.run_dir(record.id))
        record.calibration = calibration.summary()
    predictor = Predictor(
        record.id, "head", split.classes, ctx.backbone, head, params.tta_flip, calibration, split.layout
    )
    if not split.multi:
        _save_head(ctx, record, predictor)
    return predictor, probs


def _save_head(ctx: TrainContext, record: RunRecord, predictor: Predictor) -> None:
    assert predictor.head is not None
    bb = ctx.backbone
    extra: dict[str, Any] = {"classes": record.classes, "backbone": bb.name, "fingerprint": bb.fingerprint}
    if record.multi:
        extra["multi"] = record.multi
    predictor.head.save(ctx.registry.run_dir(record.id) / "head", extra)


def _sizes(split: Split) -> dict[str, int]:
    samples = split.train + split.val
    if split.multi:
        y = split.labels(samples)
        return {g: int(y[:, j].sum()) for j, g in enumerate(split.classes)}
    return dict(Counter(split.classes[s.label] for s in samples))
