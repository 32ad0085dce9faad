"""Where things are on disk: a Group image in its group's folder, New and Deleted ones and everything
of CV Tools' own under `.cvtools/`."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..schemas import ImageRef, ImageStatus

STATE = ".cvtools"


class Layout:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / STATE
        self.files_dir = self.state / "files"
        self.thumbs_dir = self.state / "thumbs"
        self.trash_dir = self.state / "trash"
        self.tmp_dir = self.state / "tmp"
        self.recovered_dir = self.state / "recovered"

    def make(self) -> None:
        for d in (self.root, self.state, self.files_dir, self.thumbs_dir, self.trash_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)

    def rel_path(self, row: Mapping[str, Any]) -> str:
        if row["status"] == ImageStatus.GROUP:
            return f"{row['grp']}/{row['filename']}"
        return f"{STATE}/files/{row['id']}{row['ext']}"

    def abs_path(self, row: Mapping[str, Any]) -> Path:
        return self.root / self.rel_path(row)

    def group_dir(self, group: str) -> Path:
        return self.root / group

    def thumb(self, image_id: str) -> Path:
        return self.thumbs_dir / f"{image_id}.jpg"

    def new_tmp_path(self) -> Path:
        return self.tmp_dir / f"up-{secrets.token_hex(8)}"

    def ref(self, row: Mapping[str, Any]) -> ImageRef:
        return ImageRef(
            id=row["id"],
            group=row["grp"],
            status=ImageStatus(row["status"]),
            filename=row["filename"],
            ext=row["ext"],
            sha256=row["sha256"],
            phash=row["phash"],
            source=row["source"],
            width=row["width"],
            height=row["height"],
            size=row["size"],
            created=row["created"],
            path=self.abs_path(row),
        )
