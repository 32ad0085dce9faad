"""Multi-label benchmark on real drawings: head mode vs a scikit-learn one-vs-rest logistic probe.

A two-attribute dataset from openclipart: the category (an exclusive attribute, one softmax) and
two yes/no properties derived from the pixels — "colourful" (mean saturation of the inked pixels
above the median) and "dark" (share of near-black ink above the median). Both methods get the same
cached embeddings (image and mirror image) and the same split; micro and macro F1 on the check
images at threshold 0.5, and with per-group thresholds chosen on those same check images (optimistic
for both alike). Also: switching the dataset to multi mode and back loses nothing.

    python -m benchmarks.multilabel_bench
"""

from __future__ import annotations

import json
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier

from cvtools import imaging
from cvtools.schemas import TrainParams
from cvtools.vision import multilabel as ml
from cvtools.vision.embeddings import Item, embed_missing
from cvtools.vision.training.head_mode import head_params
from cvtools.vision.training.splits import mask_by_combination

from .common import (
    CATEGORIES,
    Timer,
    build,
    category_files,
    cpu_note,
    environment,
    import_files,
    openclipart,
    split_files,
    train,
)

PER_CATEGORY = 50


def properties(path) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    img = imaging.load_rgb(path, max_pixels=50_000_000, min_side=256)
    img.thumbnail((256, 256))
    hsv = np.asarray(img.convert("HSV"), dtype=np.float32) / 255
    rgb = np.asarray(img, dtype=np.float32) / 255
    ink = rgb.min(2) < 0.9  # not the white page
    if not ink.any():
        return 0.0, 0.0
    return float(hsv[..., 1][ink].mean()), float((hsv[..., 2][ink] < 0.25).mean())


