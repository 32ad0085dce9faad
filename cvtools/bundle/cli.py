"""The bundle's commands: `bundle` (export), `serve` (Ray Serve) and `classify --bundle [--ray]`.
Ray is imported only by the commands that use it (requirements-ray.txt)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from . import extra
from .batch import BatchOptions, classify_local, classify_ray
from .model import Bundle, BundleError, read_files
from .sink import Sink

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"}
NO_RAY = f"Ray is not installed: {extra.INSTALL}"


def collect(targets: list[str]) -> list[str]:
    """Files as given, the images found (recursively) in folders, and the lines of .txt files (paths or
    http(s) URLs). Local paths become absolute, so that workers elsewhere read the same file."""
    out: list[str] = []
    for t in targets:
        p = Path(t)
        if p.is_dir():
            out += [
                str(f.resolve())
                for f in sorted(p.rglob("*"))
                if f.is_file()
                and f.suffix.lower() in IMAGE_SUFFIXES
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            ]
        elif p.suffix.lower() == ".txt" and p.is_file():
            out += [_absolute(line.strip()) for line in p.read_text().splitlines() if line.strip()]
        else:
            out.append(_absolute(t))
    return list(dict.fromkeys(out))


def _absolute(target: str) -> str:
    return target if target.lower().startswith(("http://", "https://")) else str(Path(target).resolve())


def progress(done: int, total: int) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def fail(message: str, code: int = 2) -> int:
    print(f"cvtools: {message}", file=sys.stderr)
    return code


def cmd_bundle(args: Any, settings: Any) -> int:
    from ..errors import CVError
    from ..services import build_services
    from ..vision.bundle_export import write_bundle

    services = build_services(settings)
    try:
        out = write_bundle(services.models, args.run, Path(args.out), max_pixels=settings.max_image_pixels)
    except (CVError, BundleError) as exc:
        return fail(getattr(exc, "detail", str(exc)), 1)
    finally:
        services.close()
    print(f"bundle written: {out}")
    return 0


def cmd_serve(args: Any, settings: Any) -> int:
    if not extra.available():
        return fail(NO_RAY)
    from . import serve

    try:
        files = read_files(Path(args.bundle))
        Bundle.from_files(files, threads=1)  # refuse a foreign or corrupt bundle before Ray starts
        opts = serve.ServeOptions.from_settings(settings, args.host, threads=args.threads)
    except (BundleError, ValueError) as exc:
        return fail(str(exc))
    extra.init(args.address)
    serve.deploy(files, opts, replicas=args.replicas, host=args.host, port=args.port)
    running = serve.replicas_running()
    where = f"http://{args.host}:{args.port}/cv?<path or URL>:<n>"
    print(f"/cv on Ray Serve: {where} ({running} replica{'' if running == 1 else 's'} running)", flush=True)
    if args.address:
        print("deployed; it keeps running on the cluster (run serve again with --replicas to scale it)")
        return 0
    print("Ctrl-C stops it; another terminal can scale it: serve --bundle ... --replicas N --address auto", flush=True)
    serve.wait_forever()
    return 0


def cmd_classify_bundle(args: Any, settings: Any, targets: list[str]) -> int:
    from .. import netfetch

    out = Sink(Path(args.out))
    done = out.done()
    todo = [t for t in targets if t not in done]
    if done:
        print(f"{len(targets) - len(todo)} already in {args.out}; {len(todo)} to go", file=sys.stderr)
    policy = netfetch.UrlPolicy(allow_private=settings.allow_private_urls, max_bytes=settings.max_upload_bytes)
    opts = BatchOptions(policy=policy, unknown_detection=settings.unknown_detection, batch_size=args.batch_size)
    try:
        files = read_files(Path(args.bundle))
        bundle = Bundle.from_files(files, threads=1 if args.ray else None)
    except BundleError as exc:
        return fail(str(exc))
    if not todo:
        written = 0
    elif args.ray:
        if not extra.available():
            return fail(NO_RAY)
        ray = extra.load("ray")
        extra.init(args.address)
        workers = args.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        written = classify_ray(files, todo, out, opts, progress, workers=workers)
    else:
        written = classify_local(bundle, todo, out, opts, progress)
    print(f"{written} images classified with run {bundle.meta['run']} -> {args.out}")
    return 0
