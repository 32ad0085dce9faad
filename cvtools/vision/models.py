"""The networks in memory: the configured backbone and the production model, each loaded once under one
lock (falling back and saying why), put on ONNX Runtime when it gives PyTorch's answers; promotion and
the model versions."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import torch

from ..errors import BadInput, NoModel, NotFound
from ..schemas import Event, RunRecord, RunState, TrainMode
from ..settings import Settings
from .backbone import Backbone, load_backbone
from .onnx_runtime import accelerate
from .predictor import Predictor, load_predictor
from .registry import Registry

log = logging.getLogger(__name__)

# How much slower the frozen network runs on PyTorch than on ONNX Runtime on a 2-core CPU, end to end
# (docs/BENCHMARKS.md, runtime_bench): the offline EfficientNet-Lite0 and a ConvNeXtV2.
SLOWER_ON_TORCH = {"efficientnet": "4×", "hf": "1.5×"}

Publish = Callable[[Event, dict[str, Any]], None]


class ModelManager:
    def __init__(self, settings: Settings, registry: Registry, publish: Publish) -> None:
        self.settings = settings
        self.registry = registry
        self.publish = publish
        for run in registry.mark_interrupted():
            log.warning("training run %s was interrupted by a stop of the server", run)
        self._lock = threading.Lock()
        self._backbone: Backbone | None = None
        self._production: Predictor | None = None
        self._production_loaded = False
        self.production_error: str | None = None
        torch.set_num_threads(max(1, os.cpu_count() or 1))

    # ---- loading -------------------------------------------------------------------------------
    def backbone(self) -> Backbone:
        """The configured network, loaded once under the lock (falls back offline)."""
        if self._backbone is None:
            with self._lock:
                if self._backbone is None:
                    self._backbone = self.accelerate(load_backbone(self.settings.neuronet))
        return self._backbone

    def loaded_backbone(self) -> Backbone | None:
        """The backbone if it is loaded already (never loads it)."""
        return self._backbone

    def accelerate(self, bb: Backbone) -> Backbone:
        """Put the frozen feature extractor on ONNX Runtime when configured and in parity."""
        if self.settings.inference_runtime == "torch" or bb.runtime is not None:
            return bb
        path = self.settings.state_dir / "onnx" / f"{bb.fingerprint}.onnx"
        bb.runtime, bb.runtime_note = accelerate(bb.features_torch, bb.model, bb.preprocess.size, path)
        if bb.runtime is None:
            log.warning("inference runtime: %s", bb.runtime_note)
        return bb

    def production(self) -> Predictor | None:
        if not self._production_loaded:
            with self._lock:
                if not self._production_loaded:
                    self._load_production()
        return self._production

    def peek_production(self) -> Predictor | None:
        """The production model if it is loaded already (never loads it)."""
        return self._production

    def _load_production(self) -> None:
        run = self.registry.production()
        self._production_loaded = True
        if run is None:
            return
        try:
            self._production = load_predictor(self.registry.run_dir(run), self._backbone)
            self.accelerate(self._production.backbone)
            self.production_error = None
        except Exception as exc:
            log.warning("production model %s cannot be loaded: %s", run, exc)
            self._production = None
            self.production_error = (
                f"The production model {run} could not be loaded ({exc}); train again or set another version as main."
            )

    def require_production(self) -> Predictor:
        p = self.production()
        if p is None:
            raise NoModel(self.production_error or "train a model and set it as main first")
        return p

    def warm_up(self) -> None:
        self.backbone()
        self.production()

    def load_run(self, run: str) -> Predictor:
        """A finished run's model (the production one when it is that run)."""
        p = self._production
        if p is not None and p.run == run:
            return p
        record = self.registry.get(run)
        return load_predictor(self.registry.run_dir(run), self._backbone if record.mode == TrainMode.HEAD else None)

    # ---- versions --------------------------------------------------------------------------------
    def versions(self) -> dict[str, Any]:
        done = [r for r in self.registry.runs() if r.state == RunState.DONE]
        return {
            "production": self.registry.production(),
            "models": [
                {
                    "run": r.id,
                    "accuracy": r.accuracy or 0.0,
                    "created": r.created,
                    "mode": r.mode.value,
                    "backbone": r.backbone,
                    "classes": r.classes,
                }
                for r in done
            ],
        }

    def finished(self, run: str) -> RunRecord:
        record = self.registry.get(run)
        if record.state != RunState.DONE:
            raise BadInput(f"run {run} is {record.state}; only a finished run can be used")
        return record

    def promote(self, run: str) -> Predictor:
        """Load the run's model, then switch atomically: requests in flight finish on the old one."""
        record = self.finished(run)
        base = self.backbone() if record.mode == TrainMode.HEAD else None
        try:
            predictor = load_predictor(self.registry.run_dir(run), base)
            self.accelerate(predictor.backbone)
        except NotFound:
            raise
        except Exception as exc:
            raise BadInput(f"run {run} cannot be loaded: {exc}") from None
        with self._lock:
            self.registry.set_production(run)
            self._production, self._production_loaded, self.production_error = predictor, True, None
        self.publish(Event.MODEL, self.status())
        return predictor

    # ---- status ----------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        bb, prod = self._backbone, self._production
        active = prod.backbone if prod else bb
        message = ((bb.message if bb else "") + " " + (self.production_error or "")).strip()
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
