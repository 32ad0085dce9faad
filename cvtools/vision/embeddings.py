"""Embedding cache keyed by (backbone fingerprint, image sha256, view) and the batched pipeline.

Views: 0 is the centre crop, 1 its mirror image, 2.. are seeded random augmentations, so that
the same image always yields the same views and nothing is computed twice; CANONICAL (-1) is the drawn
part, grey and squared, that the duplicate search compares besides the centre crop.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import imaging
from ..jobs import Job
from .backbone import Backbone
from .drawn import canonical
from .preprocess import Preprocess, flip


@dataclass(frozen=True)
class Item:
    sha256: str
    path: Path


class EmbeddingStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # a cache: losing the last writes only costs recomputation
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS emb (fp TEXT, sha TEXT, view INTEGER, vec BLOB, PRIMARY KEY (fp, sha, view))"
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def missing(self, fp: str, shas: Sequence[str], views: Sequence[int]) -> set[tuple[str, int]]:
        want = {(s, v) for s in shas for v in views}
        have: set[tuple[str, int]] = set()
        uniq = list(dict.fromkeys(shas))
        with self._lock:
            for i in range(0, len(uniq), 500):
                chunk = uniq[i : i + 500]
                rows = self._db.execute(
                    f"SELECT sha, view FROM emb WHERE fp = ? AND sha IN ({','.join('?' * len(chunk))})", [fp, *chunk]
                ).fetchall()
                have.update((r[0], r[1]) for r in rows)
        return want - have

    def put(self, fp: str, rows: list[tuple[str, int, np.ndarray]]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO emb VALUES (?, ?, ?, ?)",
                [(fp, sha, view, vec.astype(np.float32).tobytes()) for sha, view, vec in rows],
            )
            self._db.execute("COMMIT")

    def get(self, fp: str, shas: Sequence[str], view: int, dim: int) -> np.ndarray:
        """Rows in the order of shas; raises KeyError for a missing one."""
        found: dict[str, bytes] = {}
        uniq = list(dict.fromkeys(shas))
        with self._lock:
            for i in range(0, len(uniq), 500):
                chunk = uniq[i : i + 500]
                for sha, vec in self._db.execute(
                    f"SELECT sha, vec FROM emb WHERE fp = ? AND view = ? AND sha IN ({','.join('?' * len(chunk))})",
                    [fp, view, *chunk],
                ):
                    found[sha] = vec
        out = np.empty((len(shas), dim), dtype=np.float32)
        for i, sha in enumerate(shas):
            out[i] = np.frombuffer(found[sha], dtype=np.float32)
        return out


CANONICAL = -1


def view_images(img: Image.Image, views: Sequence[int], sha: str, pre: Preprocess) -> list[Image.Image]:
    """The images of the given views of one decoded image; the centre crop is computed once for the
    plain and the mirror view."""
    centre: Image.Image | None = None
    out = []
    for view in views:
        if view in (0, 1):
            if centre is None:
                centre = pre.center(img)
            out.append(centre if view == 0 else flip(centre))
        elif view == CANONICAL:
            out.append(canonical(img, pre.size))
        else:
            seed = int(hashlib.sha256(f"{sha}:{view}".encode()).hexdigest()[:12], 16)
            out.append(pre.augmented(img, random.Random(seed)))
    return out


DECODE_NICENESS = 10


def yield_to_forward() -> None:
    """Lower this (decoding) thread's priority. The forward pass's threads wait for each other after
    every layer, so one of them preempted by a decoder stalls both; at a lower priority the decoders
    run in the gaps and still keep ahead (they need a quarter to a third of the CPU). Linux only: there
    setpriority accepts a thread id; elsewhere the id would be read as a process id."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), DECODE_NICENESS)


