"""Training benchmark on real drawings (openclipart), offline backbone, this machine's CPU.

Prints: held-out accuracy and wall time of head mode (click to done, first-time embedding included),
of a scikit-learn logistic-regression probe on the same embeddings (the baseline, same run), of
retraining after adding 5 images, of finetune mode (a few epochs), and the embedding pipeline's
throughput as a ratio of the backbone's raw forward throughput on the same batches.

    python -m benchmarks.train_bench [--per-class 45] [--test 25] [--finetune-epochs 2] [--skip-finetune]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from cvtools import imaging
from cvtools.vision.embeddings import Item, Pipeline
from cvtools.vision.head import evaluate_probs
from cvtools.vision.predictor import load_predictor

from .common import (
    CATEGORIES,
    Timer,
    announce_runtime,
    build,
    category_files,
    cpu_note,
    environment,
    import_files,
    openclipart,
    split_files,
    train,
)


def main() -> None:
    environment()
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-class", type=int, default=45)
    ap.add_argument("--test", type=int, default=25)
    ap.add_argument("--augment-views", type=int, default=None)
    ap.add_argument("--finetune-epochs", type=int, default=2)
    ap.add_argument("--skip-finetune", action="store_true")
    args = ap.parse_args()

    root = openclipart()
    settings, sv = build(load=False)
    ds = sv.dataset
    train_files, test_files, extra_files = {}, {}, {}
    for cat in CATEGORIES:
        files = category_files(root, cat)
        train_files[cat], test_files[cat], extra_files[cat] = split_files(files, args.per_class, args.test)
    for cat in CATEGORIES:
        import_files(ds, cat.replace("/", "-"), train_files[cat])
    n_train = sum(len(v) for v in train_files.values())
    classes = sorted(c.replace("/", "-") for c in CATEGORIES)
    print(
        f"# {cpu_note()}, torch threads {torch.get_num_threads()}; {len(CATEGORIES)} categories, "
        f"{n_train} dataset images, {sum(len(v) for v in test_files.values())} held out"
    )

    with Timer() as t_load:
        bb = sv.models.backbone()
    print(f"backbone {bb.name} loaded in {t_load.seconds:.1f} s")
    announce_runtime(bb)

    params = {"augment_views": args.augment_views} if args.augment_views is not None else {}
    with Timer() as t_head:
        run = train(sv, "head", **params)
    record = sv.models.registry.get(run)

    # Held-out embeddings (views 0 and 1) with the same backbone, through the same pipeline.
    held = [(Item(imaging.sha256_file(p), p), [0, 1]) for cat in CATEGORIES for p in test_files[cat]]
    y_held = np.array([classes.index(cat.replace("/", "-")) for cat in CATEGORIES for _ in test_files[cat]])
    pipe = Pipeline(
        pre=bb.preprocess, forward=bb.features, batch_size=settings.batch_size, max_pixels=settings.max_image_pixels
    )
    vecs: dict[tuple[str, int], np.ndarray] = {}
    for keys, out in pipe.run(held):
        vecs.update(zip(keys, out, strict=True))
    h0 = np.stack([vecs[(it.sha256, 0)] for it, _ in held])
    h1 = np.stack([vecs[(it.sha256, 1)] for it, _ in held])

    predictor = load_predictor(sv.models.registry.run_dir(run), bb)
    assert predictor.head is not None
    head_acc = float((evaluate_probs(predictor.head, [h0, h1]).argmax(1) == y_held).mean())
    head_acc_noflip = float((evaluate_probs(predictor.head, [h0]).argmax(1) == y_held).mean())

    # Baseline: logistic-regression probe on the same plain embeddings of the same training images.
    from sklearn.linear_model import LogisticRegression

    rows = ds.with_status("group")
    x_tr = sv.store.get(bb.fingerprint, [r.sha256 for r in rows], 0, bb.feature_dim)
    y_tr = np.array([classes.index(r.group) for r in rows])
    with Timer() as t_probe:
        probe = LogisticRegression(max_iter=3000, C=1.0).fit(x_tr, y_tr)
    probe_acc = float((probe.predict(h0) == y_held).mean())

    # Retraining after adding 5 images.
    added = sum(import_files(ds, cat.replace("/", "-"), extra_files[cat][:1]) for cat in CATEGORIES[:5])
    with Timer() as t_retrain:
        run2 = train(sv, "head", **params)
    rec2 = sv.models.registry.get(run2)

    # Embedding pipeline vs raw forward on the same batches.
    fresh = [(Item(imaging.sha256_file(p), p), [0]) for cat in CATEGORIES for p in extra_files[cat][1:40]][:192]
    batches = []
    with Timer() as t_pipe:
        for _, out in pipe.run(fresh):
            batches.append(out)
    n_pipe = sum(len(b) for b in batches)
    tensors = [
        bb.preprocess.batch(
            [
                imaging.load_rgb(it.path, max_pixels=settings.max_image_pixels)
                for it, _ in fresh[i : i + settings.batch_size]
            ]
        )
        for i in range(0, len(fresh), settings.batch_size)
    ]
    with Timer() as t_raw, torch.inference_mode():
        for t in tensors:
            bb.features(t)
    raw_rate, pipe_rate = n_pipe / t_raw.seconds, n_pipe / t_pipe.seconds

    results = {
        "head": {
            "held_out_accuracy": round(head_acc, 4),
            "held_out_accuracy_without_flip": round(head_acc_noflip, 4),
            "click_to_done_s": round(t_head.seconds, 1),
            "embedded_images": record.embedded_images,
            "augment_views": record.params["augment_views"],
            "val_accuracy": record.accuracy,
        },
        "probe": {"held_out_accuracy": round(probe_acc, 4), "fit_s": round(t_probe.seconds, 2)},
        "head_minus_probe_points": round(100 * (head_acc - probe_acc), 1),
        "retrain_after_adding": {
            "images_added": added,
            "seconds": round(t_retrain.seconds, 2),
            "embedded_images": rec2.embedded_images,
        },
        "pipeline": {
            "images": n_pipe,
            "pipeline_img_s": round(pipe_rate, 1),
            "raw_forward_img_s": round(raw_rate, 1),
            "ratio": round(pipe_rate / raw_rate, 3),
        },
    }

    if not args.skip_finetune:
        with Timer() as t_ft:
            run3 = train(sv, "finetune", num_train_epochs=args.finetune_epochs)
        rec3 = sv.models.registry.get(run3)
        ft = load_predictor(sv.models.registry.run_dir(run3), None)
        probs = []
        for cat in CATEGORIES:
            imgs = [imaging.load_rgb(p, max_pixels=settings.max_image_pixels) for p in test_files[cat]]
            for i in range(0, len(imgs), 16):
                probs.append(ft.probs(ft.preprocess.batch(imgs[i : i + 16])))
        ft_acc = float((np.concatenate(probs).argmax(1) == y_held).mean())
        results["finetune"] = {
            "epochs": args.finetune_epochs,
            "held_out_accuracy": round(ft_acc, 4),
            "wall_s": round(t_ft.seconds, 1),
            "val_accuracy": rec3.accuracy,
        }

    print(json.dumps(results, indent=2))
    sv.close()
    print(f"# finished {time.strftime('%Y-%m-%d %H:%M:%S')}")


if __name__ == "__main__":
    main()
