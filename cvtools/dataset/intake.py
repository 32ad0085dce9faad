"""Taking images in (uploads, grabs): each file is fully checked and hashed outside the lock, then one
change whose moves are done before the answer. The temp files are ours: whatever is not taken in is
deleted, and an image the disk refused is neither kept nor remembered as seen."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import imaging
from ..errors import BadInput
from ..schemas import ImageRef, ImageStatus
from .groups import Groups
from .names import safe_filename
from .store import Store

DUPLICATE = "duplicate of an image already in the catalog"


@dataclass
class Incoming:
    """A file waiting to be taken in: a temp file under .cvtools/tmp that we own."""

    name: str
    path: Path
    source: str | None = None


@dataclass
class AddResult:
    added: list[ImageRef] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


@dataclass
class _Checked:
    item: Incoming
    info: imaging.ImageInfo
    sha256: str
    size: int


class Intake:
    def __init__(self, store: Store, groups: Groups) -> None:
        self.s = store
        self.groups = groups

    def add(self, group: str, items: Iterable[Incoming], *, status: str = "group") -> AddResult:
        items = list(items)
        result = AddResult()
        try:
            try:
                status = ImageStatus(status)
            except ValueError:
                raise BadInput(f"status must be one of {', '.join(ImageStatus)}") from None
            group = self.s.require_group(group)
            accepted = self._check(items, result)
            if accepted:
                with self.s.lock:
                    # The group is judged again under the lock: renamed or deleted meanwhile -> 409.
                    group = self.groups.writable(group)
                    rows = self._take_in(group, accepted, status, result)
                result.added = [self.s.layout.ref(r) for r in rows]
        finally:
            for item in items:
                item.path.unlink(missing_ok=True)  # moved by a settled change, or not taken in
        if result.added:
            self.s.emit("images", groups=[group])
        return result

    def _check(self, items: list[Incoming], result: AddResult) -> list[_Checked]:
        accepted: list[_Checked] = []
        batch: set[str] = set()
        for item in items:
            try:
                info = imaging.check_image(item.path, max_pixels=self.s.max_image_pixels)
            except imaging.ImageRejected as exc:
                result.skipped.append({"name": item.name, "reason": str(exc)})
                continue
            sha = imaging.sha256_file(item.path)
            if sha in batch or self.s.catalog.known_sha(sha):
                result.skipped.append({"name": item.name, "reason": DUPLICATE})
                continue
            batch.add(sha)
            accepted.append(_Checked(item, info, sha, item.path.stat().st_size))
        return accepted

    def _take_in(
        self, group: str, accepted: list[_Checked], status: ImageStatus, result: AddResult
    ) -> list[dict[str, Any]]:
        taken: set[str] = set()
        now = time.time()
        rows: list[dict[str, Any]] = []
        with self.s.journal.change("add_images", group=group, status=status.value) as ch:
            for i, c in enumerate(accepted):
                if self.s.catalog.known_sha(c.sha256):  # taken in by a concurrent request meanwhile
                    result.skipped.append({"name": c.item.name, "reason": DUPLICATE})
                    continue
                image_id = secrets.token_hex(8)
                filename = safe_filename(c.item.name, c.info.ext, image_id)
                if status == ImageStatus.GROUP:
                    filename = self.s.unique_filename(group, filename, taken)
                row = {
                    "id": image_id,
                    "grp": group,
                    "status": status.value,
                    "filename": filename,
                    "ext": c.info.ext,
                    "sha256": c.sha256,
                    "phash": c.info.phash,
                    "source": c.item.source,
                    "width": c.info.width,
                    "height": c.info.height,
                    "size": c.size,
                    "created": now + i * 1e-6,
                }
                ch.insert_image(row)
                ch.add_seen(c.sha256, c.info.phash, c.item.source)
                ch.move(c.item.path, self.s.layout.rel_path(row))
                rows.append(row)
        # A refused move undoes the whole change: no row, not "seen", the upload can be repeated.
        self.s.journal.settle(ch, f"the upload of {len(rows)} image(s)")
        return rows
