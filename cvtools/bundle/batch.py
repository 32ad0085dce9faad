"""Classifying many images with a bundle: on this machine (threads), or streamed through Ray Data with
the bundle on every worker. Either way the answers go to a Sink batch by batch, so a stopped run loses
nothing already written and the next run goes on where it stopped."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import netfetch
from ..errors import CVError
from ..vision.answers import failed
from . import extra
from .model import Bundle
from .sink import Sink

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class BatchOptions:
    policy: netfetch.UrlPolicy = field(default_factory=netfetch.UrlPolicy)
    unknown_detection: bool = True
    batch_size: int = 32
    threads: int = 2  # decoding threads per process


def read_source(target: str, policy: netfetch.UrlPolicy) -> bytes:
    """An http(s) URL under the URL policy, or a local file of the operator's own, read as given."""
    if target.lower().startswith(("http://", "https://")):
        return netfetch.fetch_url(target, policy)[0]
    return netfetch.read_local(Path(target), policy.max_bytes)


def answer_chunk(bundle: Bundle, targets: list[str], opts: BatchOptions, pool: ThreadPoolExecutor) -> list[dict]:
    """One row per target: its answer as an item of /api/classify, or its own error."""

    def decode(target: str) -> np.ndarray | dict[str, Any]:
        try:
            return bundle.array(bundle.decode(read_source(target, opts.policy)))
        except (CVError, OSError) as exc:
            return {"path": target, **failed(exc)}

    decoded = list(pool.map(decode, targets))
    good = [i for i, d in enumerate(decoded) if isinstance(d, np.ndarray)]
    rows: list[dict[str, Any]] = [d if isinstance(d, dict) else {} for d in decoded]
    if good:
        probs, feats = bundle.run(np.stack([decoded[i] for i in good]))  # type: ignore[misc]
        for k, i in enumerate(good):
            rows[i] = {
                "path": targets[i],
                **bundle.record(probs[k], feats[k], unknown_detection=opts.unknown_detection),
            }
    return rows


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def classify_local(bundle: Bundle, targets: list[str], sink: Sink, opts: BatchOptions, progress: Progress) -> int:
    """This machine alone, no Ray: decoding threads and one ONNX Runtime session."""
    done = 0
    with ThreadPoolExecutor(max(1, opts.threads)) as pool:
        for chunk in chunks(targets, opts.batch_size):
            done += sink.write(answer_chunk(bundle, chunk, opts, pool))
            progress(done, len(targets))
    return done


class RayWorker:
    """A Ray Data actor: the bundle loaded once (one ONNX Runtime thread per CPU it was given)."""

    def __init__(self, files: dict[str, bytes], opts: BatchOptions) -> None:
        self.bundle = Bundle.from_files(files, threads=1)
        self.opts = opts
        self.pool = ThreadPoolExecutor(max(1, opts.threads))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        paths = [str(p) for p in batch["path"]]
        rows = answer_chunk(self.bundle, paths, self.opts, self.pool)
        return {"path": np.array(paths, dtype=object), "row": np.array([json.dumps(r) for r in rows], dtype=object)}


def classify_ray(
    files: dict[str, bytes], targets: list[str], sink: Sink, opts: BatchOptions, progress: Progress, *, workers: int
) -> int:
    """Streamed through Ray Data: `workers` actors each hold the bundle; rows are written as they arrive."""
    ray = extra.load("ray")
    extra.load("ray.data")
    ray.data.DataContext.get_current().enable_progress_bars = False
    ds = ray.data.from_items([{"path": t} for t in targets])
    ds = ds.map_batches(
        RayWorker,
        fn_constructor_kwargs={"files": files, "opts": opts},
        batch_size=opts.batch_size,
        concurrency=workers,
        num_cpus=1,
    )
    done = 0
    for batch in ds.iter_batches(batch_size=opts.batch_size, batch_format="numpy"):
        done += sink.write(json.loads(r) for r in batch["row"])
        progress(done, len(targets))
    return done
