"""Undo of the changes made from the pages: status changes and moves of images, group renames. Each
undoable change records a token in its own transaction (the images, or the names, as they were and as
the change left them); undoing is one more change through the journal that spends the token."""

from __future__ import annotations

import json
import time
from typing import Any

from ..errors import Conflict, NotFound
from .groups import Groups
from .images import Images
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
            return {"undone": self.images.undo(token, data["images"])}
