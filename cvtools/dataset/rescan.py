"""The start-up scan: folders and images put in by hand while the app was stopped are adopted as Group
images of the folder they are in; catalog images whose file vanished are reported and dropped. And when
the catalog itself is gone, what can be saved is saved before it is rebuilt."""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import imaging
from ..errors import BadInput
from . import catalog as sql
from .names import validate_group_path, validate_new_leaf
from .paths import STATE, Layout
from .store import Store

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]


def save_orphans(layout: Layout) -> str | None:
    """The catalog is gone but the dataset is not empty: the start-up rescan rebuilds it from the group
    folders. New and Deleted files cannot be placed (their group was only in the catalog); they are kept
    in .cvtools/recovered, never deleted. Returns the warning, or None for a new dataset."""
    orphans = [p for p in layout.files_dir.iterdir() if p.is_file()]
    has_groups = any(e.is_dir() and not e.name.startswith(".") for e in os.scandir(layout.root))
    if not orphans and not has_groups:
        return None
    layout.recovered_dir.mkdir(exist_ok=True)
    for p in orphans:
        os.replace(p, layout.recovered_dir / p.name)
    warning = (
        "the catalog was missing and is rebuilt from the group folders (Group images keep their group);"
        f" {len(orphans)} New/Deleted image(s) could not be placed and are kept in {STATE}/recovered"
    )
    log.warning("dataset %s: %s", layout.root, warning)
    return warning


class Rescan:
    def __init__(self, store: Store, warnings: list[str]) -> None:
        self.s = store
        self.report: dict[str, Any] = {
            "adopted": 0,
            "groups_adopted": [],
            "vanished": [],
            "skipped": [],
            "warnings": list(warnings),
        }

    def run(self, progress: Progress | None = None, cancelled: Callable[[], bool] = lambda: False) -> dict[str, Any]:
        with self.s.lock:
            self.report["recovery"] = self.s.journal.recover()
            pending = self.s.journal.pending_paths()
            groups, changed_groups = self._groups()
            on_disk, candidates = self._files(groups, pending)
            self._drop_vanished(on_disk, pending)
        total = len(candidates)
        for i, (group, name) in enumerate(candidates):
            if cancelled():
                break
            if progress:
                progress(i, total, f"Checking {group}/{name}")
            self._adopt(group, name)
        if progress:
            note = f"Adopted {self.report['adopted']} images"
            warnings = self.report["warnings"]
            progress(total, total, f"{note}; warning: {warnings[0]}" if warnings else note)
        if self.report["adopted"] or self.report["vanished"] or changed_groups:
            self.s.emit("groups", rescan=True)
        return self.report

    def _groups(self) -> tuple[set[str], bool]:
        """Folders become groups; groups whose folder is gone are dropped. Returns the groups now."""
        root = self.s.layout.root
        known = set(self.s.catalog.group_names())
        lower = {g.lower() for g in known}
        new: list[str] = []
        for dirpath, dirnames, _ in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel = Path(dirpath).relative_to(root).as_posix()
            if rel == "." or rel in known:
                continue
            try:
                validate_group_path(rel)
                validate_new_leaf(rel.rsplit("/", 1)[-1])
                if rel.lower() in lower:
                    raise BadInput("another group has the same name ignoring case")
            except BadInput as exc:
                self.report["skipped"].append({"name": rel, "reason": f"folder not usable as a group: {exc.detail}"})
                continue
            new.append(rel)
            lower.add(rel.lower())
        gone = [g for g in known if not self.s.layout.group_dir(g).is_dir()]
        with self.s.catalog.transaction() as db:
            for g in new:
                sql.insert_group(db, g, time.time())
            if gone:
                sql.delete_groups(db, gone)
        self.report["groups_adopted"] = new
        return (known | set(new)) - set(gone), bool(new or gone)

    def _files(self, groups: set[str], pending: set[Path]) -> tuple[dict[str, set[str]], list[tuple[str, str]]]:
        """The image files in each group folder, and those the catalog does not know yet."""
        on_disk: dict[str, set[str]] = {}
        candidates: list[tuple[str, str]] = []
        for g in sorted(groups):
            folder = self.s.layout.group_dir(g)
            names = set()
            for e in os.scandir(folder):
                if e.name.startswith("."):
                    continue
                if e.is_symlink():  # never adopted: it could point anywhere (/etc/passwd)
                    reason = "symbolic link: not adopted (copy the file in instead)"
                    self.report["skipped"].append({"name": f"{g}/{e.name}", "reason": reason})
                elif e.is_file():
                    names.add(e.name)
            on_disk[g] = names
            known = self.s.catalog.group_filenames(g)
            candidates += [(g, n) for n in sorted(names - known) if folder / n not in pending]
        return on_disk, candidates

    def _drop_vanished(self, on_disk: dict[str, set[str]], pending: set[Path]) -> None:
        layout = self.s.layout
        vanished = []
        for row in self.s.catalog.all_images():
            if layout.abs_path(row) in pending:
                continue  # a change still has to move it there
            if row["status"] == "group":
                exists = row["filename"] in on_disk.get(row["grp"], ())
            else:
                exists = layout.abs_path(row).is_file()
            if not exists:
                vanished.append(row)
        if not vanished:
            return
        with self.s.catalog.transaction() as db:
            for row in vanished:
                sql.delete_image(db, row["id"])
            sql.log(db, "vanished", ids=[r["id"] for r in vanished])
        self.report["vanished"] = [layout.rel_path(r) for r in vanished]
        for rel in self.report["vanished"]:
            log.warning("rescan: %s vanished from disk; removed from the catalog", rel)

    def _adopt(self, group: str, name: str) -> None:
        path = self.s.layout.group_dir(group) / name
        try:
            info = imaging.check_image(path, max_pixels=self.s.max_image_pixels)
            sha = imaging.sha256_file(path)
            size = path.stat().st_size
        except imaging.ImageRejected as exc:
            self.report["skipped"].append({"name": f"{group}/{name}", "reason": str(exc)})
            return
        except OSError as exc:
            self.report["skipped"].append({"name": f"{group}/{name}", "reason": f"unreadable: {exc.strerror}"})
            return
        row = {
            "id": secrets.token_hex(8),
            "grp": group,
            "status": "group",
            "filename": name,
            "ext": Path(name).suffix or info.ext,
            "sha256": sha,
            "phash": info.phash,
            "source": None,
            "width": info.width,
            "height": info.height,
            "size": size,
            "created": time.time(),
        }
        with self.s.lock, self.s.catalog.transaction() as db:
            if self.s.catalog.filename_taken(group, name):
                return
            sql.insert_image(db, row)
            sql.add_seen(db, sha, info.phash, None)
        self.report["adopted"] += 1
