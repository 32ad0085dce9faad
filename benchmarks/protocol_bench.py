"""Accuracy and unknowns under the dev/report protocol. Each seed draws known categories from one half (dev or
report) of a family, trains head mode through the app (every default and the calibration as shipped)
on their training images, and scores held-out known images, near unknowns (other categories of the
same half, which no group holds) and far unknowns (the same half of another family).

Detectors compared on the same features (OpenOOD v1.5's post-hoc methods for frozen features): maximum
probability, energy, k-NN distance on normalised features (k = 1 and 5), relative Mahalanobis (on 64
principal components), GEN, NNGuide, and the shipped rank mix (`openset.Calibration`); beside it the
candidates dev chose among: the weights of the distance's rank, the distance to the nearest training
image of the answered group, ViM's residual, and each group's own residual (the smallest over the
groups), alone and in two- and three-way rank mixes (docs/BENCHMARKS.md says which rule chose what).
AUROC by scikit-learn; for the shipped calibrated verdict also the share of known images called unknown
and of unknowns caught. On the same run, the accuracy levers of benchmarks/levers.py (head,
cross-validated probe, cache blends). With --measured-scale, also the held-out correction measured on
each run's own training images (benchmarks/heldout_scale.py; tried on dev, not shipped). Choices are
read on `dev` only.

    python -m benchmarks.protocol_bench [--half dev|report|both] [--train 30 --test 15] [--measured-scale]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA
from sklearn.metrics import roc_auc_score

from cvtools import imaging
from cvtools.schemas import TrainParams
from cvtools.settings import Settings
from cvtools.vision.calibration import (
    DIMS,
    GROUP_DIMS,
    group_residuals_with_reference,
    residual_with_reference,
)
from cvtools.vision.embeddings import Item, Pipeline
from cvtools.vision.predictor import load_predictor
from cvtools.vision.residual import GroupResiduals, Residual
from cvtools.vision.training.head_mode import head_params
from cvtools.vision.vectors import power_unit, unit

from .common import build, environment, import_files, train
from .families import FAMILIES, Family
from .heldout_scale import held_out_p_values, scale_from
from .levers import accuracy

SEEDS = (0, 1, 2)
KNOWN = 6
NEAR_CATS = 4
N_UNKNOWN = 60
MAHA_DIMS = 64  # principal components kept for the Mahalanobis detector
DISTANCE_WEIGHTS = (0.25, 0.5, 0.65, 0.8)  # candidates for openset.DISTANCE_WEIGHT (1: k-NN, k=1)
SCALES = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0)  # candidates for openset.HELD_OUT_SCALE
RESIDUAL_DIMS = (8, 16, 32, 64)
CLASS_DIMS = (4, 8, 16)  # principal directions per group for the class-conditional residual
GEN_GAMMA, GEN_M = 0.1, 100  # GEN's exponent and the number of top probabilities it sums (the paper's)
NNGUIDE_K = 10  # NNGuide's neighbours  # principal components for ViM's residual (the rest is the residual)


def draw(family: Family, half: str, seed: int, n_train: int, n_test: int) -> tuple[dict, list[Path]]:
    """Known groups (training and held-out files) and near-unknown files, from one half only."""
    rng = random.Random(f"{family.name}-{half}-{seed}")
    cats = sorted(getattr(family, half))
    rng.shuffle(cats)
    known_n = min(KNOWN, len(cats) - 2)  # at least two categories left as near unknowns
    known, rest = cats[:known_n], cats[known_n : known_n + NEAR_CATS]
    groups = {}
    for cat in sorted(known):
        files = list(family.categories[cat])
        rng.shuffle(files)
        k = min(n_train, int(len(files) * 0.65))
        groups[cat.replace("/", "-")] = (files[:k], files[k : k + n_test])
    near = [p for c in rest for p in family.categories[c]]
    rng.shuffle(near)
    return groups, near[:N_UNKNOWN]


def far_files(family: Family, half: str, seed: int) -> list[Path]:
    files = family.files(half)
    return random.Random(f"far-{family.name}-{seed}").sample(files, min(N_UNKNOWN, len(files)))


def embed(pipe: Pipeline, files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    items = [(Item(imaging.sha256_file(p), p), [0, 1]) for p in files]
    vecs: dict[tuple[str, int], np.ndarray] = {}
    for keys, out in pipe.run(items):
        vecs.update(zip(keys, out, strict=True))
    ok = [it for it, _ in items if (it.sha256, 0) in vecs]
    return tuple(np.stack([vecs[(it.sha256, v)] for it in ok]) for v in (0, 1))  # type: ignore[return-value]


class Detectors:
    """Scores (higher: more unknown) fitted on the training embeddings of one run."""

    def __init__(self, x_train: np.ndarray, y_train: np.ndarray, p: object) -> None:
        self.p = p
        self.cal = p.calibration  # type: ignore[attr-defined]
        # Mahalanobis needs a covariance; 1,280 dimensions from ~200 images do not give one, so the
        # power-normalised features are first projected on their principal components.
        self.pca = PCA(n_components=min(MAHA_DIMS, len(x_train) - 1), random_state=0).fit(power_unit(x_train))
        self.y_train = y_train
        z = self.pca.transform(power_unit(x_train))
        self.means = np.stack([z[y_train == c].mean(0) for c in np.unique(y_train)])
        self.within = LedoitWolf().fit(z - self.means[y_train]).precision_
        self.background = LedoitWolf().fit(z)
        self.x_train = x_train
        self.train_logits, _ = self._logits(x_train, x_train)
        self.residual = {d: self._fit_residual(d) for d in RESIDUAL_DIMS}
        self.class_residual = {d: self._fit_class_residual(d) for d in CLASS_DIMS}
        # NNGuide's bank: the training features (cosine space) scaled by their own energy.
        self.bank = unit(power_unit(x_train)) * self._energy(self.train_logits)[:, None]

    def _fit_residual(self, dims: int) -> tuple[Residual, np.ndarray, float]:
        """ViM (Wang et al. 2022) through the app's residual.py with `dims` directions: the residual, its
        held-out reference (sorted) and alpha, which scales it to the head's logits for ViM's score."""
        if dims == DIMS and self.cal.residual is not None:  # the shipped one: the calibration's own
            residual, ref = self.cal.residual, self.cal.res_ref
        else:
            fitted = residual_with_reference(self.cal.space(self.x_train), dims)
            assert fitted is not None, "too few training images for a residual"
            residual, ref = fitted[0], np.sort(fitted[1])
        return residual, ref, float(self.train_logits.max(1).mean() / max(ref.mean(), 1e-6))

    def _fit_class_residual(self, dims: int) -> tuple[GroupResiduals, np.ndarray]:
        """The app's group residual with `dims` directions a group and its held-out reference (sorted); with
        the shipped GROUP_DIMS, the calibration's own."""
        if dims == GROUP_DIMS and self.cal.group_residual is not None:
            return self.cal.group_residual, self.cal.group_ref
        fitted = group_residuals_with_reference(self.cal.space(self.x_train), self.y_train, dims)
        assert fitted is not None, "no group of two training images"
        return fitted[0], np.sort(fitted[1])

    def _logits(self, h0: np.ndarray, h1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        head = self.p.head  # type: ignore[attr-defined]
        head.eval()
        with torch.inference_mode():
            l0, l1 = (head(torch.from_numpy(v)).numpy() for v in (h0, h1))
        e0, e1 = np.exp(l0 - l0.max(1, keepdims=True)), np.exp(l1 - l1.max(1, keepdims=True))
        probs = (e0 / e0.sum(1, keepdims=True) + e1 / e1.sum(1, keepdims=True)) / 2
        return (l0 + l1) / 2, probs

    def _distance_rank(self, dist: np.ndarray) -> np.ndarray:
        """The share of known images whose leave-one-out nearest distance is smaller (the feature rank of
        calibrations before the residual)."""
        return np.searchsorted(self.cal.dist_ref, dist, side="left") / len(self.cal.dist_ref)

    @staticmethod
    def _energy(logits: np.ndarray) -> np.ndarray:
        return logits.max(1) + np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1))

    def _nnguide(self, h0: np.ndarray, energy: np.ndarray) -> np.ndarray:
        """NNGuide (Park et al. 2023): the energy times the mean similarity to the 10 nearest entries of
        the energy-scaled bank; higher: more known."""
        sims = unit(power_unit(h0)) @ self.bank.T
        k = min(NNGUIDE_K, sims.shape[1])
        return energy * np.sort(sims, axis=1)[:, -k:].mean(1)

    def _maha(self, z: np.ndarray) -> np.ndarray:
        d = z[:, None, :] - self.means[None]
        within = np.einsum("nkd,de,nke->nk", d, self.within, d).min(1)
        bg = z - self.background.location_
        return within - np.einsum("nd,de,ne->n", bg, self.background.precision_, bg)

    def scores(self, h0: np.ndarray, h1: np.ndarray) -> dict[str, np.ndarray]:
        logits, probs = self._logits(h0, h1)
        raw = self.cal.space(h0) @ self.cal.vectors.T  # similarity to every training image
        sims = np.sort(raw, axis=1)[:, ::-1]
        judged = [self.cal.judge(pr, f) for pr, f in zip(probs, h0, strict=True)]
        z = self.cal.space(h0)
        mixed, r_top, _, _ = self.cal.strangeness(
            probs.max(1), self.cal.signal(z, 1 - sims[:, 0]), self.cal.group_signal(z)
        )
        r_dist = self._distance_rank(1 - sims[:, 0])
        weighted = {f"rank mix, distance weight {w:g}": w * r_dist + (1 - w) * r_top for w in DISTANCE_WEIGHTS}
        # The distance to the nearest training image of the answered group (a near unknown may sit near
        # images of a group other than the one the head picks): alone and in the mix.
        answered = np.array(self.cal.classes)[probs.argmax(1)]
        of_answer = np.array(self.cal.groups)[None, :] == answered[:, None]
        d_answer = 1 - np.where(of_answer, raw, -1.0).max(1)
        r_answer = self._distance_rank(d_answer)
        for w in DISTANCE_WEIGHTS:
            weighted[f"answered-group mix, distance weight {w:g}"] = w * r_answer + (1 - w) * r_top
        energy = self._energy(logits)
        top_m = np.sort(probs, axis=1)[:, ::-1][:, :GEN_M]
        gen = (top_m**GEN_GAMMA * (1 - top_m) ** GEN_GAMMA).sum(1)  # GEN (Liu et al. 2023): higher, more unknown
        nnguide = self._nnguide(h0, energy)
        weighted["GEN"] = gen
        weighted["NNGuide"] = -nnguide
        r_global = {}
        for d, (residual, ref, alpha) in self.residual.items():
            res = residual.norms(z)
            r_res = r_global[d] = np.searchsorted(ref, res, side="left") / len(ref)
            weighted[f"residual, {d} components"] = res
            weighted[f"ViM, {d} components"] = alpha * res - energy
            weighted[f"residual mix 0.8, {d} components"] = 0.8 * r_res + 0.2 * r_top
            weighted[f"residual + distance mix, {d} components"] = 0.4 * r_res + 0.4 * r_dist + 0.2 * r_top
        for d, (subs, ref) in self.class_residual.items():
            norms = subs.per_group(z)
            smallest, answered_res = norms.min(1), norms[np.arange(len(z)), probs.argmax(1)]
            r_cls = np.searchsorted(ref, smallest, side="left") / len(ref)
            r_ans = np.searchsorted(ref, answered_res, side="left") / len(ref)
            weighted[f"class residual, {d} components"] = smallest
            weighted[f"class residual of the answer, {d} components"] = answered_res
            weighted[f"class residual mix 0.8, {d} components"] = 0.8 * r_cls + 0.2 * r_top
            weighted[f"answer's class residual mix 0.8, {d} components"] = 0.8 * r_ans + 0.2 * r_top
            weighted[f"global + class residual mix, {d} components"] = 0.4 * r_global[64] + 0.4 * r_cls + 0.2 * r_top
            for w_top in (0.1, 0.2, 0.3):
                for share in (0.25, 0.5, 0.75):
                    w_cls = (1 - w_top) * share
                    mix = (1 - w_top - w_cls) * r_global[64] + w_cls * r_cls + w_top * r_top
                    weighted[f"three-way mix, {d} components, top {w_top:g}, class {w_cls:.3g}"] = mix
        return {
            "max probability": -probs.max(1),
            "energy": -energy,
            "k-NN, k=1": 1 - sims[:, 0],
            "k-NN, k=5": 1 - sims[:, min(4, sims.shape[1] - 1)],
            "k-NN of the answered group, k=1": d_answer,
            "relative Mahalanobis": self._maha(self.pca.transform(power_unit(h0))),
            "rank mix (shipped)": np.array([j["score"] for j in judged]),
            **weighted,
            "_unknown": np.array([j["unknown"] for j in judged], dtype=float),
            "_strange": mixed,
        }


