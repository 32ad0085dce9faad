"""Undo of the changes made from the pages: status changes and moves of images, group renames and
deletions. Each
undoable change records a token in its own transaction (the images, or the names, as they were and as
the change left them); undoing is one more change through the journal that spends the token."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from ..errors import Conflict, NotFound
from . import catalog as sql
from .groups import Groups
from .images import Images
from .paths import STATE
from .store import Store


class Undo:
    def __init__(self, store: Store, groups: Groups, images: Images) -> None:
        self.s, self.groups, self.images = store, groups, images

    def check(self, token: str) -> tuple[str, dict[str, Any]]:
        """(op, data) of a token that can still be used; 409 with the reason otherwise."""
        rec = self.s.catalog.undo(token) if isinstance(token, str) else None
        if rec is None:
            raise Conflict("this undo is not known (it was never offered, or expired long ago)")
        if rec["used"]:
            raise Conflict("this change was already undone")
        if rec["expires"] < time.time():
            raise Conflict("this undo expired: a change can be undone for 10 minutes")
        return rec["op"], json.loads(rec["data"])

    def apply(self, token: str) -> dict[str, Any]:
        with self.s.lock:
            op, data = self.check(token)
            if op == "rename_group":
                try:
                    current = self.s.require_group(data["to"])
                except NotFound:
                    raise Conflict(f"group {data['to']!r} was renamed or deleted since; nothing was undone") from None
                name = self.groups.rename(current, data["from"].rsplit("/", 1)[-1], spends=token)
                return {"undone": 1, "group": name}
            if op == "add_to_group":
                return {"undone": self._unadd(token, data)}
            if op == "delete_group":
                return {"undone": self._undelete(token, data), "group": min(data["groups"], key=len)}
            return {"undone": self.images.undo(token, data["images"])}

    def _undelete(self, token: str, data: dict[str, Any]) -> int:
        """The deleted group(s) and their images back as they were: one change through the journal
        whose moves are the deletion's, reversed; 409 when anything was changed or reused since."""
        before: dict[str, dict[str, Any]] = data["images"]
        now = {r["id"]: r for r in self.s.catalog.images(list(before))}
        if any(i not in now or now[i]["status"] != "deleted" or now[i]["grp"] != b["grp"] for i, b in before.items()):
            raise Conflict("images of the deleted group were changed since; nothing was undone")
        for name in data["groups"]:
            if clash := self.s.catalog.group_named_alike(name, but=None):
                raise Conflict(f"a group {clash!r} exists again; rename it first, nothing was undone")
        root = self.s.layout.root
        for src, dst in data["moves"]:
            if not (root / dst).exists() or (root / src).exists():
                raise Conflict(f"{src!r} is no longer where the deletion put it; nothing was undone")
        with self.s.journal.change("undo", spends=token) as ch:
            for name, row in sorted(data["groups"].items()):
                ch.insert_group(name, bool(row and row["exclusive"]))
            for image_id, row in before.items():
                ch.update_image(now[image_id], status=row["status"], grp=row["grp"], filename=row["filename"])
            for src, dst in reversed(data["moves"]):
                ch.move(dst, src)
            sql.use_undo(ch.db, token)
        self.s.journal.settle(ch, "the undo of the group deletion")
        self.s.emit("groups", name=min(data["groups"], key=len))
        return len(before)

    def _unadd(self, token: str, data: dict[str, Any]) -> int:
        """Multi-label: the memberships an "add to group" made are taken back (their files, links to
        the images of the other groups, go to the trash: nothing is unlinked)."""
        rows = self.s.catalog.images(data["added"])
        if len(rows) != len(data["added"]) or any(r["status"] != "group" or r["grp"] != data["group"] for r in rows):
            raise Conflict("images added to the group were changed since; nothing was undone")
        trash = f"{STATE}/trash/{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        with self.s.journal.change("undo", spends=token) as ch:
            for row in rows:
                ch.delete_image(row)
                ch.move(self.s.layout.rel_path(row), f"{trash}/{row['id']}{row['ext']}")
            sql.use_undo(ch.db, token)
        self.s.journal.settle(ch, "the undo of adding the images to the group")
        self.s.emit("images", groups=[data["group"]])
        return len(rows)
