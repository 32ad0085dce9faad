"""The grab job: search providers in turn, download in parallel, never offer an image twice."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np

from .. import imaging, netfetch
from ..dataset import Dataset, Incoming
from ..errors import BadInput, Conflict, CVError, Forbidden, NotAnImage, NotFound, TooLarge
from ..jobs import Job
from ..settings import Settings
from .base import Blocked, Candidate, Provider
from .bing import Bing
from .duckduckgo import DuckDuckGo
from .google import Google
from .keyed import Brave, GoogleCSE
from .openverse import Openverse

log = logging.getLogger(__name__)

AUTO_CHAIN = ("google", "bing", "duckduckgo")
MAX_PAGES = 30  # per provider and grab
MAX_ATTEMPTS_PER_IMAGE = 8  # downloads tried per image asked for, before giving up


def providers(settings: Settings) -> dict[str, Provider]:
    """The providers available with this configuration (keyed ones only with their keys)."""
    out: dict[str, Provider] = {
        "google": Google(settings.grab_google_url),
        "bing": Bing(settings.grab_bing_url),
        "duckduckgo": DuckDuckGo(settings.grab_duckduckgo_url),
        "openverse": Openverse(settings.grab_openverse_url),
    }
    if settings.google_cse_key and settings.google_cse_cx:
        out["google_cse"] = GoogleCSE(settings.grab_google_cse_url, settings.google_cse_key, settings.google_cse_cx)
    if settings.brave_api_key:
        out["brave"] = Brave(settings.grab_brave_url, settings.brave_api_key)
    return out


def chain(settings: Settings, provider: str | None) -> list[Provider]:
    available = providers(settings)
    if provider in (None, "", "auto"):
        keyed = [available[k] for k in ("google_cse", "brave") if k in available]
        return keyed + [available[k] for k in AUTO_CHAIN]
    if provider not in available:
        known = ["auto", *available]
        hint = " (its API key is not configured)" if provider in ("google_cse", "brave") else ""
        raise BadInput(f"unknown provider {provider!r}{hint}; use one of {', '.join(known)}")
    return [available[provider]]


def normalise_url(url: str) -> str:
    """Scheme and host in lower case, default port and fragment dropped: one spelling per image URL."""
    try:
        p = urlsplit(url.strip())
        host = (p.hostname or "").lower()
        port = p.port
    except ValueError:
        return url.strip()
    if port and not ((p.scheme == "http" and port == 80) or (p.scheme == "https" and port == 443)):
        host = f"{host}:{port}"
    return urlunsplit((p.scheme.lower(), host, p.path or "/", p.query, ""))


def _candidates(
    client: httpx.Client, chain_: list[Provider], query: str, skipped: Counter[str], cancelled: Any
) -> Iterator[Candidate]:
    """Candidates from each provider in turn; a provider that is blocked, empty or repeats itself ends."""
    seen: set[str] = set()
    for prov in chain_:
        cursor: Any = None
        for _ in range(MAX_PAGES):
            if cancelled():
                return
            try:
                page, cursor = prov.search(client, query, cursor)
            except Blocked as exc:
                log.info("grab: %s blocked: %s", prov.name, exc)
                skipped[f"{prov.name} blocked"] += 1
                break
            fresh = [c for c in page if normalise_url(c.url) not in seen]
            if not fresh:
                break  # nothing new: the engine repeats its last page
            for c in fresh:
                seen.add(normalise_url(c.url))
                yield c
            if cursor is None:
                break


class Grabber:
    def __init__(self, dataset: Dataset, settings: Settings) -> None:
        self.dataset = dataset
        self.settings = settings
        self.policy = netfetch.UrlPolicy(
            allow_private=settings.allow_private_urls, max_bytes=min(settings.max_upload_bytes, 50 * 1024 * 1024)
        )

    def run(self, group: str, query: str, count: int, provider: str | None, job: Job) -> dict[str, Any]:
        grab = _Grab(self, self.dataset.require_group(group), count, job)
        job.progress(0, count, f"Downloaded 0 of {count}")
        with httpx.Client(trust_env=False) as client:
            grab.pump(_candidates(client, chain(self.settings, provider), query, grab.skipped, lambda: job.cancelled))
        if grab.added < count and not job.cancelled:
            job.progress(
                grab.added, count, f"Downloaded {grab.added} of {count}; the providers have no more new images"
            )
        return {"added": grab.added, "skipped": dict(grab.skipped), "query": query, "group": grab.group}


class _Grab:
    """One grab: candidates downloaded in parallel (a few per host), each checked and taken in as New,
    until `count` are in; never an image the catalog has seen (by URL, bytes or perceptual hash)."""

    def __init__(self, grabber: Grabber, group: str, count: int, job: Job) -> None:
        self.g, self.s, self.group, self.count, self.job = grabber, grabber.settings, group, count, job
        self.skipped: Counter[str] = Counter()
        rows = grabber.dataset.seen()
        self.sources = {normalise_url(r["source"]) for r in rows if r["source"]}
        self.hashes = np.array([int(r["phash"], 16) for r in rows if r["phash"]], dtype=np.uint64)
        self.batch_shas: set[str] = set()
        self.added = self.attempts = 0
        self.lock, self.host_lock = threading.Lock(), threading.Lock()
        self.limits: dict[str, threading.Semaphore] = {}

    def pump(self, source: Iterator[Candidate]) -> None:
        with ThreadPoolExecutor(self.s.grab_workers, thread_name_prefix="grab") as pool:
            pending: set[Future[str | None]] = set()
            exhausted = False
            while True:
                # Keep enough downloads in flight to reach the count despite the ones that fail.
                want = min(self.s.grab_workers * 2, max(0, (self.count - self.added) * 2))
                while not exhausted and not self.job.cancelled and len(pending) < want:
                    if self.attempts >= self.count * MAX_ATTEMPTS_PER_IMAGE:
                        break
                    cand = next(source, None)
                    exhausted = cand is None
                    if cand is not None and self._new_url(cand):
                        self.attempts += 1
                        pending.add(pool.submit(self._work, cand))
                if not pending:
                    return
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    reason = fut.result()
                    if reason and reason != "not needed":
                        self.skipped[reason] += 1
                if self.added >= self.count or self.job.cancelled:
                    for fut in pending:
                        fut.cancel()
                    wait(pending)
                    return

    def _new_url(self, cand: Candidate) -> bool:
        url = normalise_url(cand.url)
        if url in self.sources:
            self.skipped["already seen (URL)"] += 1
            return False
        self.sources.add(url)
        return True

    def _work(self, cand: Candidate) -> str | None:
        """None when taken in, else the skip reason."""
        host = urlsplit(cand.url).netloc.lower()
        with self.host_lock:
            sem = self.limits.setdefault(host, threading.Semaphore(self.s.grab_per_host))
        try:
            with sem:
                data = netfetch.fetch_url(cand.url, self.g.policy)[0]
        except Forbidden:
            return "refused address"
        except TooLarge:
            return "too large"
        except NotAnImage:
            return "not an image"
        except CVError:
            return "download failed"
        return self._accept(cand, data)

    def _similar(self, h: int) -> bool:
        pool = self.hashes
        return bool(pool.size) and int(np.bitwise_count(pool ^ np.uint64(h)).min()) <= self.s.phash_max_bits

    def _accept(self, cand: Candidate, data: bytes) -> str | None:
        try:
            info = imaging.check_image(data, max_pixels=self.s.max_image_pixels)
        except imaging.ImageRejected as exc:
            return "too large" if exc.too_large else "corrupt or not an image"
        if min(info.width, info.height) < self.s.grab_min_side:
            return "too small"
        sha = hashlib.sha256(data).hexdigest()
        with self.lock:
            if self.added >= self.count:
                return "not needed"
            if sha in self.batch_shas or self.g.dataset.known_sha(sha):
                return "duplicate (same bytes)"
            if self._similar(int(info.phash, 16)):
                return "duplicate (similar image)"
            reason = self._take(cand, data)
            if reason is None:
                self.batch_shas.add(sha)
                self.hashes = np.append(self.hashes, np.uint64(int(info.phash, 16)))
                self.added += 1
                self.job.progress(self.added, self.count, f"Downloaded {self.added} of {self.count}")
            return reason

    def _take(self, cand: Candidate, data: bytes) -> str | None:
        tmp = self.g.dataset.new_tmp_path()
        tmp.write_bytes(data)
        name = PurePosixPath(urlsplit(cand.url).path).name or f"grab-{self.added + 1}"
        try:
            result = self.g.dataset.add_images(
                self.group, [Incoming(name=name, path=tmp, source=cand.url)], status="new"
            )
        except (NotFound, Conflict):
            raise Conflict(
                f"the group {self.group!r} was renamed or deleted during the grab; {self.added} image(s) had been added"
            ) from None
        if not result.added:
            return result.skipped[0]["reason"] if result.skipped else "not added"
        return None
