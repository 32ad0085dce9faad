"""Head mode: a small head on the frozen backbone's cached embeddings, trained in seconds. One path for
both objectives: one softmax over the groups, or the multi-label layout (attributes and labels)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ...errors import BadInput
from ...jobs import Job
from ...schemas import TrainParams
from .. import multilabel as ml
from ..anomalies.folds import out_of_fold_probs
from ..calibration import calibrate
from ..embeddings import Item, embed_missing
from ..head import EpochRow, HeadModel, HeadParams, evaluate_probs, train_head
from ..openset import Calibration
from .types import Sample, Split, TrainContext


@dataclass
class Objective:
    """What the head learns: a softmax over `classes`, or (with a layout) the multi-label outputs."""

    classes: list[str]
    layout: ml.Layout | None = None

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        val_views: list[np.ndarray],
        y_val: np.ndarray,
        params: HeadParams,
        *,
        on_epoch: Callable[[EpochRow], None] | None = None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> HeadModel:
        if self.layout is not None:
            return ml.train_multi_head(
                x,
                y,
                val_views,
                y_val,
                layout=self.layout,
                params=params,
                on_epoch=on_epoch,
                cancelled=cancelled,
            )[0]
        return train_head(
            x,
            y,
            val_views,
            y_val,
            n_classes=len(self.classes),
            params=params,
            on_epoch=on_epoch,
            cancelled=cancelled,
        )[0]

    def probs(self, head: HeadModel, views: list[np.ndarray]) -> np.ndarray:
        return ml.evaluate_multi(head, views, self.layout) if self.layout else evaluate_probs(head, views)

    def no_labels(self) -> np.ndarray:
        return np.zeros((0, len(self.classes))) if self.layout else np.array([], dtype=int)


def head_params(params: TrainParams) -> HeadParams:
    return HeadParams(
        epochs=params.epochs,
        head_learning_rate=params.head_learning_rate,
        hidden_units=params.hidden_units,
        weight_decay=params.weight_decay,
        seed=params.seed,
    )


def _stack(views: list[np.ndarray], y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of every view, each with its sample's label(s)."""
    reps = (len(views), 1) if y.ndim == 2 else len(views)
    return np.concatenate(views), np.tile(y, reps)


def embed(ctx: TrainContext, split: Split, params: TrainParams, job: Job) -> tuple[list[int], int]:
    """Cache every view the run needs (only the missing ones are computed): the plain and mirror views of
    every image, and `augment_views` random crops of each training image. Returns the training views."""
    train_views = [0, 1, *range(2, 2 + params.augment_views)]
    work = [(Item(s.sha256, s.path), train_views) for s in split.train]
    work += [(Item(s.sha256, s.path), [0, 1]) for s in split.val]
    computed, errors = embed_missing(
        ctx.store, ctx.backbone, work, batch_size=ctx.batch_size, max_pixels=ctx.max_pixels, job=job
    )
    if errors:
        raise BadInput(f"{len(errors)} image(s) could not be read: {errors[0]}")
    return train_views, computed


def views_of(ctx: TrainContext, samples: list[Sample], views: list[int]) -> list[np.ndarray]:
    bb = ctx.backbone
    shas = [s.sha256 for s in samples]
    return [ctx.store.get(bb.fingerprint, shas, v, bb.feature_dim) for v in views]


def train_head_mode(
    ctx: TrainContext,
    split: Split,
    params: TrainParams,
    job: Job,
    on_epoch: Callable[[EpochRow], None],
    train_views: list[int],
) -> tuple[HeadModel, np.ndarray]:
    """Fit on the training images (the epochs reported live), measure on the check images, then (with
    use_all_images) fit once more on every image. Returns the head and the check images' probabilities."""
    objective = Objective(split.classes, split.layout)
    hp = head_params(params)
    x, y = _stack(views_of(ctx, split.train, train_views), split.labels(split.train))
    val_views = views_of(ctx, split.val, [0, 1] if params.tta_flip else [0])
    y_val = split.labels(split.val)
    job.progress(0, hp.epochs, "Training the head")
    head = objective.fit(x, y, val_views, y_val, hp, on_epoch=on_epoch, cancelled=lambda: job.cancelled)
    job.check()
    probs = objective.probs(head, val_views)  # the honest estimate, from images the head did not see
    if params.use_all_images:
        job.progress(hp.epochs, hp.epochs, "Training on all images")
        x_all, y_all = _stack(val_views, y_val)
        x, y = np.concatenate([x, x_all]), np.concatenate([y, y_all])
        head = objective.fit(x, y, [], objective.no_labels(), hp, cancelled=lambda: job.cancelled)
        job.check()
    return head, probs


def calibrate_unknown(ctx: TrainContext, split: Split, params: TrainParams, job: Job) -> Calibration:
    """Single-label: what "unknown" means for this dataset, from out-of-fold probabilities and
    nearest-neighbour distances of every image (each judged by a head that did not learn from it)."""
    assert ctx.unknown_frr is not None
    job.progress(params.epochs, params.epochs, "Calibrating unknown detection")
    samples = split.train + split.val
    views = views_of(ctx, samples, [0, 1])
    labels = split.labels(samples)
    shas = [s.sha256 for s in samples]
    oof = out_of_fold_probs(
        views, labels, shas, len(split.classes), params=head_params(params), cancelled=lambda: job.cancelled
    )
    job.check()
    return calibrate(oof, labels, split.classes, views[0], [s.id for s in samples], target_frr=ctx.unknown_frr)
