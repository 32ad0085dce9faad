"""The folder-per-group dataset, kept in step with its catalog.

Group images live in `<root>/<group>/<filename>`; New and Deleted images in
`<root>/.cvtools/files/<id><ext>`. Every change is one catalog transaction that records the rows as
they were and the file moves it implies (journal.py); a crash at any moment leaves catalog and folders
consistent and no file is lost. The Dataset is a thin facade: each capability has its own module.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..schemas import ImageRef, ImageStatus, LabelMode
from . import catalog as sql
from .catalog import Catalog
from .groups import Groups
from .images import Images
from .intake import AddResult, Incoming, Intake
from .journal import Journal
from .names import safe_filename, validate_group_path, validate_leaf
from .paths import STATE, Layout
from .rescan import Rescan, save_orphans
from .store import Store
from .undo import Undo

__all__ = ["STATE", "AddResult", "Dataset", "Incoming", "safe_filename", "validate_group_path", "validate_leaf"]
log = logging.getLogger(__name__)


class Dataset:
    def __init__(self, root: Path, *, max_image_pixels: int, label_mode: str = "single") -> None:
        self.layout = Layout(root)
        self.layout.make()
        self.root = root
        self.warnings: list[str] = []
        if not (self.layout.state / "catalog.sqlite").exists() and (warning := save_orphans(self.layout)):
            self.warnings.append(warning)
        self.catalog = Catalog(self.layout.state / "catalog.sqlite")
        self.store = Store(self.layout, self.catalog, Journal(self.catalog, root), max_image_pixels)
        self.groups = Groups(self.store)
        self.images = Images(self.store, self.groups)
        self.intake = Intake(self.store, self.groups)
        self.undoer = Undo(self.store, self.groups, self.images)
        if self.catalog.meta("label_mode") is None:
            with self.catalog.transaction() as db:
                sql.set_meta(db, "label_mode", LabelMode(label_mode).value, replace=False)
        self.recover()

    @property
    def listeners(self) -> list[Callable[[dict[str, Any]], None]]:
        return self.store.listeners

    @property
    def tmp_dir(self) -> Path:
        return self.layout.tmp_dir

    def close(self) -> None:
        self.catalog.close()

    def recover(self) -> list[str]:
        """Complete (or undo) changes a crash interrupted; clear abandoned temp files, but never one
        that a recorded change still has to move."""
        with self.store.lock:
            problems = self.store.journal.recover()
            keep = self.store.journal.pending_paths()
            for p in self.layout.tmp_dir.iterdir():
                if p not in keep:
                    p.unlink(missing_ok=True) if p.is_file() else shutil.rmtree(p, ignore_errors=True)
        for p in problems:
            log.warning("recovery: %s", p)
        return problems

    def rescan(
        self, progress: Callable[[int, int, str], None] | None = None, cancelled: Callable[[], bool] = lambda: False
    ) -> dict[str, Any]:
        return Rescan(self.store, self.warnings).run(progress, cancelled)

    # ---- groups ------------------------------------------------------------------------------
    def group_names(self) -> list[str]:
        return self.groups.names()

    def require_group(self, name: str) -> str:
        return self.store.require_group(name)

    def list_groups(self) -> list[dict[str, Any]]:
        return self.groups.listing()

    def totals(self) -> dict[str, int]:
        return self.groups.totals()

    def create_group(self, name: str, parent: str | None = None) -> str:
        return self.groups.create(name, parent)

    def rename_group(self, name: str, new_leaf: str, undo: str | None = None) -> str:
        return self.groups.rename(name, new_leaf, undo=undo)

    def delete_group(self, name: str, undo: str | None = None) -> int:
        return self.groups.delete(name, undo)

    @property
    def label_mode(self) -> LabelMode:
        return self.store.label_mode

    def set_label_mode(self, mode: str) -> LabelMode:
        return self.groups.set_label_mode(mode)

    def multi_members(self) -> int:
        return self.catalog.multi_members()

    def exclusive_roots(self) -> list[str]:
        return self.groups.exclusive_roots()

    def set_exclusive(self, name: str, exclusive: bool) -> None:
        self.groups.set_exclusive(name, exclusive)

    # ---- images ------------------------------------------------------------------------------
    def new_tmp_path(self) -> Path:
        return self.layout.new_tmp_path()

    def add_images(self, group: str, items: Iterable[Incoming], *, status: str = "group") -> AddResult:
        return self.intake.add(group, items, status=status)

    def known_sha(self, sha: str) -> bool:
        return self.catalog.known_sha(sha)

    def seen(self) -> list[sqlite3.Row]:
        """(source, phash) of every image ever taken in: the grabber never offers one twice."""
        return self.catalog.seen()

    def get_image(self, image_id: str) -> ImageRef:
        return self.images.get(image_id)

    def list_images(
        self, group: str, status: str = "group", offset: int = 0, limit: int = 200
    ) -> tuple[int, list[ImageRef]]:
        return self.images.page(group, status, offset, limit)

    def ids_in(self, group: str, status: str = "group") -> list[str]:
        return self.images.ids_in(group, status)

    def memberships(self, refs: list[ImageRef]) -> dict[str, list[str]]:
        return self.images.memberships(refs)

    def with_status(self, status: ImageStatus | str = ImageStatus.GROUP) -> list[ImageRef]:
        return [self.layout.ref(r) for r in self.catalog.with_status(str(status))]

    def set_status(self, ids: list[str], status: str, undo: str | None = None) -> int:
        return self.images.set_status(ids, status, undo)

    def move(self, ids: list[str], group: str, undo: str | None = None) -> int:
        return self.images.move(ids, group, undo)

    def undo(self, token: str) -> dict[str, Any]:
        """Undo a change made with an undo token: {"undone": n[, "group": name]}; 409 with the reason."""
        return self.undoer.apply(token)

    def add_to_group(self, ids: list[str], group: str, undo: str | None = None) -> int:
        return self.images.add_to_group(ids, group, undo)

    def file_path(self, image_id: str) -> Path:
        return self.images.file_path(image_id)

    def thumb_path(self, image_id: str) -> Path:
        return self.images.thumb_path(image_id)
