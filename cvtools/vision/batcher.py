"""Micro-batching for concurrent classification requests: one forward pass serves many callers."""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
import torch

from .predictor import Predictor


@dataclass
class _Request:
    predictor: Predictor
    array: np.ndarray
    future: Future[tuple[np.ndarray, np.ndarray, np.ndarray]]


class Batcher:
    def __init__(self, max_batch: int) -> None:
        self.max_batch = max_batch
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="cv-batcher", daemon=True)
        self._thread.start()
        self.batches = 0
        self.items = 0

    def submit(self, predictor: Predictor, array: np.ndarray) -> Future[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        fut: Future[tuple[np.ndarray, np.ndarray, np.ndarray]] = Future()
        self._queue.put(_Request(predictor, array, fut))
        return fut

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            # No waiting window: what queued up while the previous batch ran is the next batch, so a
            # lone client pays nothing and busy clients share forward passes.
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._run(batch)
                    return
                batch.append(item)
            self._run(batch)

    def _run(self, batch: list[_Request]) -> None:
        # Requests prepared for different models (a promote in between) run as separate batches.
        by_model: dict[int, list[_Request]] = {}
        for r in batch:
            by_model.setdefault(id(r.predictor), []).append(r)
        for reqs in by_model.values():
            try:
                probs, feats, logits = reqs[0].predictor.analyze(torch.from_numpy(np.stack([r.array for r in reqs])))
            except BaseException as exc:
                for r in reqs:
                    r.future.set_exception(exc)
                continue
            self.batches += 1
            self.items += len(reqs)
            for i, r in enumerate(reqs):
                r.future.set_result((probs[i], feats[i], logits[i]))