def main() -> None:
    environment()
    root = openclipart()
    settings, sv = build()
    ds = sv.dataset
    ds.set_label_mode("multi")
    ds.create_group("category")
    ds.set_exclusive("category", True)
    files: dict[str, list] = {}
    for cat in CATEGORIES[:5]:
        leaf = cat.replace("/", "-")
        files[leaf] = split_files(category_files(root, cat), PER_CATEGORY, 0)[0]
        ds.create_group(leaf, "category")
        import_files(ds, f"category/{leaf}", files[leaf])
    rows = ds.with_status("group")
    props = {r.sha256: properties(r.path) for r in rows}
    sat_cut = float(np.median([p[0] for p in props.values()]))
    dark_cut = float(np.median([p[1] for p in props.values()]))
    for label, k, cut in (("colourful", 0, sat_cut), ("dark", 1, dark_cut)):
        ds.create_group(label)
        ids = [r.id for r in rows if props[r.sha256][k] > cut]
        ds.add_to_group(ids, label)
    # switching to single is refused while images are in several groups; a copy without them round-trips
    refused = False
    try:
        ds.set_label_mode("single")
    except Exception:
        refused = True

    with Timer() as t_train:
        run = train(sv)
    sv.models.promote(run)
    record = sv.models.registry.get(run)
    p = sv.models.production()
    assert p is not None and p.layout is not None
    layout = p.layout

    # the same split and embeddings for both
    group_rows = ds.with_status("group")
    sets: dict[str, set[str]] = {}
    first: dict[str, object] = {}
    for r in group_rows:
        sets.setdefault(r.sha256, set()).add(r.group)
        first.setdefault(r.sha256, r)
    shas = sorted(sets)
    y = np.array([[g in sets[s] for g in layout.outputs] for s in shas], dtype=bool)
    fp, dim = p.backbone.fingerprint, p.backbone.feature_dim
    hp = head_params(TrainParams.model_validate(record.params, strict=False))  # the head the run trained
    k = int(record.params["augment_views"])
    train_views = [0, 1, *range(2, 2 + k)]
    # every image's augmented views, so that any split's training side has them (as a run would)
    embed_missing(
        sv.store,
        p.backbone,
        [(Item(s, first[s].path), train_views) for s in shas],
        batch_size=settings.batch_size,
        max_pixels=settings.max_image_pixels,
        job=None,
    )
    views = [sv.store.get(fp, shas, v, dim) for v in (0, 1)]

    def scores(probs: np.ndarray, truth: np.ndarray, exclusive: bool) -> dict[str, float]:
        out = {}
        for name, th in (
            ("at_0.5", np.full(y.shape[1], 0.5, np.float32)),
            ("tuned", ml.calibrate_thresholds(probs, truth)),
        ):
            lay = layout if exclusive else ml.Layout(layout.outputs, {})
            micro, macro = ml.micro_macro_f1(ml.predict_sets(probs, lay, th), truth)
            out[f"micro_f1_{name}"], out[f"macro_f1_{name}"] = round(micro, 4), round(macro, 4)
        return out

    # Three splits (seed 0 is the run's own): the head trained as a run trains it (the run's check model
    # is not kept: it is refit on all images), the probe on the plain and mirrored views of the same side.
    per_seed = []
    for seed in range(3):
        val = mask_by_combination(shas, y, test_size=settings.test_size, seed=seed)
        tr = [s for s, v in zip(shas, val, strict=True) if not v]
        x_train = np.concatenate([sv.store.get(fp, tr, v, dim) for v in train_views])
        with Timer() as t_head:
            head, _ = ml.train_multi_head(
                x_train,
                np.tile(y[~val], (len(train_views), 1)),
                [],
                np.zeros((0, y.shape[1])),
                layout=layout,
                params=hp,
            )
        head_probs = ml.evaluate_multi(head, [v[val] for v in views], layout)
        with Timer() as t_probe:
            probe = OneVsRestClassifier(LogisticRegression(max_iter=3000, C=1.0))
            probe.fit(np.concatenate([v[~val] for v in views]), np.tile(y[~val], (2, 1)).astype(int))
        probe_probs = np.mean([probe.predict_proba(v[val]) for v in views], axis=0)
        per_seed.append(
            {
                "seed": seed,
                "held_out": int(val.sum()),
                "head": {**scores(head_probs, y[val], True), "fit_s": round(t_head.seconds, 2)},
                "probe": {**scores(probe_probs, y[val], False), "fit_s": round(t_probe.seconds, 2)},
            }
        )

    def mean(who: str, key: str) -> float:
        return round(float(np.mean([r[who][key] for r in per_seed])), 4)

    keys = ["micro_f1_at_0.5", "macro_f1_at_0.5", "micro_f1_tuned", "macro_f1_tuned"]

    # round trip of the mode on a dataset without multi memberships
    _, sv2 = build()
    ds2 = sv2.dataset
    import_files(ds2, "a", files[next(iter(files))][:10])
    before = sorted((r["id"], r["grp"], r["status"], r["sha256"]) for r in ds2.catalog.all_images())
    ds2.set_label_mode("multi")
    ds2.set_label_mode("single")
    after = sorted((r["id"], r["grp"], r["status"], r["sha256"]) for r in ds2.catalog.all_images())
    sv2.close()

    print(f"# {cpu_note()}; offline backbone; {len(shas)} images; outputs {layout.outputs}")
    print(
        json.dumps(
            {
                "label_shares": {g: round(float(y[:, j].mean()), 3) for j, g in enumerate(layout.outputs)},
                "mean_of_3_splits": {
                    "head": {k: mean("head", k) for k in keys},
                    "probe_one_vs_rest_logistic": {k: mean("probe", k) for k in keys},
                },
                "per_split": per_seed,
                "run": {
                    "micro_f1": record.micro_f1,
                    "macro_f1": record.macro_f1,
                    "category_accuracy": (record.attributes or {}).get("category", {}).get("accuracy"),
                    "click_to_done_s": round(t_train.seconds, 1),
                },
                "mode_switch": {"single_refused_while_multi": refused, "round_trip_unchanged": before == after},
                "finished": time.strftime("%H:%M:%S"),
            },
            indent=2,
        )
    )
    sv.close()


if __name__ == "__main__":
    main()