def one(
    family: Family, other: Family, half: str, seed: int, n_train: int, n_test: int, measure_scale: bool = False
) -> dict[str, float]:
    settings, sv = build(load=False)
    groups, near = draw(family, half, seed, n_train, n_test)
    for g, (tr, _) in groups.items():
        import_files(sv.dataset, g, tr)
    bb = sv.models.backbone()
    run = train(sv, "head")
    p = load_predictor(sv.models.registry.run_dir(run), bb)
    classes = sorted(groups)
    rows = sv.dataset.with_status("group")
    x_tr = sv.store.get(bb.fingerprint, [r.sha256 for r in rows], 0, bb.feature_dim)
    det = Detectors(x_tr, np.array([classes.index(r.group) for r in rows]), p)
    pipe = Pipeline(
        pre=bb.preprocess, forward=bb.features, batch_size=settings.batch_size, max_pixels=settings.max_image_pixels
    )
    known = [f for g in classes for f in groups[g][1]]
    h0, h1 = embed(pipe, known)
    y_known = np.array([classes.index(g) for g in classes for _ in groups[g][1]])
    levers = accuracy(p.head, x_tr, det.y_train, h0, h1, y_known)
    measured = None
    if measure_scale:
        shas = [r.sha256 for r in rows]
        x_tr1 = sv.store.get(bb.fingerprint, shas, 1, bb.feature_dim)
        t0 = time.perf_counter()
        p_values = held_out_p_values([x_tr, x_tr1], det.y_train, shas, classes, head_params(TrainParams()))
        if p_values is not None:
            measured = scale_from(p_values, Settings.model_fields["unknown_false_rejection"].default)
            print(f"measured scale {measured:.2f} in {time.perf_counter() - t0:.1f} s", flush=True)
    sets = {
        "known": det.scores(h0, h1),
        "near": det.scores(*embed(pipe, near)),
        "far": det.scores(*embed(pipe, far_files(other, half, seed))),
    }
    sv.close()
    out: dict[str, float] = {
        "false rejections": float(sets["known"]["_unknown"].mean()),
        "near caught": float(sets["near"]["_unknown"].mean()),
        "far caught": float(sets["far"]["_unknown"].mean()),
        **scaled_shares(p.calibration, sets, measured),
        **({"measured scale": measured} if measured is not None else {}),
        **levers,
    }
    for name in sets["known"]:
        if name.startswith("_"):
            continue
        for kind in ("near", "far"):
            y = np.r_[np.zeros(len(sets["known"][name])), np.ones(len(sets[kind][name]))]
            out[f"{name} | {kind} AUROC"] = float(roc_auc_score(y, np.r_[sets["known"][name], sets[kind][name]]))
    return out


