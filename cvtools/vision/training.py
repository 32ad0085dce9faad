"""Training: parameters, the stratified split, head mode on cached embeddings, full fine-tuning.

`train()` reads top to bottom: split -> label maps -> features -> fit -> evaluate -> save.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import BadInput
from ..jobs import Job
from .backbone import Backbone
from .embeddings import EmbeddingStore, Item, Pipeline
from .head import EpochRow, HeadParams, evaluate_probs, train_head
from .predictor import Predictor
from .registry import Registry

MIN_IMAGES = 2  # per group: one to learn from and one to check against

# name: (default, type, low, high, mode, one-line help)
PARAMS: dict[str, tuple[Any, type, float, float, str, str]] = {
    "epochs": (40, int, 1, 2000, "head", "Passes over the training images."),
    "head_learning_rate": (3e-3, float, 1e-6, 1.0, "head", "Step size of the head's optimiser."),
    "hidden_units": (0, int, 0, 4096, "head", "0: a linear head; more: a small neural network with that many units."),
    "augment_views": (4, int, 0, 16, "head", "Randomly cropped and mirrored copies of each training image."),
    "weight_decay": (1e-4, float, 0.0, 1.0, "head", "Pull towards small weights (against over-fitting)."),
    "tta_flip": (True, bool, 0, 1, "head", "Average every answer with that of the mirror image."),
    "use_all_images": (
        True,
        bool,
        0,
        1,
        "head",
        "After the check, train once more on all images (the check images too).",
    ),
    "learning_rate": (None, float, 1e-7, 1.0, "finetune", "Step size (default 3e-4 for ConvNeXt, else 5e-5)."),
    "per_device_train_batch_size": (16, int, 1, 1024, "finetune", "Images per training step."),
    "gradient_accumulation_steps": (4, int, 1, 1024, "finetune", "Steps added up before each weight update."),
    "per_device_eval_batch_size": (16, int, 1, 1024, "finetune", "Images per evaluation step."),
    "num_train_epochs": (10, int, 1, 1000, "finetune", "Passes over the training images."),
    "warmup_ratio": (0.1, float, 0.0, 0.9, "finetune", "Share of the steps spent raising the step size."),
    "logging_steps": (10, int, 1, 100000, "finetune", "Log the training loss every this many steps."),
}
MODES = ("auto", "head", "finetune")


def resolve_mode(mode: str) -> str:
    if mode not in MODES:
        raise BadInput(f"mode must be one of {', '.join(MODES)}")
    if mode == "auto":
        return "finetune" if torch.cuda.is_available() else "head"
    return mode


def default_params() -> dict[str, Any]:
    return {name: spec[0] for name, spec in PARAMS.items()}


def validate_params(params: dict[str, Any], backbone_name: str) -> dict[str, Any]:
    if not isinstance(params, dict):
        raise BadInput("params must be an object")
    out = default_params()
    for name, value in params.items():
        if name not in PARAMS:
            raise BadInput(f"unknown parameter {name!r}")
        default, typ, low, high, _, _ = PARAMS[name]
        if value is None and default is None:
            continue
        if typ is bool:
            if not isinstance(value, bool):
                raise BadInput(f"{name} must be true or false")
        elif typ is int:
            if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
                raise BadInput(f"{name} must be a whole number")
            value = int(value)
        else:
            if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
                raise BadInput(f"{name} must be a number")
            value = float(value)
        if typ is not bool and not low <= value <= high:
            raise BadInput(f"{name} must be between {low:g} and {high:g}")
        out[name] = value
    if out["learning_rate"] is None:
        out["learning_rate"] = 3e-4 if "convnext" in backbone_name.lower() else 5e-5
    return out


@dataclass
class Sample:
    id: str
    sha256: str
    path: Path
    label: Any  # the class index; multi-label fine-tuning: a multi-hot float32 vector


@dataclass
class Split:
    classes: list[str]
    train: list[Sample]
    val: list[Sample]
    left_out: dict[str, int] = field(default_factory=dict)


def split_dataset(rows: list[Any], path_of: Callable[[Any], Path], *, test_size: float, seed: int = 0) -> Split:
    """Stratified per group with a fixed seed; empty groups are left out, tiny ones refused."""
    by_group: dict[str, list[Any]] = {}
    for r in rows:
        by_group.setdefault(r["grp"], []).append(r)
    small = {g: len(v) for g, v in by_group.items() if len(v) < MIN_IMAGES}
    if small:
        g, n = next(iter(small.items()))
        raise BadInput(
            f"group {g!r} has only {n} image(s); each group needs at least {MIN_IMAGES} Group images "
            "(add images, or move them to another group)"
        )
    classes = sorted(by_group)
    if len(classes) < 2:
        raise BadInput(f"at least 2 groups need Group images to train (found {len(classes)})")
    train, val = [], []
    for label, g in enumerate(classes):
        # Ranked by a seeded hash of the image, not shuffled: adding an image moves at most one
        # other between the two sides, so cached augmentations stay useful.
        items = sorted(by_group[g], key=lambda r: hashlib.sha256(f"{seed}:{r['sha256']}".encode()).digest())
        n_val = min(len(items) - 1, max(1, round(len(items) * test_size)))
        for i, r in enumerate(items):
            (val if i < n_val else train).append(Sample(r["id"], r["sha256"], path_of(r), label))
    return Split(classes, train, val)


def embed_missing(
    store: EmbeddingStore,
    backbone: Backbone,
    work: list[tuple[Item, list[int]]],
    *,
    batch_size: int,
    max_pixels: int,
    job: Job | None,
    label: str = "Embedding",
) -> tuple[int, list[str]]:
    """Compute and cache the views not yet in the store. Returns (images computed, decode errors)."""
    fp = backbone.fingerprint
    # One look-up per distinct set of views, not one per image.
    by_views: dict[tuple[int, ...], list[Item]] = {}
    seen: set[str] = set()
    for item, views in work:
        if item.sha256 not in seen:
            seen.add(item.sha256)
            by_views.setdefault(tuple(views), []).append(item)
    needed: list[tuple[Item, list[int]]] = []
    for views, items in by_views.items():
        missing = store.missing(fp, [i.sha256 for i in items], list(views))
        for item in items:
            miss = sorted(v for v in views if (item.sha256, v) in missing)
            if miss:
                needed.append((item, miss))
    if not needed:
        return 0, []
    pipe = Pipeline(pre=backbone.preprocess, forward=backbone.features, batch_size=batch_size, max_pixels=max_pixels)

    def progress(done: int, total: int) -> None:
        if job:
            job.progress(done, total, f"{label}: {done} of {total} images")

    for keys, vecs in pipe.run(
        needed, progress=progress, cancelled=(lambda: job.cancelled) if job else (lambda: False)
    ):
        store.put(fp, [(sha, view, vec) for (sha, view), vec in zip(keys, vecs, strict=True)])
    if job:
        job.check()
    return len(needed), pipe.errors


def evaluate(classes: list[str], val: list[Sample], probs: np.ndarray) -> dict[str, Any]:
    y = np.array([s.label for s in val])
    pred = probs.argmax(1)
    n = len(classes)
    confusion = np.zeros((n, n), dtype=int)
    for t, p in zip(y, pred, strict=True):
        confusion[t, p] += 1
    per_group = {}
    for i, g in enumerate(classes):
        tp = int(confusion[i, i])
        support = int(confusion[i].sum())
        predicted = int(confusion[:, i].sum())
        per_group[g] = {
            "precision": round(tp / predicted, 4) if predicted else 0.0,
            "recall": round(tp / support, 4) if support else 0.0,
            "support": support,
        }
    predictions = [
        {
            "id": s.id,
            "group": classes[s.label],
            "predicted": classes[int(p)],
            "probability": round(float(probs[i, p]), 4),
        }
        for i, (s, p) in enumerate(zip(val, pred, strict=True))
    ]
    return {
        "accuracy": round(float((pred == y).mean()), 4),
        "confusion": confusion.tolist(),
        "per_group": per_group,
        "predictions": predictions,
    }


@dataclass
class TrainContext:
    """What a training run needs from the engine, passed explicitly so tests can build it."""

    store: EmbeddingStore
    registry: Registry
    backbone: Backbone
    batch_size: int
    max_pixels: int
    unknown_frr: float | None = None  # calibrate unknown detection for this false-rejection rate


def train_head_mode(
    ctx: TrainContext,
    split: Split,
    params: dict[str, Any],
    record: dict[str, Any],
    job: Job,
    on_epoch: Callable[[EpochRow], None],
) -> tuple[Predictor, np.ndarray]:
    bb = ctx.backbone
    k = int(params["augment_views"])
    train_views = [0, 1, *range(2, 2 + k)]
    # features: cached embeddings, only the missing ones computed
    work = [(Item(s.sha256, s.path), train_views) for s in split.train] + [
        (Item(s.sha256, s.path), [0, 1]) for s in split.val
    ]
    computed, errors = embed_missing(ctx.store, bb, work, batch_size=ctx.batch_size, max_pixels=ctx.max_pixels, job=job)
    record["embedded_images"] = computed
    if errors:
        raise BadInput(f"{len(errors)} image(s) could not be read: {errors[0]}")
    tr_sha = [s.sha256 for s in split.train]
    x_train = np.concatenate([ctx.store.get(bb.fingerprint, tr_sha, v, bb.feature_dim) for v in train_views])
    y_train = np.tile(np.array([s.label for s in split.train]), len(train_views))
    va_sha = [s.sha256 for s in split.val]
    val_views = [
        ctx.store.get(bb.fingerprint, va_sha, v, bb.feature_dim) for v in ([0, 1] if params["tta_flip"] else [0])
    ]
    y_val = np.array([s.label for s in split.val])
    # fit
    job.progress(0, int(params["epochs"]), "Training the head")
    hp = HeadParams(
        epochs=int(params["epochs"]),
        head_learning_rate=float(params["head_learning_rate"]),
        hidden_units=int(params["hidden_units"]),
        weight_decay=float(params["weight_decay"]),
    )
    head, _, _ = train_head(
        x_train,
        y_train,
        val_views,
        y_val,
        n_classes=len(split.classes),
        params=hp,
        on_epoch=on_epoch,
        cancelled=lambda: job.cancelled,
    )
    job.check()
    probs = evaluate_probs(head, val_views)  # the honest estimate, from images the head did not see
    if params["use_all_images"]:
        # refit on every image with the same schedule (the check images' plain views join in)
        x_all = np.concatenate([x_train, *val_views])
        y_all = np.concatenate([y_train, *[y_val] * len(val_views)])
        job.progress(hp.epochs, hp.epochs, "Training on all images")
        head, _, _ = train_head(
            x_all,
            y_all,
            [],
            np.array([], dtype=int),
            n_classes=len(split.classes),
            params=hp,
            cancelled=lambda: job.cancelled,
        )
        job.check()
    # calibrate "unknown": out-of-fold probabilities and nearest-neighbour distances of every image
    calibration = None
    if ctx.unknown_frr:
        from . import anomalies
        from .openset import calibrate

        job.progress(hp.epochs, hp.epochs, "Calibrating unknown detection")
        samples = split.train + split.val
        shas = [s.sha256 for s in samples]
        views = [ctx.store.get(bb.fingerprint, shas, v, bb.feature_dim) for v in (0, 1)]
        labels = np.array([s.label for s in samples])
        oof = anomalies.out_of_fold_probs(
            views, labels, shas, len(split.classes), params=hp, cancelled=lambda: job.cancelled
        )
        job.check()
        calibration = calibrate(
            oof, labels, split.classes, views[0], [s.id for s in samples], target_frr=ctx.unknown_frr
        )
        calibration.save(ctx.registry.run_dir(record["id"]))
        record["calibration"] = calibration.summary()
    # save
    head.save(
        ctx.registry.run_dir(record["id"]) / "head",
        {"classes": split.classes, "backbone": bb.name, "fingerprint": bb.fingerprint},
    )
    predictor = Predictor(record["id"], "head", split.classes, bb, head, bool(params["tta_flip"]), calibration)
    return predictor, probs


def epoch_reporter(
    record: dict[str, Any], job: Job, total: int, publish: Callable[[dict[str, Any]], None], metric: str
) -> Callable[[EpochRow], None]:
    """What every training does after an epoch: the run record, the job's progress, the live event."""

    def on_epoch(row: EpochRow) -> None:
        record["epochs"].append(row.to_json())
        best = max(record["epochs"], key=lambda e: (e["accuracy"], -e["loss"]))
        record["best"] = {"epoch": best["epoch"], "accuracy": best["accuracy"]}
        job.result = {"run": record["id"], "epochs": record["epochs"], "best": record["best"]}
        job.progress(row.epoch, total, f"Epoch {row.epoch} of {total}: {metric} {row.accuracy:.3f}")
        publish(record)

    return on_epoch


