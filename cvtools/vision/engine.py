"""The Engine: the one in-process owner of the backbone, the production model and the embedding cache."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image

from .. import imaging
from ..dataset import Dataset
from ..errors import BadInput, Conflict, NoModel, NotFound
from ..jobs import Job, JobRunner
from ..settings import Settings
from . import anomalies as anom
from .backbone import Backbone, load_backbone
from .batcher import Batcher
from .embeddings import EmbeddingStore, Item
from .head import HeadParams
from .index import SimilarityIndex
from .onnx_runtime import accelerate
from .predictor import Predictor, load_predictor
from .registry import Registry
from .training import (
    PARAMS,
    TrainContext,
    default_params,
    embed_missing,
    resolve_mode,
    split_dataset,
    train,
    train_multi,
    validate_params,
)

log = logging.getLogger(__name__)

PHASH_CONFIRM = 1.5
# Differing bits of 1024 between the drawn parts of two images (imaging.content_signature), from
# openclipart pairs (anomaly_bench): copies 0-41, different drawings on the same template 20-170,
# mirror images and small objects on the same empty canvas 150-433 (a copy cropped into its drawing: 206).
# None (a tiny or blank drawing) keeps the pair: the check only removes.
CONTENT_SAME_BITS = 45
CONTENT_DIFFERENT_BITS = 240
STRONG = 0.8  # multi-label anomalies: a membership below 0.2 or a missing one above 0.8
CONTENT_ASPECT = 0.2  # |log| of the aspect-ratio quotient beyond which the drawn parts differ
# How much slower the frozen network runs on PyTorch than on ONNX Runtime on a 2-core CPU, end to end
# (docs/BENCHMARKS.md, runtime_bench): the offline EfficientNet-Lite0 and a ConvNeXtV2.
SLOWER_ON_TORCH = {"efficientnet": "4×", "hf": "1.5×"}


class Engine:
    def __init__(
        self, settings: Settings, dataset: Dataset, jobs: JobRunner, publish: Callable[[str, dict[str, Any]], None]
    ) -> None:
        self.settings = settings
        self.dataset = dataset
        self.jobs = jobs
        self.publish = publish
        self.registry = Registry(settings.state_dir / "models")
        for run in self.registry.mark_interrupted():
            log.warning("training run %s was interrupted by a stop of the server", run)
        self.store = EmbeddingStore(settings.state_dir / "embeddings.sqlite")
        self._load_lock = threading.Lock()
        self._train_lock = threading.Lock()
        self._backbone: Backbone | None = None
        self._production: Predictor | None = None
        self._production_loaded = False
        self.production_error: str | None = None
        self.batcher = Batcher(settings.batch_size)
        self.index_path = settings.state_dir / "index" / "index.npz"
        self._index: SimilarityIndex | None = None
        self._index_loaded = False
        self._index_lock = threading.Lock()
        self.dataset_version = 0
        self._anomalies: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {}
        torch.set_num_threads(max(1, os.cpu_count() or 1))

    # ---- loading ------------------------------------------------------------------------
    def backbone(self) -> Backbone:
        """The configured network, loaded once under a lock (falls back offline)."""
        if self._backbone is None:
            with self._load_lock:
                if self._backbone is None:
                    self._backbone = self._accelerate(load_backbone(self.settings.neuronet))
        return self._backbone

    def _accelerate(self, bb: Backbone) -> Backbone:
        """Put the frozen feature extractor on ONNX Runtime when configured and in parity."""
        if self.settings.inference_runtime == "torch" or bb.runtime is not None:
            return bb
        path = self.settings.state_dir / "onnx" / f"{bb.fingerprint}.onnx"
        runtime, note = accelerate(bb.features_torch, bb.model, bb.preprocess.size, path)
        bb.runtime, bb.runtime_note = runtime, note
        if runtime is None:
            log.warning("inference runtime: %s", note)
        return bb

    def production(self) -> Predictor | None:
        if not self._production_loaded:
            with self._load_lock:
                if not self._production_loaded:
                    self._load_production()
        return self._production

    def _load_production(self) -> None:
        run = self.registry.production()
        self._production_loaded = True
        if run is None:
            return
        try:
            base = self._backbone
            self._production = load_predictor(self.registry.run_dir(run), base)
            self._accelerate(self._production.backbone)
            self.production_error = None
        except Exception as exc:
            log.warning("production model %s cannot be loaded: %s", run, exc)
            self._production = None
            self.production_error = (
                f"The production model {run} could not be loaded ({exc}); train again or set another version as main."
            )

    def warm_up(self) -> None:
        self.backbone()
        self.production()

    def status(self) -> dict[str, Any]:
        bb = self._backbone
        prod = self._production
        active = prod.backbone if prod else bb
        message = bb.message if bb else ""
        if self.production_error:
            message = (message + " " + self.production_error).strip()
        return {
            "name": self.settings.neuronet,
            "backbone": bb.name if bb else None,
            "run": prod.run if prod else None,
            "mode": prod.mode if prod else None,
            "offline_fallback": bool(bb and bb.offline_fallback),
            "classes": prod.classes if prod else [],
            "loaded": bb is not None,
            "message": message,
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "runtime": None if active is None else ("onnxruntime" if active.runtime is not None else "torch"),
            "runtime_note": active.runtime_note if active else "",
            "runtime_warning": self._runtime_warning(active),
        }

    def _runtime_warning(self, active: Backbone | None) -> str | None:
        """Why the frozen network runs on PyTorch although ONNX Runtime was wanted, and what it costs."""
        if active is None or active.runtime is not None or self.settings.inference_runtime == "torch":
            return None
        cost = SLOWER_ON_TORCH.get(active.kind, "several times")
        return (
            f"ONNX Runtime is not active ({active.runtime_note}): embeddings, head-mode training and /cv run on "
            f"PyTorch, about {cost} slower on a CPU. Install it with: pip install -r requirements.txt"
        )

    # ---- classification -----------------------------------------------------------------
    def decode_side(self) -> int:
        """The shorter side a query is decoded to at least: the main model's, as for its stored
        embeddings, so that a file of the dataset gets the same vector either way."""
        return self.require_production().preprocess.resize_side()

    def require_production(self) -> Predictor:
        p = self.production()
        if p is None:
            raise NoModel(self.production_error or "train a model and set it as main first")
        return p

    def classify(self, images: list[Image.Image], predictor: Predictor | None = None) -> list[list[tuple[str, float]]]:
        """Ranked (group, probability) per image, highest first (direct, one batch)."""
        p = predictor or self.require_production()
        probs = p.probs(p.preprocess.batch(images))
        return [rank(p.classes, row) for row in probs]

    def _forward(self, image: Image.Image) -> tuple[Predictor, np.ndarray, np.ndarray, np.ndarray]:
        p = self.require_production()
        probs, feats, logits = self.batcher.submit(p, p.preprocess.array(p.preprocess.center(image))).result()
        return p, probs, feats, logits

    def analyze(self, image: Image.Image) -> tuple[list[tuple[str, float]], np.ndarray]:
        """One image through the request batcher: ranked groups and its vector in the similarity space."""
        p, probs, feats, logits = self._forward(image)
        return rank(p.classes, probs), (logits if self.settings.similarity_space == "logits" else feats)

    def analyze_full(self, image: Image.Image) -> tuple[list[tuple[str, float]], np.ndarray, dict[str, Any]]:
        """As analyze, plus the open-set verdict (unknown, reason, fallback, nearest): a search over the
        training embeddings, so only the callers that report it pay for it."""
        p, probs, feats, logits = self._forward(image)
        vector = logits if self.settings.similarity_space == "logits" else feats
        return rank(p.classes, probs), vector, self.verdict(p, probs, feats)

    def verdict(self, p: Predictor, probs: np.ndarray, feats: np.ndarray) -> dict[str, Any]:
        none: dict[str, Any] = {
            "unknown": False,
            "reason": None,
            "fallback": None,
            "nearest": None,
            "score": None,
            "calibrated": False,
        }
        if p.layout is not None:
            # multi-label: the predicted set; "unknown" is not calibrated for these models
            return {**none, "labels": p.label_set(probs), "note": "multi-label model: the labels are the answer"}
        if not self.settings.unknown_detection:
            return none
        if p.calibration is None:
            return {**none, "note": "this model was not calibrated (train it again in head mode)"}
        return {**p.calibration.judge(probs, feats), "calibrated": True}

    # ---- similarity index ----------------------------------------------------------------
    def index(self) -> SimilarityIndex | None:
        """The persisted index when it matches the production model, else None."""
        if not self._index_loaded:
            with self._index_lock:
                if not self._index_loaded:
                    self._index_loaded = True
                    if self.index_path.is_file():
                        try:
                            self._index = SimilarityIndex.load(self.index_path)
                        except (OSError, ValueError, KeyError) as exc:
                            log.warning("similarity index unreadable (%s); it will be rebuilt on demand", exc)
        idx, p = self._index, self.production()
        if idx is None or p is None or idx.fingerprint != p.fingerprint or idx.space != self.settings.similarity_space:
            return None
        if idx.space == "logits" and idx.run != p.run:  # logits depend on the head, not only the backbone
            return None
        return idx

    def index_status(self) -> dict[str, Any]:
        idx = self.index()
        running = [j.id for j in self.jobs.active("index")]
        return {
            "exists": idx is not None,
            "images": len(idx) if idx else 0,
            "space": self.settings.similarity_space,
            "run": idx.run if idx else None,
            "built": idx.built if idx else None,
            "job": running[0] if running else None,
        }

    def _vectors(self, p: Predictor, rows: list[Any], job: Job | None) -> dict[str, np.ndarray]:
        bb = p.backbone
        embed_missing(
            self.store,
            bb,
            [(Item(r["sha256"], self.dataset.abs_path(r)), [0]) for r in rows],
            batch_size=self.settings.batch_size,
            max_pixels=self.settings.max_image_pixels,
            job=job,
            label="Indexing",
        )
        have = [r for r in rows if not self.store.missing(bb.fingerprint, [r["sha256"]], [0])]
        if not have:
            return {}
        feats = self.store.get(bb.fingerprint, [r["sha256"] for r in have], 0, bb.feature_dim)
        if self.settings.similarity_space == "logits":
            with torch.inference_mode():
                feats = p.logits_from_features(torch.from_numpy(feats)).float().numpy()
        return {r["id"]: v for r, v in zip(have, feats, strict=True)}

    def build_index(self, job: Job | None = None, *, full: bool = True) -> dict[str, Any]:
        """Embed every Group image with the production model (cached) and save the index."""
        p = self.require_production()
        rows = self.dataset.rows_with_status("group")
        with self._index_lock:
            current = None if full else self._index
            if current is not None and (
                current.fingerprint != p.fingerprint or current.space != self.settings.similarity_space
            ):
                current = None
        keep = {r["id"]: r["grp"] for r in rows}
        todo = rows if current is None else [r for r in rows if r["id"] not in current._pos]
        vectors = self._vectors(p, todo, job)
        if current is None:
            current = SimilarityIndex(p.fingerprint, self.settings.similarity_space, p.run)
        current.update(keep, {i: (keep[i], v) for i, v in vectors.items()})
        current.built = time.time()
        current.save(self.index_path)
        with self._index_lock:
            self._index, self._index_loaded = current, True
        self.publish("index", self.index_status())
        return {"images": len(current), "embedded": len(vectors)}

    def start_index_job(self, *, full: bool = True) -> Job:
        self.require_production()
        for j in self.jobs.active("index"):
            if j.state == "queued":
                return j
        return self.jobs.submit(
            "index", lambda job: self.build_index(job, full=full), message="Building the image index"
        )

    def on_dataset_change(self, event: dict[str, Any]) -> None:
        """Keep the index current: an incremental update after images are added, moved or deleted."""
        self.dataset_version += 1
        if (
            event.get("op") in ("images", "groups")
            and self._index_loaded
            and self._index is not None
            and self._production
        ):
            self.start_index_job(full=False)

    def similar(self, vector: np.ndarray, k: int, group: str | None = None) -> list[tuple[str, str, float]] | None:
        idx = self.index()
        return None if idx is None else idx.query(vector, k, group)

    # ---- training -----------------------------------------------------------------------
    def train_params(self) -> dict[str, Any]:
        return {
            "mode": self.settings.train_mode,
            "resolved_mode": resolve_mode(self.settings.train_mode),
            "params": default_params(),
            "help": {k: {"mode": v[4], "help": v[5], "min": v[2], "max": v[3]} for k, v in PARAMS.items()},
        }

    def start_training(self, mode: str, params: dict[str, Any]) -> tuple[Job, str]:
        # The check and the submit under one lock: of concurrent requests exactly one starts a run.
        with self._train_lock:
            return self._start_training(mode, params)

    def _start_training(self, mode: str, params: dict[str, Any]) -> tuple[Job, str]:
        mode_resolved = resolve_mode(mode or self.settings.train_mode)
        if self.jobs.active("train"):
            raise Conflict("a training run is already in progress")
        backbone_name = self._backbone.name if self._backbone else self.settings.neuronet
        clean = validate_params(params or {}, backbone_name)
        rows = self.dataset.rows_with_status("group")
        multi = self.dataset.label_mode == "multi"
        if multi:
            if len({r["grp"] for r in rows}) < 2:
                raise BadInput("at least 2 groups need Group images to train")
        else:
            split_dataset(rows, self.dataset.abs_path, test_size=self.settings.test_size)  # 400 now, not in the job
        run = self.registry.new_run_id()
        record: dict[str, Any] = {
            "id": run,
            "state": "queued",
            "mode": mode_resolved,
            "requested_mode": mode,
            "backbone": backbone_name,
            "classes": [],
            "params": clean,
            "epochs": [],
            "best": None,
            "confusion": None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        self.registry.write(record)

        def work(job: Job) -> dict[str, Any]:
            record["state"] = "running"
            bb = self.backbone()
            record["backbone"], record["backbone_kind"] = bb.name, bb.kind
            record["preprocess"] = {
                "size": bb.preprocess.size,
                "crop_pct": bb.preprocess.crop_pct,
                "mean": list(bb.preprocess.mean),
                "std": list(bb.preprocess.std),
            }
            if "learning_rate" not in (params or {}):  # its default depends on the loaded network
                record["params"]["learning_rate"] = validate_params({}, bb.name)["learning_rate"]
            self.registry.write(record)
            ctx = TrainContext(
                self.store,
                self.registry,
                bb,
                self.settings.batch_size,
                self.settings.max_image_pixels,
                self.settings.unknown_false_rejection if self.settings.unknown_detection else None,
            )
            try:
                if multi:
                    done, _ = train_multi(
                        ctx,
                        self.dataset.rows_with_status("group"),
                        self.dataset.abs_path,
                        self.dataset.exclusive_roots(),
                        params=record["params"],
                        test_size=self.settings.test_size,
                        job=job,
                        record=record,
                        publish=lambda r: self.publish("run", _summary(r)),
                        mode=mode_resolved,
                    )
                else:
                    done, _ = train(
                        ctx,
                        self.dataset.rows_with_status("group"),
                        self.dataset.abs_path,
                        mode=mode_resolved,
                        params=record["params"],
                        test_size=self.settings.test_size,
                        job=job,
                        record=record,
                        publish=lambda r: self.publish("run", _summary(r)),
                    )
            except BaseException as exc:
                record["state"] = "cancelled" if job.cancelled else "failed"
                record["error"] = getattr(exc, "detail", None) or f"{type(exc).__name__}: {exc}"
                self.registry.write(record)
                self.publish("run", _summary(record))
                raise
            self.publish("run", _summary(done))
            return {"run": run, "accuracy": done["accuracy"], "best": done["best"], "epochs": done["epochs"]}

        job = self.jobs.submit("train", work, message="Preparing")
        return job, run

    # ---- model versions -----------------------------------------------------------------
    def models(self) -> dict[str, Any]:
        runs = [r for r in self.registry.runs() if r.get("state") == "done"]
        return {
            "production": self.registry.production(),
            "models": [
                {
                    "run": r["id"],
                    "accuracy": r.get("accuracy", 0.0),
                    "created": r.get("created", ""),
                    "mode": r.get("mode"),
                    "backbone": r.get("backbone"),
                    "classes": r.get("classes", []),
                }
                for r in runs
            ],
        }

    def promote(self, run: str) -> Predictor:
        """Load the run's model, then switch atomically: requests in flight finish on the old one."""
        record = self.registry.get(run)
        if record.get("state") != "done":
            raise BadInput(f"run {run} is {record.get('state')}; only a finished run can be set as main")
        base = self.backbone() if record.get("mode") == "head" else None
        try:
            predictor = load_predictor(self.registry.run_dir(run), base)
            self._accelerate(predictor.backbone)
        except NotFound:
            raise
        except Exception as exc:
            raise BadInput(f"run {run} cannot be loaded: {exc}") from None
        with self._load_lock:
            self.registry.set_production(run)
            self._production = predictor
            self._production_loaded = True
            self.production_error = None
        self.publish("model", self.status())
        return predictor

    # ---- anomalies ---------------------------------------------------------------------------
    def _views(self, bb: Backbone, rows: list[Any], views: list[int], job: Job | None) -> list[np.ndarray]:
        embed_missing(
            self.store,
            bb,
            [(Item(r["sha256"], self.dataset.abs_path(r)), views) for r in rows],
            batch_size=self.settings.batch_size,
            max_pixels=self.settings.max_image_pixels,
            job=job,
            label="Embedding",
        )
        return [self.store.get(bb.fingerprint, [r["sha256"] for r in rows], v, bb.feature_dim) for v in views]

    def _anomaly_key(self, kind: str, method: str) -> tuple[Any, ...]:
        p = self._production
        return (kind, method, self.dataset_version, p.run if p else None, self.settings.max_equal_distance)

    def anomalies(
        self, kind: str, method: str | None = None, job: Job | None = None, *, fresh: bool = False
    ) -> dict[str, Any]:
        """The anomaly list, recomputed only when the dataset or the main model changed."""
        if kind not in ("errors", "duplicates"):
            raise BadInput("type must be errors or duplicates")
        method = method or self.settings.anomaly_method
        if method not in ("cross_validation", "production"):
            raise BadInput("method must be cross_validation or production")
        p = self.require_production()
        key = self._anomaly_key(kind, method)
        cached = self._anomalies.get(kind + method)
        if cached and cached[0] == key and not fresh:
            return cached[1]
        result = self._errors(p, method, job) if kind == "errors" else self._duplicates(p, job)
        result["computed"] = time.time()
        self._anomalies[kind + method] = (key, result)
        return result

    def _errors(self, p: Predictor, method: str, job: Job | None) -> dict[str, Any]:
        if self.dataset.label_mode == "multi":
            return self._membership_errors(p, method, job)
        rows = self.dataset.rows_with_status("group")
        if method == "production":
            rows = [r for r in rows if r["grp"] in p.classes]
            classes = p.classes
        else:
            sizes: dict[str, int] = {}
            for r in rows:
                sizes[r["grp"]] = sizes.get(r["grp"], 0) + 1
            classes = sorted(g for g, n in sizes.items() if n >= 2)
            rows = [r for r in rows if r["grp"] in classes]
        if len(classes) < 2 or not rows:
            return {
                "items": [],
                "method": method,
                "message": "at least 2 groups with 2 or more Group images are needed",
            }
        views = self._views(p.backbone, rows, [0, 1], job)
        labels = np.array([classes.index(r["grp"]) for r in rows])
        if method == "production":
            with torch.inference_mode():
                probs = np.mean(
                    [torch.softmax(p.logits_from_features(torch.from_numpy(v)), 1).numpy() for v in views], 0
                )
        else:
            probs = anom.out_of_fold_probs(
                views,
                labels,
                [r["sha256"] for r in rows],
                len(classes),
                k=self.settings.anomaly_folds,
                progress=(lambda d, t: job.progress(d, t, f"Fold {d} of {t}")) if job else None,
                cancelled=(lambda: job.cancelled) if job else (lambda: False),
            )
        items = []
        for e in anom.label_errors(probs, labels):
            r = rows[e.index]
            items.append(
                {
                    "id": r["id"],
                    "path": str(self.dataset.abs_path(r)),
                    "thumb": f"/api/images/{r['id']}/thumb",
                    "url": f"/api/images/{r['id']}/file",
                    "group": classes[e.own],
                    "probability": round(e.p_own, 4),
                    "detected": classes[e.detected],
                    "detected_probability": round(e.p_detected, 4),
                }
            )
        return {"items": items, "method": method, "checked": len(rows)}

    def _membership_errors(self, p: Predictor, method: str, job: Job | None) -> dict[str, Any]:
        """Multi-label datasets: memberships the model strongly rejects (kind "rejected": the image is
        in `group` with a low probability) and memberships it strongly predicts but that are missing
        (kind "missing": `detected` with a high probability), strongest first."""
        from . import multilabel as ml

        rows = self.dataset.rows_with_status("group")
        by_sha: dict[str, list[Any]] = {}
        for r in rows:
            by_sha.setdefault(r["sha256"], []).append(r)
        layout = p.layout or ml.Layout.build(sorted({r["grp"] for r in rows}), self.dataset.exclusive_roots())
        if len(layout.outputs) < 2 or len(by_sha) < 4:
            return {"items": [], "method": method, "message": "at least 2 groups and 4 images are needed"}
        shas = sorted(by_sha)
        firsts = [by_sha[s][0] for s in shas]
        y = np.array([[any(r["grp"] == g for r in by_sha[s]) for g in layout.outputs] for s in shas], dtype=bool)
        views = self._views(p.backbone, firsts, [0, 1], job)
        if method == "production" and p.layout is not None and p.head is not None:
            probs = ml.evaluate_multi(p.head, views, layout)
        else:
            probs = ml.out_of_fold(
                views,
                y,
                shas,
                layout,
                k=self.settings.anomaly_folds,
                params=HeadParams(epochs=30),
                cancelled=(lambda: job.cancelled) if job else (lambda: False),
            )
        items: list[dict[str, Any]] = []
        for i, s in enumerate(shas):
            for j, g in enumerate(layout.outputs):
                pr = float(probs[i, j])
                if y[i, j] and pr < 1 - STRONG:
                    r = next(r for r in by_sha[s] if r["grp"] == g)
                    other = [k for k in np.argsort(-probs[i]) if not y[i, k]]
                    det = int(other[0]) if other else j
                    items.append(self._membership_item(r, "rejected", g, pr, layout.outputs[det], float(probs[i, det])))
                elif not y[i, j] and pr > STRONG:
                    r = by_sha[s][0]
                    own = float(probs[i, layout.outputs.index(r["grp"])]) if r["grp"] in layout.outputs else 0.0
                    items.append(self._membership_item(r, "missing", r["grp"], own, g, pr))
        # strongest first: how sure the model is that the membership is wrong / missing
        items.sort(key=lambda it: -(it["detected_probability"] if it["kind"] == "missing" else 1 - it["probability"]))
        return {"items": items, "method": method, "checked": len(shas), "label_mode": "multi"}

    def _membership_item(
        self, r: Any, kind: str, group: str, p_group: float, detected: str, p_detected: float
    ) -> dict[str, Any]:
        return {
            "id": r["id"],
            "path": str(self.dataset.abs_path(r)),
            "thumb": f"/api/images/{r['id']}/thumb",
            "url": f"/api/images/{r['id']}/file",
            "kind": kind,
            "group": group,
            "probability": round(p_group, 4),
            "detected": detected,
            "detected_probability": round(p_detected, 4),
        }

    def _duplicates(self, p: Predictor, job: Job | None) -> dict[str, Any]:
        rows = self.dataset.rows_with_status("group") + self.dataset.rows_with_status("new")
        if len(rows) < 2:
            return {"pairs": [], "checked": len(rows)}
        (vecs,) = self._views(p.backbone, rows, [0], job)
        found: dict[tuple[int, int], dict[str, Any]] = {}

        def add(i: int, j: int, layer: str) -> None:
            a, b = min(i, j), max(i, j)
            found.setdefault((a, b), {"layers": []})["layers"].append(layer)

        for i, j in anom.exact_pairs([r["sha256"] for r in rows]):
            add(i, j, "identical")
        unit = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        # A hash match alone is weak on plain drawings (white backgrounds hash alike): the
        # embeddings must agree too, within PHASH_CONFIRM times the duplicate distance.
        loose = PHASH_CONFIRM * self.settings.max_equal_distance
        signatures: dict[int, tuple[np.ndarray, float] | None] = {}

        def drawn_bits(i: int, j: int) -> int | None:
            """Differing bits of the two drawn parts (content_signature); None when unknown."""
            for k in (i, j):
                if k not in signatures:
                    signatures[k] = self._signature(rows[k])
            a, b = signatures[i], signatures[j]
            if a is None or b is None:
                return None
            if abs(np.log(a[1] / b[1])) > CONTENT_ASPECT:
                return len(a[0])
            return int((a[0] != b[0]).sum())

        for i, j, _ in anom.phash_pairs([r["phash"] for r in rows], self.settings.phash_max_bits):
            d = 1.0 - float(unit[i] @ unit[j])
            if d <= self.settings.max_equal_distance:
                add(i, j, "perceptual hash")
            elif d <= loose:
                # beyond the embedding cut, only when the drawn parts agree as well
                bits = drawn_bits(i, j)
                if bits is None or bits <= CONTENT_SAME_BITS:
                    add(i, j, "perceptual hash")
        for i, j, _ in anom.embedding_pairs(vecs, self.settings.max_equal_distance):
            # Close embeddings of drawings that differ (mirror images, small objects on the same
            # empty canvas) are left out when the drawn parts disagree strongly.
            bits = drawn_bits(i, j) if (i, j) not in found else None
            if bits is None or bits <= CONTENT_DIFFERENT_BITS:
                add(i, j, "embedding")
        pairs = []
        for (i, j), info in found.items():
            a, b = rows[i], rows[j]
            dist = 0.0 if "identical" in info["layers"] else max(0.0, float(1.0 - unit[i] @ unit[j]))
            pairs.append(
                {
                    "distance": round(dist, 6),
                    "layers": info["layers"],
                    "cross_group": a["grp"] != b["grp"],
                    "a": self._brief(a),
                    "b": self._brief(b),
                }
            )
        pairs.sort(key=lambda x: (not x["cross_group"], x["distance"]))
        for n, pair in enumerate(pairs, 1):
            pair["pair"] = n
        return {"pairs": pairs, "checked": len(rows)}

    def _signature(self, row: Any) -> tuple[np.ndarray, float] | None:
        try:
            img = imaging.load_rgb(self.dataset.abs_path(row), max_pixels=self.settings.max_image_pixels, min_side=512)
        except (OSError, ValueError, Image.DecompressionBombError):
            return None
        return imaging.content_signature(img)

    def _brief(self, r: Any) -> dict[str, Any]:
        return {
            "id": r["id"],
            "group": r["grp"],
            "status": r["status"],
            "path": str(self.dataset.abs_path(r)),
            "thumb": f"/api/images/{r['id']}/thumb",
            "url": f"/api/images/{r['id']}/file",
            "filename": r["filename"],
        }

    def start_anomaly_job(self, kind: str, method: str | None = None) -> Job:
        self.require_production()
        if kind not in ("errors", "duplicates"):
            raise BadInput("type must be errors or duplicates")
        return self.jobs.submit(
            "anomalies",
            lambda job: _count(self.anomalies(kind, method, job, fresh=True)),
            message=f"Looking for {kind}",
        )

    # ---- export ---------------------------------------------------------------------------
    def export_onnx(self, run: str) -> Any:
        """One .onnx file computing probabilities from a normalised batch (cached in the run folder)."""
        from torch.nn import functional as F

        from . import multilabel as ml
        from .onnx_runtime import _Features, export_classifier, prepare_for_export

        record = self.registry.get(run)
        if record.get("state") != "done":
            raise BadInput(f"run {run} is {record.get('state')}; only a finished run can be exported")
        path = self.registry.run_dir(run) / "model.onnx"
        if path.is_file():
            return path
        p = self._production if self._production and self._production.run == run else None
        if p is None:
            p = load_predictor(self.registry.run_dir(run), self._backbone if record["mode"] == "head" else None)
        prepare_for_export(p.backbone.model)
        if p.head is not None:
            prepare_for_export(p.head)

        def to_probs(logits: torch.Tensor) -> torch.Tensor:
            return ml.probabilities(logits, p.layout) if p.layout else F.softmax(logits, dim=1)

        def probabilities(x: torch.Tensor) -> torch.Tensor:
            probs = to_probs(p.logits_from_features(p.backbone.features_torch(x)))
            if p.tta_flip:  # the same mirror-image averaging as the engine's own answers
                flipped = to_probs(p.logits_from_features(p.backbone.features_torch(torch.flip(x, dims=[3]))))
                probs = (probs + flipped) / 2
            return probs

        pre = p.preprocess
        return export_classifier(
            _Features(probabilities),
            path,
            size=pre.size,
            classes=p.classes,
            run=run,
            preprocess={
                "size": pre.size,
                "crop_pct": pre.crop_pct,
                "mean": list(pre.mean),
                "std": list(pre.std),
                "resize": "shorter side to size / crop_pct, bicubic",
                "crop": "centre",
            },
        )

    def close(self) -> None:
        self.batcher.close()
        self.store.close()


def rank(classes: list[str], probs: np.ndarray) -> list[tuple[str, float]]:
    order = np.argsort(-probs, kind="stable")
    return [(classes[i], float(probs[i])) for i in order]


def _count(result: dict[str, Any]) -> dict[str, Any]:
    return {k: (len(v) if isinstance(v, list) else v) for k, v in result.items()}


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "predictions"}
