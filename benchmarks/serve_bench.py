"""Serving benchmark: /cv over real HTTP against the engine in-process, and similarity query time.

Trains a head model on openclipart drawings with the offline backbone, serves it with `python run.py`
in a subprocess, and prints: one-client /cv latency p50/p95 as a ratio of the in-process time for
the same image; throughput with 1, 4 and 8 concurrent clients; similarity query time at 10k and 100k
embeddings.

    python -m benchmarks.serve_bench [--seconds 15]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from cvtools import imaging
from cvtools.vision.index import SimilarityIndex

from .common import (
    CATEGORIES,
    build,
    category_files,
    cpu_note,
    environment,
    import_files,
    openclipart,
    split_files,
    start_server,
    throughput,
)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def make_query_jpeg(src: Path, dest: Path) -> Path:
    img = imaging.load_rgb(src, max_pixels=50_000_000)
    img.thumbnail((224, 224))
    canvas = Image.new("RGB", (224, 224), "white")
    canvas.paste(img, ((224 - img.width) // 2, (224 - img.height) // 2))
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=90)
    dest.write_bytes(out.getvalue())
    return dest


def main() -> None:
    environment()
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=15.0, help="per throughput measurement")
    ap.add_argument("--per-class", type=int, default=20)
    args = ap.parse_args()

    root = openclipart()
    settings, sv = build()
    ds = sv.dataset
    queries = []
    for cat in CATEGORIES[:4]:
        train, test, _ = split_files(category_files(root, cat), args.per_class, 5)
        import_files(ds, cat.replace("/", "-"), train)
        queries += test
    run = train(sv, augment_views=1)
    sv.models.promote(run)
    qdir = settings.dataset_dir / "queries"
    qdir.mkdir()
    jpeg = make_query_jpeg(queries[0], qdir / "query.jpg")
    data = jpeg.read_bytes()

    # In-process: decode + preprocess + forward through the engine, one image at a time.
    for _ in range(5):
        sv.classifier.analyze(imaging.load_rgb(data, max_pixels=settings.max_image_pixels, min_side=448))
    inproc = []
    for _ in range(100):
        t0 = time.perf_counter()
        sv.classifier.analyze(imaging.load_rgb(data, max_pixels=settings.max_image_pixels, min_side=448))
        inproc.append(time.perf_counter() - t0)
    inproc_ms = statistics.median(inproc) * 1000
    sv.close()

    server, base, _ = start_server(settings.dataset_dir, {"CVTOOLS_NEURONET": "efficientnet-lite0"}, run)
    try:
        url = f"{base}/cv?{jpeg}"
        with httpx.Client(timeout=30) as c:
            for _ in range(5):
                c.get(url).raise_for_status()
            lat = []
            for _ in range(100):
                t0 = time.perf_counter()
                c.get(url).raise_for_status()
                lat.append(time.perf_counter() - t0)

        tput = {n: throughput([url], n, args.seconds) for n in (1, 4, 8)}
    finally:
        server.terminate()
        server.wait(10)

    rng = np.random.default_rng(0)
    sim = {}
    for n in (10_000, 100_000):
        idx = SimilarityIndex("fp", "features", None)
        ids = [f"i{k}" for k in range(n)]
        vecs = rng.normal(size=(n, 1280)).astype(np.float32)
        idx.update({i: "g" for i in ids}, {i: ("g", v) for i, v in zip(ids, vecs, strict=True)})
        del vecs
        q = rng.normal(size=1280).astype(np.float32)
        idx.query(q, 20)
        times = []
        for _ in range(30):
            t0 = time.perf_counter()
            idx.query(q, 20)
            times.append(time.perf_counter() - t0)
        sim[n] = {
            "median_ms": round(statistics.median(times) * 1000, 2),
            "p95_ms": round(percentile(times, 95) * 1000, 2),
        }

    p50, p95 = percentile(lat, 50) * 1000, percentile(lat, 95) * 1000
    one = tput[1][0]
    print(f"# {cpu_note()}; offline backbone; query: a 224-px JPEG read by local path")
    print(
        json.dumps(
            {
                "in_process_ms": round(inproc_ms, 2),
                "cv_one_client": {
                    "p50_ms": round(p50, 2),
                    "p95_ms": round(p95, 2),
                    "p50_over_in_process": round(p50 / inproc_ms, 3),
                },
                "throughput_rps": {str(n): round(r, 1) for n, (r, _) in tput.items()},
                "errors": {str(n): e for n, (_, e) in tput.items()},
                "throughput_ratio_vs_one_client": {str(n): round(r / one, 3) for n, (r, _) in tput.items()},
                "in_process_rps": round(1000 / inproc_ms, 1),
                "similarity_query": {str(k): v for k, v in sim.items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
