"""One way to open an ONNX Runtime session, for the app's runtime and the model bundle (no torch here)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def open_session(model: Path | bytes, *, threads: int | None = None, providers: list[str] | None = None) -> Any:
    """All graph optimisations, `threads` intra-op threads (default: every core), CUDA first when
    onnxruntime has it (unless `providers` says otherwise)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or max(1, os.cpu_count() or 1)
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Waiting threads sleep instead of spinning: the forward pass shares the cores with decoding
    # threads and request handlers, and spinning burns the time they need.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if providers is None:
        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), opts, providers=providers)