class Pipeline:
    """Decode in a bounded thread pool, overlapped with batched forward passes."""

    def __init__(
        self,
        *,
        pre: Preprocess,
        forward: Callable[[torch.Tensor], torch.Tensor],
        batch_size: int,
        max_pixels: int,
        workers: int = 2,
    ) -> None:
        self.pre = pre
        self.forward = forward
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        self.workers = workers

    def _decode(self, item: Item, views: Sequence[int]) -> list[tuple[str, int, np.ndarray]] | str:
        try:
            img = imaging.load_rgb(item.path, max_pixels=self.max_pixels, min_side=self.pre.resize_side())
        except (imaging.ImageRejected, OSError) as exc:
            return f"{item.path.name}: {exc}"
        images = view_images(img, views, item.sha256, self.pre)
        return [(item.sha256, v, self.pre.array(im)) for v, im in zip(views, images, strict=True)]

    def run(
        self,
        work: list[tuple[Item, list[int]]],
        *,
        progress: Callable[[int, int], None] | None = None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> Iterator[tuple[list[tuple[str, int]], np.ndarray]]:
        """Yield (keys, vectors) per batch; an image that fails to decode is skipped."""
        self.errors: list[str] = []
        total = len(work)
        ahead = max(4, 2 * self.batch_size)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="decode", initializer=yield_to_forward) as pool:
            pending: list[Future[list[tuple[str, int, np.ndarray]] | str]] = []
            it = iter(work)
            done = 0
            keys: list[tuple[str, int]] = []
            arrays: list[np.ndarray] = []

            def fill() -> None:
                while len(pending) < ahead:
                    nxt = next(it, None)
                    if nxt is None:
                        return
                    pending.append(pool.submit(self._decode, nxt[0], nxt[1]))

            fill()
            while pending:
                if cancelled():
                    for f in pending:
                        f.cancel()
                    return
                result = pending.pop(0).result()
                fill()
                done += 1
                if isinstance(result, str):
                    self.errors.append(result)
                else:
                    for sha, view, arr in result:
                        keys.append((sha, view))
                        arrays.append(arr)
                while len(arrays) >= self.batch_size:
                    yield keys[: self.batch_size], self._forward(arrays[: self.batch_size])
                    keys, arrays = keys[self.batch_size :], arrays[self.batch_size :]
                if progress:
                    progress(done, total)
            if arrays:
                yield keys, self._forward(arrays)

    def _forward(self, arrays: list[np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            out = self.forward(torch.from_numpy(np.stack(arrays)))
        return out.float().cpu().numpy()


def embed_missing(
    store: EmbeddingStore,
    backbone: Backbone,
    work: list[tuple[Item, list[int]]],
    *,
    batch_size: int,
    max_pixels: int,
    job: Job | None,
    label: str = "Embedding",
) -> tuple[int, list[str]]:
    """Compute and cache the views not yet in the store. Returns (images computed, decode errors)."""
    fp = backbone.fingerprint
    # One look-up per distinct set of views, not one per image.
    by_views: dict[tuple[int, ...], list[Item]] = {}
    seen: set[str] = set()
    for item, views in work:
        if item.sha256 not in seen:
            seen.add(item.sha256)
            by_views.setdefault(tuple(views), []).append(item)
    needed: list[tuple[Item, list[int]]] = []
    for views, items in by_views.items():
        missing = store.missing(fp, [i.sha256 for i in items], list(views))
        for item in items:
            miss = sorted(v for v in views if (item.sha256, v) in missing)
            if miss:
                needed.append((item, miss))
    if not needed:
        return 0, []
    pipe = Pipeline(pre=backbone.preprocess, forward=backbone.features, batch_size=batch_size, max_pixels=max_pixels)

    def progress(done: int, total: int) -> None:
        if job:
            job.progress(done, total, f"{label}: {done} of {total} images")

    for keys, vecs in pipe.run(
        needed, progress=progress, cancelled=(lambda: job.cancelled) if job else (lambda: False)
    ):
        store.put(fp, [(sha, view, vec) for (sha, view), vec in zip(keys, vecs, strict=True)])
    if job:
        job.check()
    return len(needed), pipe.errors


def cached_views(
    store: EmbeddingStore,
    backbone: Backbone,
    items: list[Item],
    views: list[int],
    *,
    batch_size: int,
    max_pixels: int,
    job: Job | None,
    label: str = "Embedding",
) -> tuple[list[int], list[np.ndarray], list[str]]:
    """The given views of the items, computed where missing: (the positions of the items that have them,
    one array per view with a row per such item, the reasons the others were skipped)."""
    _, errors = embed_missing(
        store, backbone, [(i, views) for i in items], batch_size=batch_size, max_pixels=max_pixels, job=job, label=label
    )
    fp = backbone.fingerprint
    lacking = store.missing(fp, [i.sha256 for i in items], views)
    kept = [k for k, i in enumerate(items) if not any((i.sha256, v) in lacking for v in views)]
    shas = [items[k].sha256 for k in kept]
    return kept, [store.get(fp, shas, v, backbone.feature_dim) for v in views], errors
