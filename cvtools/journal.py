"""The move journal: a dataset change is one catalog transaction that records the rows it changes (as they
were before) and the file moves it implies. The moves are done right after the commit by the request
that made the change. When the disk refuses one (a read-only folder, a full disk), the moves already
done are put back and the rows restored, so the change is either wholly done or wholly undone and the
answer can say which. A crash between commit and moves is rolled forward at the next start (or rolled
back when the disk still refuses). A change's source files are never deleted before its moves are done.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .catalog import Catalog
from .errors import StorageError

log = logging.getLogger(__name__)

IMAGE_COLUMNS = (
    "id",
    "grp",
    "status",
    "filename",
    "ext",
    "sha256",
    "phash",
    "source",
    "width",
    "height",
    "size",
    "created",
)
GROUP_COLUMNS = ("name", "created", "exclusive")


@dataclass
class Change:
    """What one transaction changes: call these instead of writing the rows directly."""

    db: sqlite3.Connection
    op: str
    images: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # id -> row before (None: new)
    groups: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # name -> row before
    seen: list[str] = field(default_factory=list)  # sha256 first recorded by this change
    moves: list[tuple[str, str]] = field(default_factory=list)
    id: int | None = None

    def remember_images(self, rows: list[Any]) -> None:
        for r in rows:
            self.images.setdefault(r["id"], {c: r[c] for c in IMAGE_COLUMNS})

    def remember_groups(self, names: list[str]) -> None:
        for name in names:
            if name not in self.groups:
                r = self.db.execute("SELECT * FROM groups WHERE name = ?", (name,)).fetchone()
                self.groups[name] = {c: r[c] for c in GROUP_COLUMNS} if r else None

    def insert_image(self, row: dict[str, Any]) -> None:
        self.images.setdefault(row["id"], None)
        marks = ", ".join(f":{c}" for c in IMAGE_COLUMNS)
        self.db.execute(f"INSERT INTO images ({', '.join(IMAGE_COLUMNS)}) VALUES ({marks})", row)

    def update_image(self, row: Any, **values: Any) -> None:
        self.remember_images([row])
        sets = ", ".join(f"{k} = ?" for k in values)
        self.db.execute(f"UPDATE images SET {sets} WHERE id = ?", (*values.values(), row["id"]))

    def insert_group(self, name: str, exclusive: bool = False) -> None:
        self.remember_groups([name])
        self.db.execute(
            "INSERT INTO groups (name, created, exclusive) VALUES (?, ?, ?)", (name, time.time(), int(exclusive))
        )

    def add_seen(self, sha: str, phash: str | None, source: str | None) -> None:
        cur = self.db.execute(
            "INSERT OR IGNORE INTO seen (sha256, phash, source) VALUES (?, ?, ?)", (sha, phash, source)
        )
        if cur.rowcount:
            self.seen.append(sha)

    def move(self, src: str | Path, dst: str | Path) -> None:
        self.moves.append((str(src), str(dst)))


class Journal:
    def __init__(self, catalog: Catalog, root: Path) -> None:
        self.catalog = catalog
        self.root = root

    @contextmanager
    def change(self, op: str, **detail: Any) -> Iterator[Change]:
        """One transaction; the caller holds the dataset lock until settle() has returned."""
        with self.catalog.transaction() as db:
            ch = Change(db, op)
            yield ch
            undo = {"images": ch.images, "groups": ch.groups, "seen": ch.seen}
            ch.id = db.execute(
                "INSERT INTO changes (op, created, undo) VALUES (?, ?, ?)", (op, time.time(), json.dumps(undo))
            ).lastrowid
            db.executemany(
                "INSERT INTO moves (change, src, dst) VALUES (?, ?, ?)", [(ch.id, s, d) for s, d in ch.moves]
            )
            Catalog.log(db, op, **detail)

    # ---- after the commit ------------------------------------------------------------------
    def settle(self, ch: Change, what: str) -> None:
        """Do the change's moves. When the disk refuses one, undo the change and raise StorageError
        saying that nothing changed (`what` names what the user asked for)."""
        assert ch.id is not None
        try:
            self._forward(ch.id)
        except OSError as exc:
            try:
                self._revert(ch.id)
            except OSError as again:
                log.warning("change %s (%s) could not be undone either: %s; it stays recorded", ch.id, ch.op, again)
                raise StorageError(storage_message(exc, pending=True)) from None
            raise StorageError(storage_message(exc, pending=False, what=what)) from None
        self._finish(ch.id)

    def recover(self) -> list[str]:
        """At start: every change a crash left half done is completed, or undone when the disk still
        refuses; one that cannot be either stays recorded for the next start. Returns what happened."""
        problems = []
        for row in self.catalog.all("SELECT DISTINCT change FROM moves ORDER BY change"):
            cid = row["change"]
            try:
                problems += self._forward(cid)
                self._finish(cid)
            except OSError as exc:
                try:
                    self._revert(cid)
                    problems.append(f"change {cid} could not be completed ({exc.strerror}) and was undone")
                except OSError as again:
                    problems.append(f"change {cid} can be neither completed nor undone yet ({again.strerror})")
        return problems

    def pending_paths(self) -> set[Path]:
        """Sources and targets of moves not yet done (rescan and the temp-file sweep leave them alone)."""
        rows = self.catalog.all("SELECT src, dst FROM moves")
        return {self._path(r[k]) for r in rows for k in ("src", "dst")}

    # ---- the moves -------------------------------------------------------------------------------
    def _path(self, p: str) -> Path:
        path = Path(p)
        return path if path.is_absolute() else self.root / path

    def _moves(self, cid: int | None) -> list[tuple[Path, Path]]:
        rows = self.catalog.all("SELECT src, dst FROM moves WHERE change IS ? ORDER BY seq", (cid,))
        return [(self._path(r["src"]), self._path(r["dst"])) for r in rows]

    def _forward(self, cid: int | None) -> list[str]:
        problems = []
        for src, dst in self._moves(cid):
            if os.path.lexists(src):
                move_path(src, dst, self.root)
            elif not os.path.lexists(dst):
                problems.append(f"file missing for planned move {src} -> {dst}")
        return problems

    def _revert(self, cid: int | None) -> None:
        """Moves back what was moved (last first), then the rows as they were, in one transaction."""
        for src, dst in reversed(self._moves(cid)):
            if os.path.lexists(dst) and not os.path.lexists(src):
                move_path(dst, src, self.root)
        row = self.catalog.one("SELECT undo FROM changes WHERE id = ?", (cid,))
        undo = json.loads(row["undo"]) if row else {"images": {}, "groups": {}, "seen": []}
        with self.catalog.transaction() as db:
            for image_id, before in undo["images"].items():
                db.execute("DELETE FROM images WHERE id = ?", (image_id,))
                if before:
                    marks = ", ".join(f":{c}" for c in IMAGE_COLUMNS)
                    db.execute(f"INSERT INTO images ({', '.join(IMAGE_COLUMNS)}) VALUES ({marks})", before)
            for name, before in undo["groups"].items():
                db.execute("DELETE FROM groups WHERE name = ?", (name,))
                if before:
                    db.execute(
                        "INSERT INTO groups (name, created, exclusive) VALUES (:name, :created, :exclusive)", before
                    )
            db.executemany("DELETE FROM seen WHERE sha256 = ?", [(s,) for s in undo["seen"]])
            self._forget(db, cid)
            Catalog.log(db, "undone", change=cid)

    def _finish(self, cid: int | None) -> None:
        with self.catalog.transaction() as db:
            self._forget(db, cid)

    @staticmethod
    def _forget(db: sqlite3.Connection, cid: int | None) -> None:
        db.execute("DELETE FROM moves WHERE change IS ?", (cid,))
        db.execute("DELETE FROM changes WHERE id IS ?", (cid,))


def move_path(src: Path, dst: Path, root: Path) -> None:
    """Rename src to dst; across file systems (EXDEV) copy, fsync, then delete the source. The target's
    folder must lie inside the dataset folder: a symbolic link there must not take files elsewhere."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not inside(dst.parent, root):
        raise OSError(errno.EPERM, "the target folder lies outside the dataset folder (a symbolic link?)", str(dst))
    if os.path.lexists(dst):
        raise OSError(errno.EEXIST, "the target exists already", str(dst))
    try:
        os.rename(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        _copy_across(src, dst)


def _copy_across(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.copy-{os.getpid()}-{time.monotonic_ns()}")
    try:
        if src.is_dir() and not src.is_symlink():
            shutil.copytree(src, tmp, symlinks=True)
        else:
            shutil.copy2(src, tmp, follow_symlinks=False)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.rename(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        raise
    fsync_dir(dst.parent)
    shutil.rmtree(src) if src.is_dir() and not src.is_symlink() else src.unlink()


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def inside(path: Path, root: Path) -> bool:
    """Whether path's real location (links resolved) is root or below it."""
    real, base = Path(os.path.realpath(path)), Path(os.path.realpath(root))
    return real == base or real.is_relative_to(base)


def storage_message(exc: OSError, *, pending: bool = False, what: str = "the change") -> str:
    """What the operator can do about a failed disk operation; true to what happened, no paths."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        why = "the disk is full"
    elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        why = "the dataset folder is not writable"
    else:
        why = f"a disk operation failed ({exc.strerror or type(exc).__name__})"
    if pending:
        return (
            f"storage error: {why}. The change is recorded and will be completed when the folder is "
            "writable again (at the latest at the next start); no image is lost."
        )
    return f"storage error: {why}. Nothing was changed: {what} did not happen; try again when the folder is writable."
