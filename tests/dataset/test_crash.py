"""Crash consistency: the real server as a subprocess runs a scripted mix of operations (uploads,
status changes, moves, renames, group deletes, a grab from a local fake engine, training, promote)
and is killed with SIGKILL at random moments. After every restart: every catalog image's file is
where its status says, every group-folder file is catalogued, no sha256 known before is gone, and
the production model loads and answers. Seeded; CVTOOLS_SLOW=1 (marker `slow`) kills 100 times."""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ..fakeweb import FakeSearch, FakeWeb, serve_images
from ..helpers import assert_consistent, class_image, image_bytes
from ..servers import Server, server_env

KILLS = 30
SLOW_KILLS = 100


def catalog_shas(data: Path) -> set[str]:
    db = sqlite3.connect(f"file:{data / '.cvtools' / 'catalog.sqlite'}?mode=ro", uri=True)
    try:
        return {r[0] for r in db.execute("SELECT sha256 FROM images")}
    finally:
        db.close()


def workload(url: str, rng: random.Random, stop: threading.Event, counter: list[int]) -> None:
    """Operations one after the other until the server dies under them."""
    c = httpx.Client(base_url=url, timeout=30)
    try:
        while not stop.is_set():
            groups = [g["name"] for g in c.get("/api/groups").json()["groups"]]
            op = rng.choice(["upload", "upload", "status", "move", "rename", "delete", "grab", "train", "promote"])
            group = rng.choice(groups) if groups else None
            if op == "upload" or not groups:
                target = group or "red"
                c.post("/api/groups", json={"name": target})
                counter[0] += 1
                files = [
                    (
                        "files",
                        (
                            f"u{counter[0]}-{k}.png",
                            image_bytes(10_000 + counter[0] * 10 + k, size=(24, 20)),
                            "image/png",
                        ),
                    )
                    for k in range(rng.randint(1, 8))
                ]
                c.post(f"/api/groups/{target}/images", files=files)
            elif op in ("status", "move"):
                status = rng.choice(["group", "new", "deleted"])
                ids = [
                    i["id"]
                    for i in c.get(f"/api/groups/{group}/images?status={status}&limit=50").json().get("images", [])
                ]
                if ids:
                    pick = rng.sample(ids, rng.randint(1, len(ids)))
                    if op == "status":
                        c.post(
                            "/api/images/status", json={"ids": pick, "status": rng.choice(["group", "new", "deleted"])}
                        )
                    else:
                        c.post("/api/images/move", json={"ids": pick, "group": rng.choice(groups)})
            elif op == "rename" and "/" not in group:
                c.patch(f"/api/groups/{group}", json={"name": f"{group.split('-')[0]}-{rng.randint(0, 99)}"})
            elif op == "delete" and len(groups) > 3:
                c.delete(f"/api/groups/{group}")
            elif op == "grab":
                c.post(f"/api/groups/{group}/grab", json={"query": "x", "count": 6, "provider": "bing"})
            elif op == "train":
                c.post("/api/train", json={"mode": "head", "params": {"epochs": 3}})
            elif op == "promote":
                done = [r["id"] for r in c.get("/api/train/runs").json()["runs"] if r["state"] == "done"]
                if done:
                    c.post("/api/models/promote", json={"run": rng.choice(done), "build_index": rng.random() < 0.5})
    except (httpx.HTTPError, ValueError, KeyError):
        pass  # the server was killed under us, as intended
    finally:
        c.close()


@pytest.fixture
def fake_search() -> Iterator[FakeSearch]:
    with FakeWeb() as web:
        engine = FakeSearch(web)
        serve_images(web, engine, range(50_000, 50_400))
        yield engine


def run_kills(kills: int, tmp_path: Path, tiny_convnext: Path, search: FakeSearch) -> dict[str, int]:
    data = tmp_path / "d"
    server = Server(data, server_env(tiny_convnext, search.web.url))
    server.start()
    with httpx.Client(base_url=server.url, timeout=120) as c:
        for cls in ("red", "green", "blue"):
            c.post("/api/groups", json={"name": cls})
            files = [("files", (f"{cls}{i}.png", class_image(cls, i), "image/png")) for i in range(6)]
            c.post(f"/api/groups/{cls}/images", files=files)
        run = c.post("/api/train", json={"mode": "head", "params": {"epochs": 3}}).json()["run"]
        while c.get(f"/api/train/runs/{run}").json()["state"] not in ("done", "failed"):
            time.sleep(0.1)
        assert c.post("/api/models/promote", json={"run": run, "build_index": False}).status_code == 200
    rng = random.Random(20261122)
    counter = [0]
    stats = {"kills": 0, "shas_checked": 0, "max_images": 0}
    probe = class_image("red", 999)
    try:
        for _ in range(kills):
            known = catalog_shas(data)
            stop = threading.Event()
            worker = threading.Thread(target=workload, args=(server.url, random.Random(rng.random()), stop, counter))
            worker.start()
            time.sleep(rng.uniform(0.05, 1.5))
            server.kill()
            stop.set()
            worker.join(30)
            stats["kills"] += 1
            server.start()
            # consistency on disk and in the catalog, nothing known before is gone
            assert_consistent(data)
            after = catalog_shas(data)
            assert known <= after, f"lost: {sorted(known - after)[:3]}"
            stats["shas_checked"] += len(known)
            stats["max_images"] = max(stats["max_images"], len(after))
            # the production model loads and answers
            r = httpx.post(server.url + "/cv", content=probe, timeout=60)
            assert r.status_code == 200, r.text
            production = server.get("/api/models")["production"]
            assert server.get("/api/status")["model"]["run"] == production
            runs = server.get("/api/train/runs")["runs"]
            assert not [x for x in runs if x["state"] in ("queued", "running") and x["id"] != production]
            jobs_running = [j for j in server.get("/api/status")["jobs"] if j["state"] == "running"]
            assert all(j["kind"] == "rescan" for j in jobs_running) or not jobs_running
    finally:
        server.kill()
    return stats


@pytest.mark.timeout(900)
def test_kill_9_at_random_moments(tmp_path: Path, tiny_convnext: Path, fake_search: FakeSearch) -> None:
    stats = run_kills(KILLS, tmp_path, tiny_convnext, fake_search)
    assert stats["kills"] == KILLS and stats["shas_checked"] > 0
    print(f"crash test: {stats}")


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.skipif(os.environ.get("CVTOOLS_SLOW") != "1", reason="set CVTOOLS_SLOW=1 for the long variant")
def test_kill_9_many_times(tmp_path: Path, tiny_convnext: Path, fake_search: FakeSearch) -> None:
    stats = run_kills(SLOW_KILLS, tmp_path, tiny_convnext, fake_search)
    assert stats["kills"] == SLOW_KILLS
    print(f"crash test (slow): {stats}")
