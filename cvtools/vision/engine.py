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

from ..dataset import Dataset
from ..errors import BadInput, Conflict, NoModel, NotFound
from ..jobs import Job, JobRunner
from ..settings import Settings
from .backbone import Backbone, load_backbone
from .embeddings import EmbeddingStore
from .predictor import Predictor, load_predictor
from .registry import Registry
from .training import PARAMS, TrainContext, default_params, resolve_mode, split_dataset, train, validate_params

log = logging.getLogger(__name__)


class Engine:
    def __init__(
        self, settings: Settings, dataset: Dataset, jobs: JobRunner, publish: Callable[[str, dict[str, Any]], None]
    ) -> None:
        self.settings = settings
        self.dataset = dataset
        self.jobs = jobs
        self.publish = publish
        self.registry = Registry(settings.state_dir / "models")
        self.store = EmbeddingStore(settings.state_dir / "embeddings.sqlite")
        self._load_lock = threading.Lock()
        self._backbone: Backbone | None = None
        self._production: Predictor | None = None
        self._production_loaded = False
        self.production_error: str | None = None
        torch.set_num_threads(max(1, os.cpu_count() or 1))

    # ---- loading ------------------------------------------------------------------------
    def backbone(self) -> Backbone:
        """The configured network, loaded once under a lock (falls back offline)."""
        if self._backbone is None:
            with self._load_lock:
                if self._backbone is None:
                    self._backbone = load_backbone(self.settings.neuronet)
        return self._backbone

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
        }

    # ---- classification -----------------------------------------------------------------
    def require_production(self) -> Predictor:
        p = self.production()
        if p is None:
            raise NoModel(self.production_error or "train a model and set it as main first")
        return p

    def classify(self, images: list[Image.Image], predictor: Predictor | None = None) -> list[list[tuple[str, float]]]:
        """Ranked (group, probability) per image, highest first."""
        p = predictor or self.require_production()
        batch = p.preprocess.batch(images)
        probs = p.probs(batch)
        out = []
        for row in probs:
            order = np.argsort(-row)
            out.append([(p.classes[i], float(row[i])) for i in order])
        return out

    # ---- training -----------------------------------------------------------------------
    def train_params(self) -> dict[str, Any]:
        return {
            "mode": self.settings.train_mode,
            "resolved_mode": resolve_mode(self.settings.train_mode),
            "params": default_params(),
            "help": {k: {"mode": v[4], "help": v[5], "min": v[2], "max": v[3]} for k, v in PARAMS.items()},
        }

    def start_training(self, mode: str, params: dict[str, Any]) -> tuple[Job, str]:
        mode_resolved = resolve_mode(mode or self.settings.train_mode)
        if self.jobs.active("train"):
            raise Conflict("a training run is already in progress")
        backbone_name = self._backbone.name if self._backbone else self.settings.neuronet
        clean = validate_params(params or {}, backbone_name)
        rows = self.dataset.rows_with_status("group")
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
                self.settings.neuronet,
            )
            try:
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

    def close(self) -> None:
        self.store.close()


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k != "predictions"}
