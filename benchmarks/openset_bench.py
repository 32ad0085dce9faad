"""Open-set benchmark on real drawings: unknown detection, parent fallback, batch classification speed.

5 known categories trained (head mode, offline backbone), 3 other categories as unknowns. Prints the
AUROC of the unknown score, the false-rejection rate of known held-out images and the share of
unknowns caught at the default setting; on a two-level tree, how often the fallback names the right
parent when the leaf is wrong; batch classification throughput (the CLI's path) as a ratio of the
engine's in-process batched throughput on the same images.

    python -m benchmarks.openset_bench
"""

from __future__ import annotations

import json
import time

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from cvtools import imaging
from cvtools.__main__ import classify_files

from .common import Timer, build, category_files, cpu_note, environment, import_files, openclipart, split_files

KNOWN = ["animals/mammals", "food/fruit", "shapes/arrows", "transportation/roadsigns", "recreation/music"]
UNKNOWN = ["signs_and_symbols/flags", "office", "tools"]
TREE = [
    "food/fruit",
    "food/desserts",
    "transportation/roadsigns",
    "transportation/aiga-symbols",
    "recreation/music",
    "recreation/sports",
]


def verdicts(sv, files):  # type: ignore[no-untyped-def]
    out = []
    for f in files:
        img = imaging.load_rgb(f, max_pixels=50_000_000, min_side=448)
        ranked, _, v = sv.classifier.analyze_full(img)
        out.append((ranked, v))
    return out


def main() -> None:
    environment()
    root = openclipart()
    settings, sv = build()
    ds = sv.dataset
    held = {}
    for cat in KNOWN:
        train, test, _ = split_files(category_files(root, cat), 45, 20)
        import_files(ds, cat.replace("/", "-"), train)
        held[cat] = test
    unknown_files = [f for cat in UNKNOWN for f in split_files(category_files(root, cat), 0, 30)[1]]
    run = train(sv)
    sv.models.promote(run)
    known_files = [f for cat in KNOWN for f in held[cat]]
    kv = verdicts(sv, known_files)
    uv = verdicts(sv, unknown_files)
    scores = [v["score"] for _, v in kv] + [v["score"] for _, v in uv]
    labels = [0] * len(kv) + [1] * len(uv)
    auroc = roc_auc_score(labels, scores)
    frr = float(np.mean([v["unknown"] for _, v in kv]))
    caught = float(np.mean([v["unknown"] for _, v in uv]))
    known_acc = float(
        np.mean(
            [
                r[0][0] == cat.replace("/", "-")
                for (r, _), cat in zip(kv, [c for c in KNOWN for _ in held[c]], strict=True)
            ]
        )
    )

    # Batch classification: the CLI's path vs the engine's in-process batched throughput.
    files = known_files + unknown_files
    with Timer() as t_cli:
        classify_files(sv.classifier, files)
    p = sv.models.production()
    assert p is not None
    with Timer() as t_engine:
        for i in range(0, len(files), settings.batch_size):
            imgs = [
                imaging.load_rgb(f, max_pixels=50_000_000, min_side=448) for f in files[i : i + settings.batch_size]
            ]
            p.analyze(p.preprocess.batch(imgs))
    cli_rate, engine_rate = len(files) / t_cli.seconds, len(files) / t_engine.seconds
    sv.close()

    # Two-level tree: parents food / transportation / recreation, two leaves each.
    _, sv2 = build()
    ds2 = sv2.dataset
    held2 = {}
    for cat in TREE:
        train, test, _ = split_files(category_files(root, cat), 40, 20)
        top, leaf = cat.split("/")
        if top not in ds2.group_names():
            ds2.create_group(top)
        if cat not in ds2.group_names():
            ds2.create_group(leaf, top)
        import_files(ds2, cat, train)
        held2[cat] = test
    run2 = train(sv2)
    sv2.models.promote(run2)
    wrong = right_parent = fallbacks = 0
    for cat in TREE:
        for ranked, v in verdicts(sv2, held2[cat]):
            if v["fallback"]:
                fallbacks += 1
            if ranked[0][0] != cat:
                wrong += 1
                right_parent += v["fallback"] == cat.split("/")[0]
    sv2.close()

    print(
        f"# {cpu_note()}; offline backbone; torch threads {torch.get_num_threads()}; "
        f"{len(known_files)} known held-out, {len(unknown_files)} unknown images"
    )
    print(
        json.dumps(
            {
                "known_top1_accuracy": round(known_acc, 3),
                "unknown_auroc": round(float(auroc), 3),
                "known_false_rejection": round(frr, 3),
                "unknown_caught": round(caught, 3),
                "target_frr": settings.unknown_false_rejection,
                "tree": {
                    "leaf_wrong": wrong,
                    "fallback_names_right_parent": right_parent,
                    "fallbacks_total": fallbacks,
                    "share": round(right_parent / wrong, 3) if wrong else None,
                },
                "batch": {
                    "images": len(files),
                    "cli_path_img_s": round(cli_rate, 1),
                    "engine_in_process_img_s": round(engine_rate, 1),
                    "ratio": round(cli_rate / engine_rate, 3),
                },
                "finished": time.strftime("%H:%M:%S"),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
