"""Groups (the classes, as folders): create, rename, delete to the trash, attributes, the label mode."""

from __future__ import annotations

import secrets
import time
from typing import Any

from ..errors import BadInput, Conflict, NotFound
from ..schemas import ImageStatus, LabelMode
from . import catalog as sql
from .journal import inside
from .names import parent_of, validate_new_leaf
from .paths import STATE
from .store import Store


class Groups:
    def __init__(self, store: Store) -> None:
        self.s = store

    # ---- reading ---------------------------------------------------------------------------
    def names(self) -> list[str]:
        return self.s.catalog.group_names()

    def listing(self) -> list[dict[str, Any]]:
        counts: dict[str, dict[str, int]] = {}
        for r in self.s.catalog.counts():
            counts.setdefault(r["grp"], dict.fromkeys(ImageStatus, 0))[r["status"]] = r["n"]
        out = []
        for r in self.s.catalog.group_rows():
            name = r["name"]
            c = counts.get(name, dict.fromkeys(ImageStatus, 0))
            group: dict[str, Any] = {
                "name": name,
                "parent": parent_of(name),
                "counts": {str(k): v for k, v in c.items()},
            }
            if r["exclusive"]:  # only attributes carry it: the original's listing keeps its exact shape
                group["exclusive"] = True
            out.append(group)
        return out

    def totals(self) -> dict[str, int]:
        totals = dict.fromkeys([str(s) for s in ImageStatus], 0)
        for r in self.s.catalog.totals():
            totals[r["status"]] = r["n"]
        return totals

    def subtree(self, name: str) -> list[str]:
        return [g for g in self.names() if g == name or g.startswith(name + "/")]

    def writable(self, name: str) -> str:
        """A group that exists now (the caller holds the lock) and whose folder is a real folder inside
        the dataset: images never land in a renamed or deleted group, nor behind a symbolic link."""
        try:
            name = self.s.require_group(name)
        except NotFound:
            raise Conflict(f"group {name!r} was renamed or deleted meanwhile; nothing was added") from None
        folder = self.s.layout.group_dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        if folder.is_symlink() or not inside(folder, self.s.layout.root):
            raise BadInput(f"the folder of group {name!r} is a symbolic link; CV Tools writes only inside the dataset")
        return name

    # ---- changes ---------------------------------------------------------------------------
    def create(self, name: str, parent: str | None = None) -> str:
        leaf = validate_new_leaf(name)
        with self.s.lock:
            full = f"{self.s.require_group(parent)}/{leaf}" if parent else leaf
            clash = self.s.catalog.group_named_alike(full)
            if clash:
                raise Conflict(f"group {clash!r} already exists" + ("" if clash == full else " (names ignore case)"))
            folder = self.s.layout.group_dir(full)
            root = self.s.layout.root
            if any(p.is_symlink() for p in [folder, *folder.parents] if p != root and p.is_relative_to(root)):
                raise BadInput(
                    f"a symbolic link named {full!r} is in the dataset folder; remove it or use another name"
                )
            folder.mkdir(parents=True, exist_ok=True)
            with self.s.journal.change("create_group", name=full) as ch:
                ch.insert_group(full)
        self.s.emit("groups", name=full)
        return full

    def rename(self, name: str, new_leaf: str, *, undo: str | None = None, spends: str | None = None) -> str:
        """`undo`: a new token under which the rename can be undone; `spends`: the token this undoes."""
        leaf = validate_new_leaf(new_leaf)
        with self.s.lock:
            name = self.s.require_group(name)
            parent = parent_of(name)
            new = f"{parent}/{leaf}" if parent else leaf
            if new == name:
                return name
            clash = self.s.catalog.group_named_alike(new, but=name)
            if clash or (self.s.layout.group_dir(new).exists() and new.lower() != name.lower()):
                raise Conflict(f"group {clash or new!r} already exists")
            groups = self.subtree(name)
            with self.s.journal.change("rename_group", name=name, to=new) as ch:
                ch.rename_groups(name, new, groups, self.s.catalog.images_in_groups(groups))
                ch.move(name, new)
                if undo:
                    sql.put_undo(ch.db, undo, "rename_group", {"from": name, "to": new}, sql.UNDO_SECONDS)
                if spends:
                    sql.use_undo(ch.db, spends)
            self.s.journal.settle(ch, "the rename")
        self.s.emit("groups", name=new, old=name)
        return new

    def delete(self, name: str, undo: str | None = None) -> int:
        """The group, its sub-groups and all their images go to the trash; nothing is unlinked.
        `undo`: a new token under which undo.py can bring it all back."""
        with self.s.lock:
            name = self.s.require_group(name)
            groups = self.subtree(name)
            rows = self.s.catalog.images_in_groups(groups)
            trash = f"{STATE}/trash/{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
            with self.s.journal.change("delete_group", name=name, images=len(rows)) as ch:
                for row in rows:
                    ch.update_image(row, status=ImageStatus.DELETED.value)
                    if row["status"] == ImageStatus.GROUP:
                        ch.move(self.s.layout.rel_path(row), self.s.layout.rel_path({**dict(row), "status": "deleted"}))
                ch.delete_groups(groups)
                # Whatever else is in the folder (other files, empty sub-folders) goes along.
                ch.move(name, f"{trash}/{name.rsplit('/', 1)[-1]}")
                if undo:
                    data = {"images": ch.images, "groups": ch.groups, "moves": ch.moves}
                    sql.put_undo(ch.db, undo, "delete_group", data, sql.UNDO_SECONDS)
            self.s.journal.settle(ch, "the deletion of the group")
        self.s.emit("groups", name=name, deleted=True)
        return len(rows)

    def restore(self, ch: Any, name: str) -> None:
        """Inside a change: a deleted group an image is brought back to comes back too."""
        if not self.s.catalog.group_exists(name) and name not in ch.groups:
            ch.insert_group(name)
            self.s.layout.group_dir(name).mkdir(parents=True, exist_ok=True)

    # ---- multi-label datasets ----------------------------------------------------------------
    def exclusive_roots(self) -> list[str]:
        return self.s.catalog.exclusive_roots()

    def set_exclusive(self, name: str, exclusive: bool) -> None:
        """Mark a root group as one attribute whose children are its values (one softmax head)."""
        with self.s.lock:
            name = self.s.require_group(name)
            if exclusive and "/" in name:
                raise BadInput("only a top-level group can be exclusive (its sub-groups are the values)")
            with self.s.journal.change("set_exclusive", name=name, exclusive=bool(exclusive)) as ch:
                ch.set_exclusive(name, bool(exclusive))
        self.s.emit("groups", name=name)

    def set_label_mode(self, mode: LabelMode | str) -> LabelMode:
        try:
            mode = LabelMode(mode)
        except ValueError:
            raise BadInput("label_mode must be single or multi") from None
        with self.s.lock:
            if mode == LabelMode.SINGLE and (n := self.s.catalog.multi_members()):
                raise Conflict(
                    f"{n} image(s) are in more than one group; remove the extra memberships "
                    "(delete them from all but one group) before switching to single-label mode"
                )
            with self.s.catalog.transaction() as db:
                sql.set_meta(db, "label_mode", mode.value)
                sql.log(db, "label_mode", mode=mode.value)
        self.s.emit("groups", label_mode=mode.value)
        return mode