def train(
    ctx: TrainContext,
    rows: list[Any],
    path_of: Callable[[Any], Path],
    *,
    mode: str,
    params: dict[str, Any],
    test_size: float,
    job: Job,
    record: dict[str, Any],
    publish: Callable[[dict[str, Any]], None],
) -> tuple[dict[str, Any], Predictor]:
    started = time.perf_counter()
    # split and label maps
    split = split_dataset(rows, path_of, test_size=test_size)
    record.update(
        classes=split.classes,
        counts={"train": len(split.train), "val": len(split.val)},
        group_sizes=dict(Counter(split.classes[s.label] for s in split.train + split.val)),
    )

    total = int(params["epochs"] if mode == "head" else params["num_train_epochs"])
    on_epoch = epoch_reporter(record, job, total, publish, "accuracy")

    # features, fit
    if mode == "head":
        predictor, probs = train_head_mode(ctx, split, params, record, job, on_epoch)
    else:
        from .finetune import finetune

        predictor, probs = finetune(ctx, split, params, record, job, on_epoch)
    # evaluate
    metrics = evaluate(split.classes, split.val, probs)
    record.update(
        state="done",
        accuracy=metrics["accuracy"],
        confusion=metrics["confusion"],
        per_group=metrics["per_group"],
        predictions=metrics["predictions"],
        seconds=round(time.perf_counter() - started, 2),
        finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    ctx.registry.write(record)
    return record, predictor


def train_multi(
    ctx: TrainContext,
    rows: list[Any],
    path_of: Callable[[Any], Path],
    exclusive_roots: list[str],
    *,
    params: dict[str, Any],
    test_size: float,
    job: Job,
    record: dict[str, Any],
    publish: Callable[[dict[str, Any]], None],
    mode: str = "head",
) -> tuple[dict[str, Any], Predictor]:
    """A multi-label dataset: one sample per image content (sha256) with the set of groups it is a
    Group member of. Head mode: per-attribute softmax heads plus one sigmoid per label on cached
    embeddings. Finetune mode: the whole network with binary cross-entropy (train_multi_finetune)."""
    from . import multilabel as ml

    started = time.perf_counter()
    first: dict[str, Any] = {}
    sets: dict[str, set[str]] = {}
    for r in rows:
        first.setdefault(r["sha256"], r)
        sets.setdefault(r["sha256"], set()).add(r["grp"])
    layout = ml.Layout.build(sorted({g for s in sets.values() for g in s}), exclusive_roots)
    if len(layout.outputs) < 2:
        raise BadInput(f"at least 2 groups need Group images to train (found {len(layout.outputs)})")
    shas = sorted(sets)
    y = np.array([[g in sets[s] for g in layout.outputs] for s in shas], dtype=bool)
    is_val = ml.split_multi(shas, y, test_size=test_size)
    if not is_val.any():
        raise BadInput("too few images to keep some aside for checking (each label combination needs 2 or more)")
    if mode == "finetune":
        return train_multi_finetune(ctx, layout, shas, y, is_val, first, path_of, params, job, record, publish, started)
    bb = ctx.backbone
    k = int(params["augment_views"])
    train_views = [0, 1, *range(2, 2 + k)]
    work = [(Item(s, path_of(first[s])), train_views if not v else [0, 1]) for s, v in zip(shas, is_val, strict=True)]
    computed, errors = embed_missing(ctx.store, bb, work, batch_size=ctx.batch_size, max_pixels=ctx.max_pixels, job=job)
    if errors:
        raise BadInput(f"{len(errors)} image(s) could not be read: {errors[0]}")
    tr = [s for s, v in zip(shas, is_val, strict=True) if not v]
    va = [s for s, v in zip(shas, is_val, strict=True) if v]
    x_train = np.concatenate([ctx.store.get(bb.fingerprint, tr, v, bb.feature_dim) for v in train_views])
    y_train = np.tile(y[~is_val], (len(train_views), 1))
    val_views = [ctx.store.get(bb.fingerprint, va, v, bb.feature_dim) for v in ([0, 1] if params["tta_flip"] else [0])]
    record.update(
        classes=layout.outputs,
        label_mode="multi",
        counts={"train": len(tr), "val": len(va)},
        group_sizes={g: int(y[:, j].sum()) for j, g in enumerate(layout.outputs)},
        embedded_images=computed,
    )
    hp = HeadParams(
        epochs=int(params["epochs"]),
        head_learning_rate=float(params["head_learning_rate"]),
        hidden_units=int(params["hidden_units"]),
        weight_decay=float(params["weight_decay"]),
    )

    on_epoch = epoch_reporter(record, job, hp.epochs, publish, "micro-F1")

    job.progress(0, hp.epochs, "Training the heads")
    head, _ = ml.train_multi_head(
        x_train,
        y_train,
        val_views,
        y[is_val],
        layout=layout,
        params=hp,
        on_epoch=on_epoch,
        cancelled=lambda: job.cancelled,
    )
    job.check()
    probs = ml.evaluate_multi(head, val_views, layout)
    thresholds = ml.calibrate_thresholds(probs, y[is_val])
    metrics = ml.report(probs, y[is_val], layout, thresholds)
    if params["use_all_images"]:
        job.progress(hp.epochs, hp.epochs, "Training on all images")
        x_all = np.concatenate([x_train, *val_views])
        y_all = np.concatenate([y_train, *[y[is_val]] * len(val_views)])
        head, _ = ml.train_multi_head(
            x_all,
            y_all,
            [],
            np.zeros((0, len(layout.outputs))),
            layout=layout,
            params=hp,
            cancelled=lambda: job.cancelled,
        )
        job.check()
    multi = {"layout": layout.to_json(), "thresholds": [float(t) for t in thresholds]}
    head.save(
        ctx.registry.run_dir(record["id"]) / "head",
        {"classes": layout.outputs, "backbone": bb.name, "fingerprint": bb.fingerprint, "multi": multi},
    )
    finish_multi(ctx, record, multi, metrics, started)
    predictor = Predictor(
        record["id"], "head", layout.outputs, bb, head, bool(params["tta_flip"]), None, layout, thresholds
    )
    return record, predictor


def train_multi_finetune(
    ctx: TrainContext,
    layout: Any,
    shas: list[str],
    y: np.ndarray,
    is_val: np.ndarray,
    first: dict[str, Any],
    path_of: Callable[[Any], Path],
    params: dict[str, Any],
    job: Job,
    record: dict[str, Any],
    publish: Callable[[dict[str, Any]], None],
    started: float,
) -> tuple[dict[str, Any], Predictor]:
    from . import multilabel as ml
    from .finetune import finetune

    samples = [Sample(first[s]["id"], s, path_of(first[s]), y[i].astype(np.float32)) for i, s in enumerate(shas)]
    split = Split(
        layout.outputs,
        [x for x, v in zip(samples, is_val, strict=True) if not v],
        [x for x, v in zip(samples, is_val, strict=True) if v],
    )
    record.update(
        classes=layout.outputs,
        label_mode="multi",
        counts={"train": len(split.train), "val": len(split.val)},
        group_sizes={g: int(y[:, j].sum()) for j, g in enumerate(layout.outputs)},
    )
    total = int(params["num_train_epochs"])

    on_epoch = epoch_reporter(record, job, total, publish, "micro-F1")

    predictor, probs = finetune(ctx, split, params, record, job, on_epoch, layout=layout)
    thresholds = ml.calibrate_thresholds(probs, y[is_val])
    predictor.thresholds = thresholds
    metrics = ml.report(probs, y[is_val], layout, thresholds)
    multi = {"layout": layout.to_json(), "thresholds": [float(t) for t in thresholds]}
    finish_multi(ctx, record, multi, metrics, started)
    return record, predictor


def finish_multi(
    ctx: TrainContext, record: dict[str, Any], multi: dict[str, Any], metrics: dict[str, Any], started: float
) -> None:
    """A multi-label run is done: its layout, thresholds and report in the record."""
    record.update(
        state="done",
        multi=multi,
        accuracy=metrics["micro_f1"],
        micro_f1=metrics["micro_f1"],
        macro_f1=metrics["macro_f1"],
        per_group=metrics["per_group"],
        attributes=metrics["attributes"],
        confusion=None,
        predictions=[],
        seconds=round(time.perf_counter() - started, 2),
        finished=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    ctx.registry.write(record)
