"""Load: 50 concurrent /cv clients against the real server (a subprocess) while a training run and a
grab run: zero failed requests; p50/p95 latency printed. 15 s here; CVTOOLS_SLOW=1 (marker `slow`)
holds it for 60 s."""

from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path

import httpx
import pytest

from ..fakeweb import FakeSearch, FakeWeb, serve_images
from ..helpers import class_image
from ..servers import Server, server_env

CLIENTS = 50


def hold_load(tmp_path: Path, tiny_convnext: Path, seconds: float) -> dict[str, float]:
    with FakeWeb() as web:
        search = FakeSearch(web)
        serve_images(web, search, range(60_000, 60_200))
        server = Server(tmp_path / "d", server_env(tiny_convnext, web.url))
        server.start()
        try:
            with httpx.Client(base_url=server.url, timeout=120) as c:
                for cls in ("red", "green", "blue"):
                    c.post("/api/groups", json={"name": cls})
                    files = [("files", (f"{cls}{i}.png", class_image(cls, i), "image/png")) for i in range(30)]
                    c.post(f"/api/groups/{cls}/images", files=files)
                run = c.post("/api/train", json={"mode": "head", "params": {"epochs": 3}}).json()["run"]
                while c.get(f"/api/train/runs/{run}").json()["state"] != "done":
                    time.sleep(0.1)
                c.post("/api/models/promote", json={"run": run, "build_index": False})
                # the background work the clients compete with
                train = c.post("/api/train", json={"mode": "head", "params": {"epochs": 2000}}).json()
                grab = c.post("/api/groups/red/grab", json={"query": "x", "count": 100, "provider": "bing"}).json()
            latencies: list[float] = []
            failures: list[str] = []
            lock = threading.Lock()
            deadline = time.monotonic() + seconds
            bodies = [class_image(c, 700 + i) for c in ("red", "green", "blue") for i in range(4)]

            def client(k: int) -> None:
                with httpx.Client(base_url=server.url, timeout=30) as h:
                    n = 0
                    while time.monotonic() < deadline:
                        t0 = time.perf_counter()
                        try:
                            r = h.post("/cv?n=2", content=bodies[(k + n) % len(bodies)])
                            ok = r.status_code == 200 and len(r.json()) == 2
                        except httpx.HTTPError as exc:
                            ok, r = False, exc  # type: ignore[assignment]
                        with lock:
                            latencies.append(time.perf_counter() - t0)
                            if not ok:
                                failures.append(str(getattr(r, "status_code", r)))
                        n += 1

            threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            status = server.get("/api/status")
            jobs = {j["id"]: j for j in status["jobs"]}
            busy = {k: jobs.get(v["job"], {}).get("state") for k, v in (("train", train), ("grab", grab))}
            httpx.post(f"{server.url}/api/jobs/{train['job']}/cancel")
        finally:
            server.kill()
    assert not failures, failures[:5]
    q = statistics.quantiles(latencies, n=100)
    figures = {
        "requests": len(latencies),
        "per_second": round(len(latencies) / seconds, 1),
        "p50_ms": round(q[49] * 1000, 1),
        "p95_ms": round(q[94] * 1000, 1),
        "train_state_at_end": busy["train"],
        "grab_state_at_end": busy["grab"],
    }
    print(f"load ({CLIENTS} clients, {seconds:.0f} s, training and grab running): {figures}")
    assert busy["train"] == "running", "training was meant to run during the whole load"
    return figures  # type: ignore[return-value]


def test_cv_under_load_while_training_and_grabbing(tmp_path: Path, tiny_convnext: Path) -> None:
    figures = hold_load(tmp_path, tiny_convnext, 15)
    assert figures["requests"] > CLIENTS


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.skipif(os.environ.get("CVTOOLS_SLOW") != "1", reason="set CVTOOLS_SLOW=1 for the long variant")
def test_cv_under_load_60_s(tmp_path: Path, tiny_convnext: Path) -> None:
    hold_load(tmp_path, tiny_convnext, 60)
