"""Scale benchmark: the production model as a bundle on Ray against the app itself, on this machine.

Trains a head model on openclipart drawings (offline backbone), exports it as a bundle, and prints:
- /cv throughput with `clients` concurrent clients: the app (`python run.py`), then Ray Serve with 1 and
  2 single-thread replicas of the bundle and 1 replica of 2 threads, each as a ratio of the app's figure
  (the baseline: same process, same images);
- batch images/s over the same files: the app's CLI (`classify`), `classify --bundle` on this machine,
  and `classify --bundle --ray` with one worker per CPU; wall time of each command, start-up included.

    python -m benchmarks.scale_bench [--seconds 15] [--clients 8] [--files 600]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import httpx

from cvtools.settings import PROJECT_ROOT

from .common import (
    CATEGORIES,
    build,
    category_files,
    cpu_note,
    environment,
    import_files,
    split_files,
    start_server,
    throughput,
)
from .families import openclipart as family
from .serve_bench import make_query_jpeg


def warm(urls: list[str]) -> None:
    with httpx.Client(timeout=60) as c:
        for url in urls[:10]:
            c.get(url).raise_for_status()


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "CVTOOLS_NEURONET": "efficientnet-lite0"}
    subprocess.run(cmd, check=True, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def prepare(args: argparse.Namespace) -> tuple[Path, Path, str, Path, list[Path]]:
    """(dataset folder, query folder, run, bundle, batch files)."""
    from cvtools.vision.bundle_export import write_bundle

    from .common import openclipart, train

    settings, sv = build()
    root = openclipart()
    queries: list[Path] = []
    for cat in CATEGORIES[:4]:
        tr, test, _ = split_files(category_files(root, cat), 20, 10)
        import_files(sv.dataset, cat.replace("/", "-"), tr)
        queries += test
    run = train(sv, augment_views=1)
    sv.models.promote(run)
    qdir = settings.dataset_dir / "queries"
    qdir.mkdir()
    qfiles = [make_query_jpeg(q, qdir / f"q{i}.jpg") for i, q in enumerate(queries)]
    bundle = write_bundle(sv.models, run, settings.dataset_dir.parent / "bundle", max_pixels=settings.max_image_pixels)
    sv.close()
    batch = family().files("all")[: args.files]
    bdir = settings.dataset_dir.parent / "batch"
    bdir.mkdir()
    for i, f in enumerate(batch):  # copies: the app's CLI and the bundle read the same bytes from one folder
        (bdir / f"{i:05d}{f.suffix}").write_bytes(f.read_bytes())
    print(f"# {len(qfiles)} query JPEGs for /cv; {len(batch)} openclipart drawings for batch", flush=True)
    return settings.dataset_dir, qdir, run, bundle, qfiles


def serve_figures(args: argparse.Namespace, dataset: Path, run: str, bundle: Path, qfiles: list[Path]) -> None:
    from ray import serve as ray_serve

    from cvtools.bundle import extra, read_files
    from cvtools.bundle import serve as bserve

    from .common import free_port

    server, base, _ = start_server(dataset, {"CVTOOLS_NEURONET": "efficientnet-lite0"}, run)
    try:
        urls = [f"{base}/cv?{q}" for q in qfiles]
        warm(urls)
        app, app_err = throughput(urls, args.clients, args.seconds)
    finally:
        server.terminate()
        server.wait(10)
    print(f"/cv app (python run.py), {args.clients} clients: {app:.1f} req/s ({app_err} errors) [baseline]")
    extra.init(None)
    port = free_port()
    opts = bserve.ServeOptions(public_dirs=(str(dataset),), base=str(dataset))
    files = read_files(bundle)
    try:
        for replicas, threads in ((1, 1), (2, 1), (1, 2)):
            bserve.deploy(files, replace(opts, threads=threads), replicas=replicas, host="127.0.0.1", port=port)
            urls = [f"http://127.0.0.1:{port}/cv?{q}" for q in qfiles]
            warm(urls)
            rps, err = throughput(urls, args.clients, args.seconds)
            print(
                f"/cv Ray Serve, {replicas} replica(s) x {threads} thread(s), {args.clients} clients: "
                f"{rps:.1f} req/s ({err} errors), {rps / app:.2f}x the app"
            )
    finally:
        ray_serve.shutdown()
        import ray

        ray.shutdown()


def batch_figures(dataset: Path, bundle: Path, n: int) -> None:
    bdir = dataset.parent / "batch"
    out = dataset.parent / "out"
    out.mkdir()
    py = [sys.executable, "-m", "cvtools", "classify", str(bdir)]
    app_s = timed([*py, "--dataset", str(dataset), "--out", str(out / "app.csv")])
    print(f"batch, the app's CLI: {n / app_s:.1f} images/s ({app_s:.1f} s for {n}) [baseline]")
    for label, extra in (("bundle on this machine", []), ("bundle on Ray Data, 1 worker per CPU", ["--ray"])):
        s = timed([*py, "--bundle", str(bundle), "--out", str(out / f"{label[:12]}.jsonl"), *extra])
        print(f"batch, {label}: {n / s:.1f} images/s ({s:.1f} s), {app_s / s:.2f}x the app's CLI")


def main() -> None:
    environment()
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=15.0, help="per throughput measurement")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--files", type=int, default=600, help="images in the batch comparison")
    args = ap.parse_args()
    import ray

    print(f"# ray {ray.__version__}; {cpu_note()}", flush=True)
    dataset, _, run, bundle, qfiles = prepare(args)
    serve_figures(args, dataset, run, bundle, qfiles)
    batch_figures(dataset, bundle, args.files)


if __name__ == "__main__":
    main()
