"""Command line:
python -m cvtools classify <folders, files or .txt lists> --out results.csv|.jsonl [--bundle B [--ray]]
python -m cvtools bundle [--run RUN] --out <folder or .zip>
python -m cvtools serve --bundle B [--replicas N] [--address ray://...]
python -m cvtools import-original <classes.dat> [--web-dir <its web folder>]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .bundle.cli import cmd_bundle, cmd_classify_bundle, cmd_serve, collect, progress
from .bundle.sink import Sink


def classify_files(classifier: Any, files: list[str], out: Sink) -> int:
    """The same answers as POST /api/classify, through the classifier's batcher; local files are the
    operator's own (read as given, not limited to public_dirs), URLs follow the URL policy."""
    from .bundle.batch import read_source

    def read(target: str) -> bytes:
        return read_source(target, classifier.policy)

    results = classifier.classify_many([(f, f) for f in files], read=read, progress=progress)
    return out.write({"path": r.pop("name"), **r} for r in results)


def import_original(settings: Any, classes: Path, web_dir: Path | None) -> int:
    """The statuses of the original CV Tools' classes.dat, brought into the dataset (the app stopped)."""
    from . import migrate
    from .dataset import Dataset
    from .errors import CVError

    try:
        data = classes.read_bytes()
    except OSError as exc:
        print(f"cvtools: cannot read {classes}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    dataset = Dataset(settings.dataset_dir, max_image_pixels=settings.max_image_pixels)
    try:
        dataset.rescan()  # images copied into the folders since the app last ran are known first
        report = migrate.import_original(dataset, data, web_dir)
    except CVError as exc:
        print(f"cvtools: {exc.detail}", file=sys.stderr)
        return 2
    finally:
        dataset.close()
    r = report.to_json()
    print(f"added {r['added']}, changed {r['changed']}, unchanged {r['unchanged']}")
    print(f"groups created: {', '.join(r['groups_created']) or 'none'}")
    for s in r["skipped"]:
        print(f"skipped {s['path']}: {s['reason']}")
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m cvtools")
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("classify", help="classify images to a CSV or JSON Lines file (resumes where it stopped)")
    c.add_argument("targets", nargs="+", help="image files, folders, or .txt files listing paths or URLs")
    c.add_argument("--out", default="results.csv", help="results.csv, or .jsonl for every field")
    c.add_argument("--bundle", help="a model bundle (folder or zip) instead of the app's main model")
    c.add_argument("--ray", action="store_true", help="with --bundle: run on Ray Data")
    c.add_argument("--address", help="with --ray: a Ray cluster (ray://host:10001 or auto); default a local Ray")
    c.add_argument("--workers", type=int, default=0, help="with --ray: bundle workers (default one per CPU)")
    c.add_argument("--batch-size", type=int, default=32)
    b = sub.add_parser("bundle", help="export a model as a bundle (folder or .zip) that answers without the app")
    b.add_argument("--run", help="the run to export (default: the main model)")
    b.add_argument("--out", required=True, help="a new folder, or a .zip")
    s = sub.add_parser("serve", help="serve a bundle's /cv on Ray Serve")
    s.add_argument("--bundle", required=True)
    s.add_argument("--replicas", type=int, default=1)
    s.add_argument("--address", help="a Ray cluster (ray://host:10001 or auto); default: start a local Ray")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8001)
    s.add_argument("--threads", type=int, default=1, help="CPU threads (and Ray CPUs) per replica")
    m = sub.add_parser("import-original", help="bring the statuses of the original CV Tools (classes.dat)")
    m.add_argument("classes", help="the original's classes.dat")
    m.add_argument("--web-dir", help="the original's web folder (grabbed New images), where it is now")
    for one in (c, b, s, m):
        one.add_argument("--dataset", help="dataset folder (default from config.py)")
        one.add_argument("--config", help="another config.py")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from .settings import DEFAULT_CONFIG, SettingsError, load_settings

    try:
        settings = load_settings(Path(args.config) if args.config else DEFAULT_CONFIG, dataset_dir=args.dataset)
    except SettingsError as exc:
        print(f"cvtools: {exc}", file=sys.stderr)
        return 2
    if args.command == "import-original":
        return import_original(settings, Path(args.classes), Path(args.web_dir) if args.web_dir else None)
    if args.command == "bundle":
        return cmd_bundle(args, settings)
    if args.command == "serve":
        return cmd_serve(args, settings)
    files = collect(args.targets)
    if not files:
        print("cvtools: no images found", file=sys.stderr)
        return 2
    if args.bundle:
        return cmd_classify_bundle(args, settings, files)
    return classify_with_app(args, settings, files)


def classify_with_app(args: Any, settings: Any, files: list[str]) -> int:
    from .errors import CVError
    from .services import build_services

    out = Sink(Path(args.out))
    done = out.done()
    todo = [f for f in files if f not in done]
    services = build_services(settings)
    try:
        written = classify_files(services.classifier, todo, out) if todo else 0
    except CVError as exc:
        print(f"cvtools: {exc.detail}", file=sys.stderr)
        return 1
    finally:
        services.close()
    print(f"{written} images classified ({len(files) - len(todo)} already in {args.out}) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
