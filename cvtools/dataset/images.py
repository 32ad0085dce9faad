"""Images already in the catalog: reading them, status changes and moves (one change each, through the
journal), more memberships in multi-label datasets, the served file and its thumbnail."""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import imaging
from ..errors import BadInput, Conflict, NotFound, StorageError
from ..schemas import ImageRef, ImageStatus, LabelMode
from . import catalog as sql
from .groups import Groups
from .journal import inside
from .names import validate_group_path
from .store import Store

MAX_IDS = 100_000


class Images:
    def __init__(self, store: Store, groups: Groups) -> None:
        self.s = store
        self.groups = groups
        self._thumb_locks: dict[str, threading.Lock] = {}

    # ---- reading ---------------------------------------------------------------------------
    def row(self, image_id: str) -> sqlite3.Row:
        row = self.s.catalog.image(str(image_id))
        if row is None:
            raise NotFound(f"image {image_id!r} does not exist")
        return row

    def get(self, image_id: str) -> ImageRef:
        return self.s.layout.ref(self.row(image_id))

    def page(self, group: str, status: str, offset: int, limit: int) -> tuple[int, list[ImageRef]]:
        group = validate_group_path(group)
        status = _status(status)
        if offset < 0 or not 1 <= limit <= 1000:
            raise BadInput("offset must be >= 0 and limit between 1 and 1000")
        if status != ImageStatus.DELETED:
            self.s.require_group(group)
        rows = self.s.catalog.page(group, status, offset, limit)
        return self.s.catalog.count(group, status), [self.s.layout.ref(r) for r in rows]

    def ids_in(self, group: str, status: str) -> list[str]:
        """Every image of a group's status (a selection wider than one page)."""
        group, status = validate_group_path(group), _status(status)
        if status != ImageStatus.DELETED:
            self.s.require_group(group)
        return self.s.catalog.ids_in(group, status)

    def memberships(self, refs: list[ImageRef]) -> dict[str, list[str]]:
        """Multi-label datasets: sha256 -> every group the image is a Group member of."""
        return self.s.catalog.memberships([r.sha256 for r in refs])

    def rows_for(self, ids: list[str]) -> list[sqlite3.Row]:
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise BadInput("ids must be a list of image ids")
        if len(ids) > MAX_IDS:
            raise BadInput(f"too many ids in one request ({MAX_IDS} at most)")
        rows = self.s.catalog.images(ids)
        if len(rows) != len(set(ids)):
            found = {r["id"] for r in rows}
            missing = [i for i in dict.fromkeys(ids) if i not in found]
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise NotFound(f"image {missing[0]!r} does not exist{more}")
        return rows

    # ---- changes ---------------------------------------------------------------------------
    def set_status(self, ids: list[str], status: str, undo: str | None = None) -> int:
        """`undo`: a new token under which the change can be undone (undo())."""
        status = _status(status)
        with self.s.lock:
            rows = self.rows_for(ids)
            return self._relocate(rows, lambda r: (status, r["grp"]), "set_status", undo=undo, status=status.value)

    def move(self, ids: list[str], group: str, undo: str | None = None) -> int:
        with self.s.lock:
            group = self.s.require_group(group)
            rows = self.rows_for(ids)
            return self._relocate(rows, lambda r: (ImageStatus.GROUP, group), "move", undo=undo, group=group)

    def undo(self, token: str, items: list[dict[str, Any]]) -> int:
        """Put the images of an undoable change back as they were (undo.py checked the token): one change
        through the journal, which also spends the token; 409 when an image changed since."""
        with self.s.lock:
            rows = self.s.catalog.images([i["id"] for i in items])
            now = {r["id"]: [r["status"], r["grp"]] for r in rows}
            changed = [i for i in items if now.get(i["id"]) != i["after"]]
            if changed:
                raise Conflict(
                    f"{len(changed)} of the {len(items)} images changed since (or were removed), so nothing was"
                    " undone; change them back by hand"
                )
            back = {i["id"]: (ImageStatus(i["before"][0]), i["before"][1]) for i in items}
            try:
                return self._relocate(rows, lambda r: back[r["id"]], "undo", spends=token)
            except StorageError:  # the disk refused: the journal put everything back, so may the token
                with self.s.catalog.transaction() as db:
                    sql.use_undo(db, token, used=False)
                raise

    def _relocate(
        self,
        rows: list[sqlite3.Row],
        target: Callable[[sqlite3.Row], tuple[ImageStatus, str]],
        op: str,
        *,
        undo: str | None = None,
        spends: str | None = None,
        **detail: Any,
    ) -> int:
        """Give each row the status and group `target` says; one change, then the file moves."""
        touched: set[str] = set()
        taken: set[str] = set()
        done: list[dict[str, Any]] = []
        with self.s.journal.change(op, ids=[r["id"] for r in rows], **detail) as ch:
            for row in rows:
                status, group = target(row)
                if row["status"] == status and row["grp"] == group:
                    continue
                new = {**dict(row), "status": status.value, "grp": group}
                if status == ImageStatus.GROUP:
                    if self.s.catalog.is_member(row["sha256"], group, but=row["id"]):
                        raise Conflict(f"image {row['id']!r} is already in group {group!r}")
                    new["filename"] = self.s.unique_filename(group, row["filename"], taken)
                    self.groups.restore(ch, group)
                ch.update_image(row, status=status.value, grp=group, filename=new["filename"])
                src, dst = self.s.layout.rel_path(row), self.s.layout.rel_path(new)
                if src != dst:
                    ch.move(src, dst)
                touched.update((row["grp"], group))
                done.append({"id": row["id"], "before": [row["status"], row["grp"]], "after": [status.value, group]})
            if undo and done:
                sql.put_undo(ch.db, undo, op, {"images": done}, sql.UNDO_SECONDS)
            if spends:
                sql.use_undo(ch.db, spends)
        self.s.journal.settle(ch, "the change of the images")
        if touched:
            self.s.emit("images", groups=sorted(touched))
        return len(ch.images)

    def add_to_group(self, ids: list[str], group: str, undo: str | None = None) -> int:
        """Multi-label mode: make images Group members of one more group. The group's folder gets the
        file as a hard link (a copy where the file system has none); already a member: skipped."""
        if self.s.label_mode != LabelMode.MULTI:
            raise Conflict("an image can be in several groups only in multi-label mode (switch it on the Dataset page)")
        group = self.s.require_group(group)
        rows = self.rows_for(ids)
        staged: list[tuple[dict[str, Any], Path]] = []
        with self.s.lock:
            group = self.groups.writable(group)
            try:
                self._stage_links(rows, group, staged)
                if staged:
                    with self.s.journal.change("add_to_group", group=group, ids=[n["id"] for n, _ in staged]) as ch:
                        for new, tmp in staged:
                            ch.insert_image(new)
                            ch.move(tmp, self.s.layout.rel_path(new))
                        if undo:
                            added = {"added": [n["id"] for n, _ in staged], "group": group}
                            sql.put_undo(ch.db, undo, "add_to_group", added, sql.UNDO_SECONDS)
                    self.s.journal.settle(ch, "adding the images to the group")
            finally:
                for _, tmp in staged:
                    tmp.unlink(missing_ok=True)  # moved by a settled change, or left by an undone one
        if staged:
            self.s.emit("images", groups=[group])
        return len(staged)

    def _stage_links(self, rows: list[sqlite3.Row], group: str, staged: list[tuple[dict[str, Any], Path]]) -> None:
        taken: set[str] = set()
        for row in rows:
            if row["status"] != ImageStatus.GROUP:
                raise BadInput(f"image {row['id']!r} is {row['status']}; only Group images can join another group")
            if self.s.catalog.is_member(row["sha256"], group) or any(n["sha256"] == row["sha256"] for n, _ in staged):
                continue
            tmp = self.s.layout.new_tmp_path()
            try:
                os.link(self.s.layout.abs_path(row), tmp)
            except OSError:
                shutil.copy2(self.s.layout.abs_path(row), tmp)
            new = {**dict(row), "id": secrets.token_hex(8), "grp": group, "created": time.time() + len(staged) * 1e-6}
            new["filename"] = self.s.unique_filename(group, row["filename"], taken)
            staged.append((new, tmp))

    # ---- files -----------------------------------------------------------------------------
    def file_path(self, image_id: str) -> Path:
        """The image's file; only a regular file whose real place is inside the dataset is served."""
        path = self.s.layout.abs_path(self.row(image_id))
        if path.is_symlink() or not path.is_file() or not inside(path, self.s.layout.root):
            raise NotFound(f"the file of image {image_id!r} is missing")
        return path

    def thumb_path(self, image_id: str) -> Path:
        """The thumbnail, made once: concurrent requests for a new image wait for the one that makes it."""
        thumb = self.s.layout.thumb(self.row(image_id)["id"])
        if thumb.exists():
            return thumb
        with self.s.lock:
            lock = self._thumb_locks.setdefault(image_id, threading.Lock())
        with lock:
            if not thumb.exists():
                src = self.file_path(image_id)
                imaging.write_atomic(thumb, imaging.thumbnail_jpeg(src, max_pixels=self.s.max_image_pixels))
        with self.s.lock:
            self._thumb_locks.pop(image_id, None)
        return thumb


def _status(status: str) -> ImageStatus:
    try:
        return ImageStatus(status)
    except ValueError:
        raise BadInput(f"status must be one of {', '.join(ImageStatus)}") from None