def scaled_shares(
    cal: object, sets: dict[str, dict[str, np.ndarray]], measured: float | None = None
) -> dict[str, float]:
    """The three shares for each candidate HELD_OUT_SCALE (the quantile taken at target x scale; no
    parent groups here, so the verdict is the strangeness against the limit alone)."""
    out = {}
    candidates = [(f"scale {m:g}", m) for m in SCALES] + ([("measured scale", measured)] if measured else [])
    for label, m in candidates:
        limit = cal.limit_at(cal.target_frr, scale=m)  # type: ignore[attr-defined]
        for kind, name in (("known", "false rejections"), ("near", "near caught"), ("far", "far caught")):
            out[f"{label} | {name}"] = float((sets[kind]["_strange"] > limit).mean())
    return out


def choose_scale(dev: list[list[dict[str, float]]], target: float) -> float:
    """The largest scale whose false rejections on dev (each family's runs), mean over families, stay
    within the target."""

    def frr(m: float) -> float:
        return float(np.mean([np.mean([r[f"scale {m:g} | false rejections"] for r in runs]) for runs in dev]))

    return max((m for m in SCALES if frr(m) <= target), default=SCALES[0])


def main() -> None:
    environment()
    ap = argparse.ArgumentParser()
    ap.add_argument("--half", choices=["dev", "report", "both"], default="both")
    ap.add_argument("--train", type=int, default=30)
    ap.add_argument("--test", type=int, default=15)
    ap.add_argument("--measured-scale", action="store_true", help="also the scale measured per dataset (heldout_scale)")
    args = ap.parse_args()
    families = {name: make() for name, make in FAMILIES.items()}
    names = list(families)
    table, dev_runs = {}, []
    for half in ("dev", "report") if args.half == "both" else (args.half,):
        for i, name in enumerate(names):
            other = families[names[(i + 1) % len(names)]]
            runs = [one(families[name], other, half, s, args.train, args.test, args.measured_scale) for s in SEEDS]
            summary = {
                k: f"{np.mean([r[k] for r in runs]):.3f} ± {np.std([r[k] for r in runs], ddof=1):.3f}"
                for k in runs[0]
                if all(k in r for r in runs)  # a measured scale needs groups big enough for it
            }
            table[f"{half} | {name} (far: {other.name})"] = summary
            if half == "dev":
                dev_runs.append(runs)
            print(json.dumps({f"{half} | {name}": summary, "runs": runs}), flush=True)
    print(json.dumps(table, indent=1))
    if dev_runs:
        target = Settings.model_fields["unknown_false_rejection"].default  # the shipped setting
        print(f"HELD_OUT_SCALE chosen on dev: {choose_scale(dev_runs, target):g}")


if __name__ == "__main__":
    main()
