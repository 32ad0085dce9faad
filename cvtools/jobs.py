"""Background jobs: one worker thread per kind, progress as data, cooperative cancel."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .errors import CVError, NotFound

log = logging.getLogger(__name__)

FINISHED = ("done", "failed", "cancelled")


class Cancelled(Exception):
    """Raised by a job's own code when it sees the cancel flag."""


@dataclass
class Job:
    id: str
    kind: str
    state: str = "queued"
    done: int = 0
    total: int = 0
    message: str = ""
    result: Any = None
    error: str | None = None
    created: float = field(default_factory=time.time)
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _runner: JobRunner | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "progress": {"done": self.done, "total": self.total, "message": self.message},
            "result": self.result,
            "error": self.error,
        }

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        if self._cancel.is_set():
            raise Cancelled()

    def progress(self, done: int, total: int | None = None, message: str | None = None) -> None:
        self.done = done
        if total is not None:
            self.total = total
        if message is not None:
            self.message = message
        if self._runner:
            self._runner.publish(self, throttle=True)


JobFn = Callable[[Job], Any]


class JobRunner:
    """Runs jobs off the event loop; listeners receive every job change (throttled progress)."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._executors: dict[str, ThreadPoolExecutor] = {}
        self._lock = threading.Lock()
        self._last_publish: dict[str, float] = {}
        self.listeners: list[Callable[[dict[str, Any]], None]] = []

    def _executor(self, kind: str) -> ThreadPoolExecutor:
        with self._lock:
            if kind not in self._executors:
                self._executors[kind] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"job-{kind}")
            return self._executors[kind]

    def publish(self, job: Job, throttle: bool = False) -> None:
        now = time.monotonic()
        if throttle and now - self._last_publish.get(job.id, 0) < 0.1:
            return
        self._last_publish[job.id] = now
        data = job.to_json()
        for fn in list(self.listeners):
            try:
                fn(data)
            except Exception:
                log.exception("job listener failed")

    def submit(self, kind: str, fn: JobFn, *, message: str = "Waiting") -> Job:
        job = Job(id=secrets.token_hex(6), kind=kind, message=message, _runner=self)
        with self._lock:
            self._jobs[job.id] = job
            self._prune()
        self.publish(job)
        self._executor(kind).submit(self._run, job, fn)
        return job

    def _run(self, job: Job, fn: JobFn) -> None:
        if job.cancelled:
            job.state = "cancelled"
            self.publish(job)
            return
        job.state = "running"
        self.publish(job)
        try:
            result = fn(job)
        except Cancelled:
            job.state, job.message = "cancelled", "Cancelled"
        except CVError as exc:
            job.state, job.error = "failed", exc.detail
        except Exception as exc:
            log.exception("job %s (%s) failed", job.id, job.kind)
            job.state, job.error = "failed", f"{type(exc).__name__}: {exc}"
        else:
            job.result = result
            job.state = "cancelled" if job.cancelled else "done"
        self.publish(job)

    def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"job {job_id!r} does not exist")
        return job

    def cancel(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job.state not in FINISHED:
            job._cancel.set()
            if job.state == "queued":
                job.state, job.message = "cancelled", "Cancelled"
            self.publish(job)
        return job

    def active(self, kind: str | None = None) -> list[Job]:
        return [j for j in self._jobs.values() if j.state not in FINISHED and (kind is None or j.kind == kind)]

    def recent(self, limit: int = 20) -> list[Job]:
        return sorted(self._jobs.values(), key=lambda j: j.created, reverse=True)[:limit]

    def _prune(self) -> None:
        finished = sorted((j for j in self._jobs.values() if j.state in FINISHED), key=lambda j: j.created)
        for job in finished[:-200]:
            self._jobs.pop(job.id, None)
            self._last_publish.pop(job.id, None)

    def wait(self, job_id: str, timeout: float = 60) -> Job:
        """For tests and the CLI: block until the job ends."""
        deadline = time.monotonic() + timeout
        job = self.get(job_id)
        while job.state not in FINISHED and time.monotonic() < deadline:
            time.sleep(0.02)
        return job

    def shutdown(self) -> None:
        for job in self.active():
            job._cancel.set()
        for ex in self._executors.values():
            ex.shutdown(wait=True, cancel_futures=True)
