"""The move journal: a dataset change is one catalog transaction that records the rows it changes (as they
were before) and the file moves it implies. The moves are done right after the commit by the request
that made the change. When the disk refuses one (a read-only folder, a full disk), the moves already
done are put back and the rows restored, so the change is either wholly done or wholly undone and the
answer can say which. A crash between commit and moves is rolled forward at the next start (or rolled
back when the disk still refuses). A change's source files are never deleted before its moves are done.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import StorageError
from . import catalog as sql
from .catalog import IMAGE_COLUMNS, Catalog

log = logging.getLogger(__name__)

GROUP_COLUMNS = ("name", "created", "exclusive")


@dataclass
class Change:
    """What one transaction changes: call these instead of writing the rows directly, so that the rows
    as they were are known (to undo the change when the disk refuses its moves)."""

    db: Any  # the open transaction's sqlite3 connection
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
                r = sql.group_row(self.db, name)
                self.groups[name] = {c: r[c] for c in GROUP_COLUMNS} if r else None

    def insert_image(self, row: dict[str, Any]) -> None:
        self.images.setdefault(row["id"], None)
        sql.insert_image(self.db, row)

    def update_image(self, row: Any, **values: Any) -> None:
        self.remember_images([row])
        sql.update_image(self.db, row["id"], values)

    def delete_image(self, row: Any) -> None:
        self.remember_images([row])
        sql.delete_image(self.db, row["id"])

    def insert_group(self, name: str, exclusive: bool = False) -> None:
        self.remember_groups([name])
        sql.insert_group(self.db, name, time.time(), exclusive)

    def delete_groups(self, names: list[str]) -> None:
        self.remember_groups(names)
        sql.delete_groups(self.db, names)

    def set_exclusive(self, name: str, exclusive: bool) -> None:
        self.remember_groups([name])
        sql.set_exclusive(self.db, name, exclusive)

    def rename_groups(self, old: str, new: str, groups: list[str], rows: list[Any]) -> None:
        """Rename `old` (and its sub-groups `groups`, images `rows`) to `new`."""
        self.remember_groups(groups + [new + g[len(old) :] for g in groups])
        self.remember_images(rows)
        sql.rename_prefix(self.db, old, new)

    def add_seen(self, sha: str, phash: str | None, source: str | None) -> None:
        if sql.add_seen(self.db, sha, phash, source):
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
            ch.id = sql.record_change(db, op, undo, ch.moves)
            sql.log(db, op, **detail)

    # ---- after the commit ------------------------------------------------------------------
    def settle(self, ch: Change, what: str) -> None:
        """Do the change's moves. When the disk refuses one, undo the change and raise StorageError
        saying that nothing changed (`what` names what the user asked for)."""
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
        for cid in self.catalog.pending_changes():
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
        return {self._path(r[k]) for r in self.catalog.all_moves() for k in ("src", "dst")}

    # ---- the moves -------------------------------------------------------------------------------
    def _path(self, p: str) -> Path:
        path = Path(p)
        return path if path.is_absolute() else self.root / path

    def _moves(self, cid: int | None) -> list[tuple[Path, Path]]:
        return [(self._path(r["src"]), self._path(r["dst"])) for r in self.catalog.moves_of(cid)]

    def _forward(self, cid: int | None) -> list[str]:
        problems = []
        checked: set[Path] = set()  # target folders made and found inside the dataset, once each
        for src, dst in self._moves(cid):
            if os.path.lexists(src):
                move_path(src, dst, self.root, checked)
            elif not os.path.lexists(dst):
                problems.append(f"file missing for planned move {src} -> {dst}")
        return problems

    def _revert(self, cid: int | None) -> None:
        """Moves back what was moved (last first), then the rows as they were, in one transaction."""
        for src, dst in reversed(self._moves(cid)):
            if os.path.lexists(dst) and not os.path.lexists(src):
                move_path(dst, src, self.root)
        undo = self.catalog.undo_of(cid)
        with self.catalog.transaction() as db:
            for image_id, before in undo["images"].items():
                sql.delete_image(db, image_id)
                if before:
                    sql.insert_image(db, before)
            for name, before in undo["groups"].items():
                sql.delete_groups(db, [name])
                if before:
                    sql.insert_group(db, name, before["created"], bool(before["exclusive"]))
            sql.forget_seen(db, undo["seen"])
            sql.forget_change(db, cid)
            sql.log(db, "undone", change=cid)

    def _finish(self, cid: int | None) -> None:
        with self.catalog.transaction() as db:
            sql.forget_change(db, cid)


def move_path(src: Path, dst: Path, root: Path, checked: set[Path] | None = None) -> None:
    """Rename src to dst; across file systems (EXDEV) copy, fsync, then delete the source. The target's
    folder must lie inside the dataset folder: a symbolic link there must not take files elsewhere.
    `checked`: folders already made and checked during this change (many moves share one)."""
    if checked is None or dst.parent not in checked:
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not inside(dst.parent, root):
            raise OSError(errno.EPERM, "the target folder lies outside the dataset folder (a symbolic link?)", str(dst))
        if checked is not None:
            checked.add(dst.parent)
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
