"""Dataset benchmark: start-up time to the first answer, a 5,000-image group, status changes.

python -m benchmarks.dataset_bench [--images 5000]
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from .common import cpu_note, environment, start_server


def start(dataset: Path) -> tuple[subprocess.Popen, str, float]:
    return start_server(dataset, {"CVTOOLS_PRELOAD_MODEL": "false"})


def bulk_actions(c: httpx.Client, url: str, keep: list[str]) -> dict[str, float]:
    """The Dataset page's "select all but three" over the whole group (loaded or not): delete, the undo
    of it, then a move of all of them; each one request, timed to its answer (files moved)."""
    httpx.post(url + "/api/groups", json={"name": "other"})
    every = {"group": "big", "status": "group", "except": keep}
    out = {}
    t0 = time.perf_counter()
    r = c.post(url + "/api/images/status", json={"every": every, "status": "deleted"})
    out["delete_all_but_3_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    out["delete_all_but_3_images"] = r.json()["updated"]
    t0 = time.perf_counter()
    back = c.post(url + "/api/undo", json={"token": r.headers["X-CVTools-Undo"]})
    out["undo_of_it_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    out["undo_of_it_images"] = back.json()["undone"]
    t0 = time.perf_counter()
    moved = c.post(url + "/api/images/move", json={"every": every, "group": "other"})
    out["move_all_but_3_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    out["move_all_but_3_images"] = moved.json()["moved"]
    return out


def main() -> None:
    environment()
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=5000)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cvtools-ds-"))
    dataset = work / "dataset"
    proc, url, empty_start = start(dataset)
    httpx.post(url + "/api/groups", json={"name": "big"})
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for start_i in range(0, args.images, 250):
        files = []
        for i in range(start_i, min(args.images, start_i + 250)):
            out = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(out, "PNG")
            files.append(("files", (f"img{i}.png", out.getvalue(), "image/png")))
        httpx.post(url + "/api/groups/big/images", files=files, timeout=300).raise_for_status()
    upload_s = time.perf_counter() - t0
    with httpx.Client(timeout=60) as c:
        c.get(url + "/api/groups/big/images?limit=200")
        t0 = time.perf_counter()
        first = c.get(url + "/api/groups/big/images?limit=200").json()
        first_page_ms = (time.perf_counter() - t0) * 1000
        t0 = time.perf_counter()
        n = 0
        for offset in range(0, args.images, 1000):
            n += len(c.get(url + f"/api/groups/big/images?offset={offset}&limit=1000").json()["images"])
        all_ms = (time.perf_counter() - t0) * 1000
        ids = [
            i["id"]
            for off in range(0, 500, 250)
            for i in c.get(url + f"/api/groups/big/images?offset={off}&limit=250").json()["images"]
        ]
        t0 = time.perf_counter()
        c.post(url + "/api/images/status", json={"ids": ids, "status": "new"}).raise_for_status()
        status_ms = (time.perf_counter() - t0) * 1000
        bulk = bulk_actions(c, url, ids[:3])
    proc.terminate()
    proc.wait(10)
    proc, url, full_start = start(dataset)
    proc.terminate()
    proc.wait(10)
    print(f"# {cpu_note()}")
    print(
        json.dumps(
            {
                "startup_to_first_answer_s": {
                    "empty_dataset": round(empty_start, 2),
                    f"{args.images}_images": round(full_start, 2),
                },
                "upload_s": round(upload_s, 1),
                "upload_img_s": round(args.images / upload_s, 1),
                "list_first_page_200_ms": round(first_page_ms, 1),
                "total": first["total"],
                "list_all_in_pages_of_1000_ms": round(all_ms, 1),
                "listed": n,
                "status_change_500_images_ms": round(status_ms, 1),
                **bulk,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
