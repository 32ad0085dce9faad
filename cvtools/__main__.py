"""Command line:
python -m cvtools classify <folder or files...> --out results.csv
python -m cvtools import-original <classes.dat> [--web-dir <its web folder>]"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"}


def collect(targets: list[str]) -> list[Path]:
    """Files as given, and the images found (recursively) in folders; a file list (.txt) is read line by line."""
    out: list[Path] = []
    for t in targets:
        p = Path(t)
        if p.is_dir():
            out += sorted(
                f
                for f in p.rglob("*")
                if f.is_file()
                and f.suffix.lower() in IMAGE_SUFFIXES
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
        elif p.suffix.lower() == ".txt" and p.is_file():
            out += [Path(line.strip()) for line in p.read_text().splitlines() if line.strip()]
        else:
            out.append(p)
    return out


def progress(done: int, total: int) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def classify_files(classifier: Any, files: list[Path]) -> list[dict[str, Any]]:
    """The same answers as POST /api/classify, through the classifier's batcher; the files are the
    operator's own (read as given, not limited to public_dirs)."""

    def read(path: str) -> bytes:
        return Path(path).read_bytes()

    results = classifier.classify_many([(str(f), str(f)) for f in files], read=read, progress=progress)
    return [{"path": r.pop("name"), **r} for r in results]


def write_csv(results: list[dict[str, Any]], out: Path) -> None:
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "path",
                "group",
                "probability",
                "unknown",
                "reason",
                "fallback",
                "nearest_id",
                "nearest_distance",
                "top3",
                "error",
            ]
        )
        for r in results:
            if "error" in r:
                w.writerow([r["path"], "", "", "", "", "", "", "", "", r["error"]])
                continue
            top = r["classification"][0]
            nearest = r.get("nearest") or {}
            w.writerow(
                [
                    r["path"],
                    top[0],
                    f"{top[1]:.6f}",
                    r["unknown"],
                    r["reason"] or "",
                    r["fallback"] or "",
                    nearest.get("id", ""),
                    nearest.get("distance", ""),
                    "; ".join(f"{g} {p:.4f}" for g, p in r["classification"][:3]),
                    "",
                ]
            )


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cvtools")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("classify", help="classify images with the main model and write a CSV")
    c.add_argument("targets", nargs="+", help="image files, folders, or .txt files listing paths")
    c.add_argument("--out", default="results.csv")
    c.add_argument("--dataset", help="dataset folder (default from config.py)")
    c.add_argument("--config", help="another config.py")
    m = sub.add_parser("import-original", help="bring the statuses of the original CV Tools (classes.dat)")
    m.add_argument("classes", help="the original's classes.dat")
    m.add_argument("--web-dir", help="the original's web folder (grabbed New images), where it is now")
    m.add_argument("--dataset", help="dataset folder (default from config.py)")
    m.add_argument("--config", help="another config.py")
    args = parser.parse_args(argv)

    from .errors import CVError
    from .services import build_services
    from .settings import DEFAULT_CONFIG, SettingsError, load_settings

    try:
        settings = load_settings(Path(args.config) if args.config else DEFAULT_CONFIG, dataset_dir=args.dataset)
    except SettingsError as exc:
        print(f"cvtools: {exc}", file=sys.stderr)
        return 2
    if args.command == "import-original":
        return import_original(settings, Path(args.classes), Path(args.web_dir) if args.web_dir else None)
    files = collect(args.targets)
    if not files:
        print("cvtools: no images found", file=sys.stderr)
        return 2
    services = build_services(settings)
    try:
        results = classify_files(services.classifier, files)
    except CVError as exc:
        print(f"cvtools: {exc.detail}", file=sys.stderr)
        return 1
    finally:
        services.close()
    write_csv(results, Path(args.out))
    failed = sum(1 for r in results if "error" in r)
    unknown = sum(1 for r in results if r.get("unknown"))
    print(f"{len(results)} images classified ({unknown} unknown, {failed} unreadable) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
