"""What every part of the dataset shares: where the files are, the catalog, the journal, one lock for
changes, and the listeners told of every change."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import NotFound
from ..schemas import LabelMode
from .catalog import Catalog
from .journal import Journal
from .names import validate_group_path
from .paths import Layout

log = logging.getLogger(__name__)

Listener = Callable[[dict[str, Any]], None]


@dataclass
class Store:
    layout: Layout
    catalog: Catalog
    journal: Journal
    max_image_pixels: int
    lock: threading.RLock = field(default_factory=threading.RLock)
    listeners: list[Listener] = field(default_factory=list)

    def emit(self, op: str, **data: Any) -> None:
        for fn in list(self.listeners):
            try:
                fn({"op": op, **data})
            except Exception:  # a listener must never break a dataset operation
                log.exception("dataset listener failed")

    def require_group(self, name: str) -> str:
        name = validate_group_path(name)
        if not self.catalog.group_exists(name):
            raise NotFound(f"group {name!r} does not exist")
        return name

    @property
    def label_mode(self) -> LabelMode:
        return LabelMode(self.catalog.meta("label_mode") or LabelMode.SINGLE)

    def unique_filename(self, group: str, wanted: str, taken: set[str]) -> str:
        """`wanted`, or `stem-2.ext`, `stem-3.ext`...: free in the folder, the catalog and `taken`."""
        stem, ext = os.path.splitext(wanted)
        candidate, n = wanted, 1
        folder = self.layout.group_dir(group)
        while (
            candidate.lower() in taken or (folder / candidate).exists() or self.catalog.filename_taken(group, candidate)
        ):
            n += 1
            candidate = f"{stem}-{n}{ext}"
        taken.add(candidate.lower())
        return candidate
