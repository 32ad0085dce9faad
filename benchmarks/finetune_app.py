"""The app itself on finetune_bench's exported draws: head mode and fine-tuning trained through the run
service with every default as shipped (and, with "original", fine-tuning with the original CV Tools
parameters), scored on the same held-out images. Needs every requirement; runs on a GPU machine too.

    python -m benchmarks.finetune_app --data .ftdata --half dev [--modes head,finetune,original] [--family glyphs]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .common import environment
from .finetune_bench import half, table

ORIGINAL = {"learning_rate": 5e-5, "num_train_epochs": 10, "gradient_accumulation_steps": 4}


def app_one(run: dict, data: Path, modes: list[str]) -> dict[str, float]:
    from cvtools.vision.predictor import load_predictor

    from .common import build, import_files, train

    _, sv = build()
    for label, cat in enumerate(run["classes"]):
        import_files(sv.dataset, cat, [data / "img" / n for n, lab in run["train"] if lab == label])
    test = [Image.open(data / "img" / n).convert("RGB") for n, _ in run["test"]]
    y_te = np.array([lab for _, lab in run["test"]])
    out: dict[str, float] = {}
    for mode in modes:
        started = time.perf_counter()
        run_id = train(sv, "head" if mode == "head" else "finetune", **(ORIGINAL if mode == "original" else {}))
        out[f"app {mode} | seconds"] = round(time.perf_counter() - started, 1)
        p = load_predictor(sv.models.registry.run_dir(run_id), sv.models.backbone())
        pre = p.backbone.preprocess
        probs = np.concatenate(
            [
                p.probs(torch.from_numpy(np.stack([pre.array(pre.center(im)) for im in test[i : i + 32]])))
                for i in range(0, len(test), 32)
            ]
        )
        classes = sv.models.registry.get(run_id).classes
        assert classes == run["classes"], classes
        out[f"app {mode}"] = float((probs.argmax(1) == y_te).mean())
    sv.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path(".ftdata"))
    ap.add_argument("--half", choices=("dev", "report"), default="dev")
    ap.add_argument("--modes", default="head,finetune,original")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--family", default="", help="only this family's runs")
    args = ap.parse_args()
    environment()
    modes = args.modes.split(",")
    results = half(args.data, args.half, lambda run: app_one(run, args.data, modes), args.limit, args.family)
    table(results, probe_key=None)


if __name__ == "__main__":
    main()
