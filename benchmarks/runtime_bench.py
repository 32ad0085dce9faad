"""Runtime benchmark: PyTorch vs ONNX Runtime on this CPU, in one run.

Prints: raw forward throughput of both runtimes for the offline EfficientNet-Lite0 and a
ConvNeXtV2-tiny-sized network (random weights) at batch 1/8/32; the end-to-end embedding pipeline
on real JPEG and PNG files (decode in threads + forward) for both runtimes, as a ratio of raw ONNX
Runtime forward; /cv p50/p95 with one client and throughput with 8 clients, for both runtimes.

    python -m benchmarks.runtime_bench [--skip-convnext] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from PIL import Image

from cvtools import imaging
from cvtools.vision.backbone import Backbone, load_backbone
from cvtools.vision.embeddings import Item, Pipeline
from cvtools.vision.onnx_runtime import accelerate

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
)
from .serve_bench import make_query_jpeg

ROUNDS = 5


def rate(fn, batch: torch.Tensor, min_images: int = 96) -> float:  # type: ignore[no-untyped-def]
    fn(batch)
    reps = max(2, min_images // len(batch))
    t0 = time.perf_counter()
    with torch.inference_mode():
        for _ in range(reps):
            fn(batch)
    return reps * len(batch) / (time.perf_counter() - t0)


def raw_throughput(bb: Backbone, work: Path) -> dict[str, dict[str, float]]:
    runtime, note = accelerate(bb.features_torch, bb.model, bb.preprocess.size, work / f"{bb.fingerprint}.onnx")
    if runtime is None:
        raise SystemExit(f"ONNX Runtime is not active ({note}); this benchmark compares it with PyTorch and stops")
    bb.runtime, bb.runtime_note = runtime, note
    out: dict[str, dict[str, float]] = {}
    for bs in (1, 8, 32):
        x = torch.randn(bs, 3, bb.preprocess.size, bb.preprocess.size)
        t, o = rate(bb.features_torch, x), rate(runtime, x)
        out[str(bs)] = {"torch_img_s": round(t, 1), "onnxruntime_img_s": round(o, 1), "speedup": round(o / t, 2)}
        print(bb.name[-30:], bs, out[str(bs)], flush=True)
    return out


def pipeline_rate(bb: Backbone, files: list[Path], batch_size: int) -> float:
    pipe = Pipeline(pre=bb.preprocess, forward=bb.features, batch_size=batch_size, max_pixels=50_000_000)
    work = [(Item(f"{i}", f), [0]) for i, f in enumerate(files)]
    t0 = time.perf_counter()
    n = sum(len(v) for _, v in pipe.run(work))
    return n / (time.perf_counter() - t0)


def cv_figures(dataset: Path, run: str, jpeg: Path, runtime: str, seconds: float) -> dict[str, float]:
    env = {"CVTOOLS_NEURONET": "efficientnet-lite0", "CVTOOLS_INFERENCE_RUNTIME": runtime}
    server, base, _ = start_server(dataset, env, run)
    try:
        url = f"{base}/cv?{jpeg}"
        lat = []
        with httpx.Client(timeout=30) as c:
            for _ in range(5):
                c.get(url).raise_for_status()
            for _ in range(100):
                t0 = time.perf_counter()
                c.get(url).raise_for_status()
                lat.append(time.perf_counter() - t0)
        stop = time.perf_counter() + seconds
        counts = [0] * 8

        def loop(k: int) -> None:
            with httpx.Client(timeout=30) as c:
                while time.perf_counter() < stop:
                    counts[k] += c.get(url).status_code == 200

        threads = [threading.Thread(target=loop, args=(k,)) for k in range(8)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return {
            "p50_ms": round(float(np.percentile(lat, 50)) * 1000, 1),
            "p95_ms": round(float(np.percentile(lat, 95)) * 1000, 1),
            "rps_8_clients": round(sum(counts) / (time.perf_counter() - t0), 1),
            "runtime": httpx.get(base + "/api/status").json()["model"]["runtime"],
        }
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    environment()
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-convnext", action="store_true")
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cvtools-rt-"))
    results: dict[str, object] = {}

    lite = load_backbone("efficientnet-lite0")
    results["raw_efficientnet_lite0"] = raw_throughput(lite, work)
    if not args.skip_convnext:
        from transformers import ConvNextV2Config, ConvNextV2ForImageClassification

        cfg = ConvNextV2Config(depths=[3, 3, 9, 3], hidden_sizes=[96, 192, 384, 768], image_size=224)
        ConvNextV2ForImageClassification(cfg).save_pretrained(work / "convnextv2-tiny")
        results["raw_convnextv2_tiny_sized"] = raw_throughput(load_backbone(str(work / "convnextv2-tiny")), work)

    # Real files: openclipart PNGs and the same drawings as ~1000-px JPEGs (draft-mode decoding).
    root = openclipart()
    pngs = [p for c in CATEGORIES for p in category_files(root, c)[:16]][:96]
    jpgs = []
    for i, p in enumerate(pngs):
        img = imaging.load_rgb(p, max_pixels=50_000_000)
        img = img.resize((1000, max(1, round(1000 * img.height / img.width))), Image.Resampling.BICUBIC)
        dest = work / f"{i}.jpg"
        img.save(dest, "JPEG", quality=90)
        jpgs.append(dest)
    lite_torch = load_backbone("efficientnet-lite0")
    x16 = torch.randn(16, 3, 224, 224)
    pipe: dict[str, dict[str, float]] = {}
    raws: list[float] = []
    for kind, files in (("jpeg", jpgs), ("png", pngs)):
        # This shared machine's speed drifts by +-20 % within minutes, so raw forward and pipeline
        # are measured alternately, each pipeline run between two raw runs, and the ratio is the
        # median over rounds.
        ratios, rates = [], []
        for _ in range(ROUNDS):
            before = rate(lite.runtime, x16)  # type: ignore[arg-type]
            o = pipeline_rate(lite, files, 16)
            after = rate(lite.runtime, x16)  # type: ignore[arg-type]
            raws += [before, after]
            rates.append(o)
            ratios.append(2 * o / (before + after))
        o, t = float(np.median(rates)), pipeline_rate(lite_torch, files, 16)
        pipe[kind] = {
            "onnxruntime_img_s": round(o, 1),
            "torch_img_s": round(t, 1),
            "speedup": round(o / t, 2),
            "ratio_to_raw_onnxruntime": round(float(np.median(ratios)), 3),
            "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
        }
    results["pipeline_batch16"] = {"raw_onnxruntime_img_s": round(float(np.median(raws)), 1), "rounds": ROUNDS, **pipe}

    # /cv for both runtimes on one trained model.
    settings, sv = build(work / "serve")
    ds = sv.dataset
    queries = []
    for cat in CATEGORIES[:4]:
        train, test, _ = split_files(category_files(root, cat), 15, 3)
        import_files(ds, cat.replace("/", "-"), train)
        queries += test
    run = train(sv, augment_views=1)
    sv.models.promote(run)
    sv.close()
    jpeg = make_query_jpeg(queries[0], settings.dataset_dir / "query.jpg")
    results["cv"] = {
        rt: cv_figures(settings.dataset_dir, run, jpeg, rt, args.seconds) for rt in ("torch", "onnxruntime")
    }
    # What the machine's speed was at that moment: the forward pass of one image and its mirror image.
    pair = torch.randn(2, 3, 224, 224)
    for rt, fn in (("torch", lite_torch.features_torch), ("onnxruntime", lite.runtime)):
        results["cv"][rt]["forward_of_image_and_mirror_ms"] = round(1000 / rate(fn, pair, 100) * 2, 1)  # type: ignore[arg-type,index]

    print(f"# {cpu_note()}, torch threads {torch.get_num_threads()}")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
