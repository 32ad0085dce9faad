"""The folder-per-group dataset, kept in step with the catalog.

Group images live in `<root>/<group>/<filename>`; New and Deleted images in
`<root>/.cvtools/files/<id><ext>`. A change is one catalog transaction that also records the
file moves it implies; the moves are done after the commit and rolled forward at start-up,
so a crash at any moment leaves catalog and folders consistent and no file is lost.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import imaging
from .catalog import Catalog
from .errors import BadInput, Conflict, NotFound
from .journal import Journal, inside

log = logging.getLogger(__name__)

STATUSES = ("group", "new", "deleted")
LABEL_MODES = ("single", "multi")
STATE = ".cvtools"
_BAD_NAME_CHARS = re.compile(r'[/\\<>:"|?*\x00-\x1f\x7f]')


# Names Windows reserves in any folder (with or without an extension): a dataset copied there breaks.
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}


def validate_new_leaf(name: str) -> str:
    """A name for a new or renamed group: also portable (no name Windows reserves)."""
    leaf = validate_leaf(name)
    if leaf.split(".")[0].lower() in _RESERVED:
        raise BadInput(f"group name {leaf!r} is reserved on Windows (CON, PRN, AUX, NUL, COM1-9, LPT1-9)")
    return leaf


def validate_leaf(name: str) -> str:
    """A group's own name (one folder level); raises BadInput with the reason."""
    if not isinstance(name, str) or not name.strip():
        raise BadInput("group name must not be empty")
    name = unicodedata.normalize("NFC", name.strip())
    if name in (".", ".."):
        raise BadInput("group name must not be '.' or '..'")
    if "/" in name or "\\" in name:
        raise BadInput("group name must not contain '/' or '\\'")
    if name.startswith("."):
        raise BadInput("group name must not start with a dot")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        raise BadInput("group name must not contain control characters")
    if name.endswith("."):
        raise BadInput("group name must not end with a dot")
    if len(name.encode()) > 120:
        raise BadInput("group name is too long (120 bytes at most)")
    return name


def validate_group_path(name: str) -> str:
    """A full group name such as 'mammals/cats'."""
    if not isinstance(name, str) or not name:
        raise BadInput("group name must not be empty")
    parts = [validate_leaf(p) for p in name.split("/")]
    return "/".join(parts)


def safe_filename(name: str, ext: str, fallback: str) -> str:
    base = Path(unicodedata.normalize("NFC", name or "")).name
    stem = Path(base).stem
    stem = _BAD_NAME_CHARS.sub("_", stem)
    stem = "".join(c for c in stem if unicodedata.category(c)[0] != "C").strip(" .")
    stem = stem[:100] or fallback
    return f"{stem}{ext}"


@dataclass
class AddResult:
    added: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Incoming:
    """A file waiting to be taken in: a temp file under .cvtools/tmp that we own."""

    name: str
    path: Path
    source: str | None = None


class Dataset:
    def __init__(self, root: Path, *, max_image_pixels: int, label_mode: str = "single") -> None:
        self.root = root
        self.state = root / STATE
        self.files_dir = self.state / "files"
        self.thumbs_dir = self.state / "thumbs"
        self.trash_dir = self.state / "trash"
        self.tmp_dir = self.state / "tmp"
        for d in (self.root, self.state, self.files_dir, self.thumbs_dir, self.trash_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.max_image_pixels = max_image_pixels
        self.warnings: list[str] = []
        if not (self.state / "catalog.sqlite").exists():
            self._before_rebuild()
        self.catalog = Catalog(self.state / "catalog.sqlite")
        self.journal = Journal(self.catalog, self.root)
        self._lock = threading.RLock()
        self._thumb_locks: dict[str, threading.Lock] = {}
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        if self.catalog.one("SELECT 1 FROM meta WHERE key = 'label_mode'") is None:
            if label_mode not in LABEL_MODES:
                raise BadInput("label_mode must be single or multi")
            with self.catalog.transaction() as db:
                db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('label_mode', ?)", (label_mode,))
        self.recover()

    def _before_rebuild(self) -> None:
        """The catalog is gone but the dataset is not empty: the start-up rescan rebuilds it from the
        group folders. New and Deleted files cannot be placed (their group was only in the catalog);
        they are kept in .cvtools/recovered, never deleted."""
        orphans = [p for p in self.files_dir.iterdir() if p.is_file()]
        has_groups = any(e.is_dir() and not e.name.startswith(".") for e in os.scandir(self.root))
        if not orphans and not has_groups:
            return  # a new dataset
        recovered = self.state / "recovered"
        recovered.mkdir(exist_ok=True)
        for p in orphans:
            os.replace(p, recovered / p.name)
        self.warnings.append(
            "the catalog was missing and is rebuilt from the group folders (Group images keep their group);"
            f" {len(orphans)} New/Deleted image(s) could not be placed and are kept in {STATE}/recovered"
        )
        log.warning("dataset %s: %s", self.root, self.warnings[-1])

    # ---- paths -------------------------------------------------------------------------
    def rel_path(self, row: sqlite3.Row | dict[str, Any]) -> str:
        if row["status"] == "group":
            return f"{row['grp']}/{row['filename']}"
        return f"{STATE}/files/{row['id']}{row['ext']}"

    def abs_path(self, row: sqlite3.Row | dict[str, Any]) -> Path:
        return self.root / self.rel_path(row)

    def group_dir(self, group: str) -> Path:
        return self.root / group

    def new_tmp_path(self) -> Path:
        return self.tmp_dir / f"up-{secrets.token_hex(8)}"

    # ---- change notification -------------------------------------------------------------
    def _emit(self, op: str, **data: Any) -> None:
        for fn in list(self.listeners):
            try:
                fn({"op": op, **data})
            except Exception:  # a listener must never break a dataset operation
                log.exception("dataset listener failed")

    # ---- recovery --------------------------------------------------------------------------
    def recover(self) -> list[str]:
        """Complete (or undo) changes a crash interrupted; clear abandoned temp files, but never one
        that a recorded change still has to move."""
        with self._lock:
            problems = self.journal.recover()
            keep = self.journal.pending_paths()
            for p in self.tmp_dir.iterdir():
                if p in keep:
                    continue
                p.unlink(missing_ok=True) if p.is_file() else shutil.rmtree(p, ignore_errors=True)
        for p in problems:
            log.warning("recovery: %s", p)
        return problems

    # ---- label mode (multi-label datasets) ----------------------------------------------
    @property
    def label_mode(self) -> str:
        row = self.catalog.one("SELECT value FROM meta WHERE key = 'label_mode'")
        return row["value"] if row else "single"

    def multi_members(self) -> int:
        """Images (by content) that are Group members of more than one group."""
        row = self.catalog.one(
            "SELECT count(*) AS n FROM (SELECT sha256 FROM images WHERE status = 'group'"
            " GROUP BY sha256 HAVING count(DISTINCT grp) > 1)"
        )
        return int(row["n"]) if row else 0

    def set_label_mode(self, mode: str) -> str:
        if mode not in LABEL_MODES:
            raise BadInput("label_mode must be single or multi")
        with self._lock:
            if mode == "single" and (n := self.multi_members()):
                raise Conflict(
                    f"{n} image(s) are in more than one group; remove the extra memberships "
                    "(delete them from all but one group) before switching to single-label mode"
                )
            with self.catalog.transaction() as db:
                db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('label_mode', ?)", (mode,))
                Catalog.log(db, "label_mode", mode=mode)
        self._emit("groups", label_mode=mode)
        return mode

    def exclusive_roots(self) -> list[str]:
        return [r["name"] for r in self.catalog.all("SELECT name FROM groups WHERE exclusive = 1 ORDER BY name")]

    def set_exclusive(self, name: str, exclusive: bool) -> None:
        """Mark a root group as one attribute whose children are its values (one softmax head)."""
        with self._lock:
            name = self.require_group(name)
            if exclusive and "/" in name:
                raise BadInput("only a top-level group can be exclusive (its sub-groups are the values)")
            with self.catalog.transaction() as db:
                db.execute("UPDATE groups SET exclusive = ? WHERE name = ?", (int(bool(exclusive)), name))
                Catalog.log(db, "set_exclusive", name=name, exclusive=bool(exclusive))
        self._emit("groups", name=name)

    def memberships(self, shas: list[str]) -> dict[str, list[str]]:
        """sha256 -> the groups in which it is a Group member."""
        out: dict[str, list[str]] = {}
        unique = list(dict.fromkeys(shas))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            for r in self.catalog.all(
                f"SELECT sha256, grp FROM images WHERE status = 'group' AND sha256 IN ({','.join('?' * len(chunk))})"
                " ORDER BY grp",
                chunk,
            ):
                out.setdefault(r["sha256"], []).append(r["grp"])
        return out

    def add_to_group(self, ids: list[str], group: str) -> int:
        """Multi-label mode: make images Group members of one more group. The group's folder gets the
        file as a hard link (a copy where the file system has none); already a member: skipped."""
        if self.label_mode != "multi":
            raise Conflict("an image can be in several groups only in multi-label mode (switch it on the Dataset page)")
        group = self.require_group(group)
        rows = self._rows_for(ids)
        staged: list[tuple[dict[str, Any], Path]] = []
        with self._lock:
            group = self._writable_group(group)
            taken: set[str] = set()
            try:
                for row in rows:
                    if row["status"] != "group":
                        raise BadInput(
                            f"image {row['id']!r} is {row['status']}; only Group images can join another group"
                        )
                    if self.catalog.one(
                        "SELECT 1 FROM images WHERE sha256 = ? AND grp = ? AND status = 'group'", (row["sha256"], group)
                    ) or any(r["sha256"] == row["sha256"] for r, _ in staged):
                        continue
                    tmp = self.new_tmp_path()
                    try:
                        os.link(self.abs_path(row), tmp)
                    except OSError:
                        shutil.copy2(self.abs_path(row), tmp)
                    new = {
                        **dict(row),
                        "id": secrets.token_hex(8),
                        "grp": group,
                        "created": time.time() + len(staged) * 1e-6,
                    }
                    new["filename"] = self._unique_filename(group, row["filename"], taken)
                    staged.append((new, tmp))
                if staged:
                    with self.journal.change("add_to_group", group=group, ids=[n["id"] for n, _ in staged]) as ch:
                        for new, tmp in staged:
                            ch.insert_image(new)
                            ch.move(tmp, self.rel_path(new))
                    self.journal.settle(ch, "adding the images to the group")
            finally:
                for _, tmp in staged:
                    tmp.unlink(missing_ok=True)  # moved by a settled change, or left by an undone one
        if staged:
            self._emit("images", groups=[group])
        return len(staged)

    # ---- groups ---------------------------------------------------------------------------
    def group_names(self) -> list[str]:
        return [r["name"] for r in self.catalog.all("SELECT name FROM groups ORDER BY name")]

    def require_group(self, name: str) -> str:
        name = validate_group_path(name)
        if not self.catalog.one("SELECT 1 FROM groups WHERE name = ?", (name,)):
            raise NotFound(f"group {name!r} does not exist")
        return name

    def list_groups(self) -> list[dict[str, Any]]:
        counts: dict[str, dict[str, int]] = {}
        for r in self.catalog.all("SELECT grp, status, count(*) AS n FROM images GROUP BY grp, status"):
            counts.setdefault(r["grp"], dict.fromkeys(STATUSES, 0))[r["status"]] = r["n"]
        out = []
        for r in self.catalog.all("SELECT name, exclusive FROM groups ORDER BY name"):
            name = r["name"]
            parent = name.rsplit("/", 1)[0] if "/" in name else None
            group: dict[str, Any] = {
                "name": name,
                "parent": parent,
                "counts": counts.get(name, dict.fromkeys(STATUSES, 0)),
            }
            if r["exclusive"]:  # only attributes carry it: the original's listing keeps its exact shape
                group["exclusive"] = True
            out.append(group)
        return out

    def totals(self) -> dict[str, int]:
        totals = dict.fromkeys(STATUSES, 0)
        for r in self.catalog.all("SELECT status, count(*) AS n FROM images GROUP BY status"):
            totals[r["status"]] = r["n"]
        return totals

    def _same_name(self, full: str, but: str | None = None) -> str | None:
        """An existing group whose name equals `full` ignoring case (folder names clash on Windows and
        macOS), other than `but`."""
        row = self.catalog.one("SELECT name FROM groups WHERE lower(name) = lower(?) AND name IS NOT ?", (full, but))
        return row["name"] if row else None

    def _writable_group(self, name: str) -> str:
        """A group that exists now (checked under the lock) and whose folder is a real folder inside the
        dataset: uploads never land in a renamed or deleted group, nor behind a symbolic link."""
        try:
            name = self.require_group(name)
        except NotFound:
            raise Conflict(f"group {name!r} was renamed or deleted meanwhile; nothing was added") from None
        folder = self.group_dir(name)
        folder.mkdir(parents=True, exist_ok=True)
        if folder.is_symlink() or not inside(folder, self.root):
            raise BadInput(f"the folder of group {name!r} is a symbolic link; CV Tools writes only inside the dataset")
        return name

    def create_group(self, name: str, parent: str | None = None) -> str:
        leaf = validate_new_leaf(name)
        with self._lock:
            full = f"{self.require_group(parent)}/{leaf}" if parent else leaf
            clash = self._same_name(full)
            if clash:
                raise Conflict(f"group {clash!r} already exists" + ("" if clash == full else " (names ignore case)"))
            folder = self.group_dir(full)
            if any(p.is_symlink() for p in [folder, *folder.parents] if p != self.root and p.is_relative_to(self.root)):
                raise BadInput(
                    f"a symbolic link named {full!r} is in the dataset folder; remove it or choose another name"
                )
            folder.mkdir(parents=True, exist_ok=True)
            with self.journal.change("create_group", name=full) as ch:
                ch.insert_group(full)
        self._emit("groups", name=full)
        return full

    def _subtree(self, name: str) -> list[str]:
        return [g for g in self.group_names() if g == name or g.startswith(name + "/")]

    def rename_group(self, name: str, new_leaf: str) -> str:
        leaf = validate_new_leaf(new_leaf)
        with self._lock:
            name = self.require_group(name)
            parent = name.rsplit("/", 1)[0] if "/" in name else None
            new = f"{parent}/{leaf}" if parent else leaf
            if new == name:
                return name
            clash = self._same_name(new, but=name)
            if clash or (self.group_dir(new).exists() and new.lower() != name.lower()):
                raise Conflict(f"group {clash or new!r} already exists")
            groups = self._subtree(name)
            marks = ",".join("?" * len(groups))
            n = len(name)
            with self.journal.change("rename_group", name=name, to=new) as ch:
                ch.remember_groups(groups + [new + g[n:] for g in groups])
                ch.remember_images(self.catalog.all(f"SELECT * FROM images WHERE grp IN ({marks})", groups))
                for table, col in (("groups", "name"), ("images", "grp")):
                    ch.db.execute(
                        f"UPDATE {table} SET {col} = ? || substr({col}, ?) WHERE {col} = ? OR substr({col}, 1, ?) = ?",
                        (new, n + 1, name, n + 1, name + "/"),
                    )
                ch.move(name, new)
            self.journal.settle(ch, "the rename")
        self._emit("groups", name=new, old=name)
        return new

    def delete_group(self, name: str) -> int:
        """The group, its sub-groups and all their images go to the trash; nothing is unlinked."""
        with self._lock:
            name = self.require_group(name)
            groups = self._subtree(name)
            marks = ",".join("?" * len(groups))
            rows = self.catalog.all(f"SELECT * FROM images WHERE grp IN ({marks})", groups)
            trash_rel = f"{STATE}/trash/{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
            with self.journal.change("delete_group", name=name, images=len(rows)) as ch:
                ch.remember_groups(groups)
                for row in rows:
                    ch.update_image(row, status="deleted")
                    if row["status"] == "group":
                        ch.move(self.rel_path(row), self.rel_path({**dict(row), "status": "deleted"}))
                ch.db.execute(f"DELETE FROM groups WHERE name IN ({marks})", groups)
                # Whatever else is in the folder (other files, empty sub-folders) goes along.
                ch.move(name, f"{trash_rel}/{name.rsplit('/', 1)[-1]}")
            self.journal.settle(ch, "the deletion of the group")
        self._emit("groups", name=name, deleted=True)
        return len(rows)

    # ---- images ---------------------------------------------------------------------------
    def image_json(self, row: sqlite3.Row) -> dict[str, Any]:
        return {
            "id": row["id"],
            "group": row["grp"],
            "status": row["status"],
            "path": str(self.abs_path(row)),
            "url": f"/api/images/{row['id']}/file",
            "thumb": f"/api/images/{row['id']}/thumb",
            "sha256": row["sha256"],
            "source": row["source"],
            "width": row["width"],
            "height": row["height"],
            "filename": row["filename"],
        }

    def get_row(self, image_id: str) -> sqlite3.Row:
        row = self.catalog.one("SELECT * FROM images WHERE id = ?", (str(image_id),))
        if row is None:
            raise NotFound(f"image {image_id!r} does not exist")
        return row

    def get_image(self, image_id: str) -> dict[str, Any]:
        return self.image_json(self.get_row(image_id))

    def list_images(
        self, group: str, status: str = "group", offset: int = 0, limit: int = 200
    ) -> tuple[int, list[dict[str, Any]]]:
        group = validate_group_path(group)
        if status not in STATUSES:
            raise BadInput(f"status must be one of {', '.join(STATUSES)}")
        if offset < 0 or not 1 <= limit <= 1000:
            raise BadInput("offset must be >= 0 and limit between 1 and 1000")
        if status != "deleted":
            self.require_group(group)
        total = self.catalog.one("SELECT count(*) AS n FROM images WHERE grp = ? AND status = ?", (group, status))["n"]
        rows = self.catalog.all(
            "SELECT * FROM images WHERE grp = ? AND status = ? ORDER BY created, id LIMIT ? OFFSET ?",
            (group, status, limit, offset),
        )
        images = [self.image_json(r) for r in rows]
        if self.label_mode == "multi":
            groups = self.memberships([r["sha256"] for r in rows])
            for img in images:
                img["groups"] = groups.get(img["sha256"], [])
        return total, images

    def rows_with_status(self, status: str = "group") -> list[sqlite3.Row]:
        return self.catalog.all("SELECT * FROM images WHERE status = ? ORDER BY grp, created, id", (status,))

    def _unique_filename(self, group: str, wanted: str, taken: set[str]) -> str:
        stem, ext = os.path.splitext(wanted)
        candidate, n = wanted, 1
        folder = self.group_dir(group)
        while (
            candidate.lower() in taken
            or (folder / candidate).exists()
            or self.catalog.one(
                "SELECT 1 FROM images WHERE grp = ? AND status = 'group' AND filename = ?", (group, candidate)
            )
        ):
            n += 1
            candidate = f"{stem}-{n}{ext}"
        taken.add(candidate.lower())
        return candidate

    def known_sha(self, sha: str) -> bool:
        """Every intake (upload, grab, adoption) writes `seen`, so it alone answers."""
        return self.catalog.one("SELECT 1 FROM seen WHERE sha256 = ?", (sha,)) is not None

    def add_images(self, group: str, items: Iterable[Incoming], *, status: str = "group") -> AddResult:
        """Take in temp files: validate and hash each (outside the lock), then one change whose moves are
        done before the answer. The temp files are ours: whatever was not taken in is deleted."""
        items = list(items)
        try:
            if status not in STATUSES:
                raise BadInput(f"status must be one of {', '.join(STATUSES)}")
            group = self.require_group(group)
            result, accepted = self._check_incoming(items)
            if accepted:
                with self._lock:
                    # The group is judged again under the lock: renamed or deleted meanwhile -> 409.
                    group = self._writable_group(group)
                    rows = self._take_in(group, accepted, status, result)
                result.added = [self.image_json(r) for r in rows]  # type: ignore[arg-type]
        finally:
            for item in items:
                item.path.unlink(missing_ok=True)  # moved by a settled change, or not taken in
        if result.added:
            self._emit("images", groups=[group])
        return result

    def _check_incoming(
        self, items: list[Incoming]
    ) -> tuple[AddResult, list[tuple[Incoming, imaging.ImageInfo, str, int]]]:
        result = AddResult()
        accepted: list[tuple[Incoming, imaging.ImageInfo, str, int]] = []
        batch_shas: set[str] = set()
        for item in items:
            try:
                info = imaging.check_image(item.path, max_pixels=self.max_image_pixels)
            except imaging.ImageRejected as exc:
                result.skipped.append({"name": item.name, "reason": str(exc)})
                continue
            sha = imaging.sha256_file(item.path)
            if sha in batch_shas or self.known_sha(sha):
                result.skipped.append({"name": item.name, "reason": "duplicate of an image already in the catalog"})
                continue
            batch_shas.add(sha)
            accepted.append((item, info, sha, item.path.stat().st_size))
        return result, accepted

    def _take_in(
        self, group: str, accepted: list[tuple[Incoming, imaging.ImageInfo, str, int]], status: str, result: AddResult
    ) -> list[dict[str, Any]]:
        taken: set[str] = set()
        now = time.time()
        rows: list[dict[str, Any]] = []
        with self.journal.change("add_images", group=group, status=status) as ch:
            for i, (item, info, sha, size) in enumerate(accepted):
                if self.known_sha(sha):  # taken in by a concurrent request meanwhile
                    result.skipped.append({"name": item.name, "reason": "duplicate of an image already in the catalog"})
                    continue
                image_id = secrets.token_hex(8)
                filename = safe_filename(item.name, info.ext, image_id)
                if status == "group":
                    filename = self._unique_filename(group, filename, taken)
                row = {
                    "id": image_id,
                    "grp": group,
                    "status": status,
                    "filename": filename,
                    "ext": info.ext,
                    "sha256": sha,
                    "phash": info.phash,
                    "source": item.source,
                    "width": info.width,
                    "height": info.height,
                    "size": size,
                    "created": now + i * 1e-6,
                }
                ch.insert_image(row)
                ch.add_seen(sha, info.phash, item.source)
                ch.move(item.path, self.rel_path(row))
                rows.append(row)
        # A refused move undoes the whole change: no row, not "seen", the upload can be repeated.
        self.journal.settle(ch, f"the upload of {len(rows)} image(s)")
        return rows

    def _rows_for(self, ids: list[str]) -> list[sqlite3.Row]:
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise BadInput("ids must be a list of image ids")
        if len(ids) > 100_000:
            raise BadInput("too many ids in one request (100000 at most)")
        rows: list[sqlite3.Row] = []
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            rows += self.catalog.all(f"SELECT * FROM images WHERE id IN ({','.join('?' * len(chunk))})", chunk)
        if len(rows) != len(unique):
            found = {r["id"] for r in rows}
            missing = [i for i in unique if i not in found]
            raise NotFound(
                f"image {missing[0]!r} does not exist" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            )
        return rows

    def _relocate(self, rows: list[sqlite3.Row], *, status: str, group: str | None, op: str) -> int:
        """Give rows a new status (and group); one change, then the file moves."""
        changed = 0
        touched: set[str] = set()
        taken: set[str] = set()
        with self.journal.change(op, ids=[r["id"] for r in rows], status=status, group=group) as ch:
            for row in rows:
                target_group = group or row["grp"]
                if row["status"] == status and row["grp"] == target_group:
                    continue
                if (
                    status == "group"
                    and ch.db.execute(
                        "SELECT 1 FROM images WHERE sha256 = ? AND grp = ? AND status = 'group' AND id != ?",
                        (row["sha256"], target_group, row["id"]),
                    ).fetchone()
                ):
                    raise Conflict(f"image {row['id']!r} is already in group {target_group!r}")
                new = {**dict(row), "status": status, "grp": target_group}
                if status == "group":
                    new["filename"] = self._unique_filename(target_group, row["filename"], taken)
                    if not self.catalog.one("SELECT 1 FROM groups WHERE name = ?", (target_group,)):
                        # A deleted group's image brought back: the group comes back too.
                        ch.insert_group(target_group)
                        self.group_dir(target_group).mkdir(parents=True, exist_ok=True)
                ch.update_image(row, status=status, grp=target_group, filename=new["filename"])
                src, dst = self.rel_path(row), self.rel_path(new)
                if src != dst:
                    ch.move(src, dst)
                touched.update((row["grp"], target_group))
                changed += 1
        self.journal.settle(ch, "the change of the images")
        if changed:
            self._emit("images", groups=sorted(touched))
        return changed

    def set_status(self, ids: list[str], status: str) -> int:
        if status not in STATUSES:
            raise BadInput(f"status must be one of {', '.join(STATUSES)}")
        with self._lock:
            return self._relocate(self._rows_for(ids), status=status, group=None, op="set_status")

    def move(self, ids: list[str], group: str) -> int:
        with self._lock:
            group = self.require_group(group)
            return self._relocate(self._rows_for(ids), status="group", group=group, op="move")

    def file_path(self, image_id: str) -> Path:
        """The image's file; only a regular file whose real place is inside the dataset is served."""
        path = self.abs_path(self.get_row(image_id))
        if path.is_symlink() or not path.is_file() or not inside(path, self.root):
            raise NotFound(f"the file of image {image_id!r} is missing")
        return path

    def thumb_path(self, image_id: str) -> Path:
        """The thumbnail, made once: concurrent requests for a new image wait for the one that makes it."""
        row = self.get_row(image_id)
        thumb = self.thumbs_dir / f"{row['id']}.jpg"
        if thumb.exists():
            return thumb
        with self._lock:
            lock = self._thumb_locks.setdefault(row["id"], threading.Lock())
        with lock:
            if not thumb.exists():
                src = self.file_path(image_id)
                imaging.write_atomic(thumb, imaging.thumbnail_jpeg(src, max_pixels=self.max_image_pixels))
        with self._lock:
            self._thumb_locks.pop(row["id"], None)
        return thumb

    # ---- rescan -------------------------------------------------------------------------
    def rescan(
        self, progress: Callable[[int, int, str], None] | None = None, cancelled: Callable[[], bool] = lambda: False
    ) -> dict[str, Any]:
        """Adopt files and folders added by hand; report catalog images whose file vanished."""
        report: dict[str, Any] = {
            "adopted": 0,
            "groups_adopted": [],
            "vanished": [],
            "skipped": [],
            "warnings": list(self.warnings),
        }
        with self._lock:
            report["recovery"] = self.journal.recover()
            pending = self.journal.pending_paths()
            known_groups = set(self.group_names())
            folders: list[str] = []
            for dirpath, dirnames, _ in os.walk(self.root):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                rel = Path(dirpath).relative_to(self.root).as_posix()
                if rel != ".":
                    folders.append(rel)
            new_groups: list[str] = []
            lower = {g.lower() for g in known_groups}
            for rel in folders:
                if rel in known_groups:
                    continue
                try:
                    validate_group_path(rel)
                    validate_new_leaf(rel.rsplit("/", 1)[-1])
                    if rel.lower() in lower:
                        raise BadInput("another group has the same name ignoring case")
                except BadInput as exc:
                    report["skipped"].append({"name": rel, "reason": f"folder not usable as a group: {exc.detail}"})
                    continue
                new_groups.append(rel)
                lower.add(rel.lower())
            vanished_groups = [g for g in known_groups if not self.group_dir(g).is_dir()]
            with self.catalog.transaction() as db:
                for g in new_groups:
                    db.execute("INSERT INTO groups (name, created) VALUES (?, ?)", (g, time.time()))
                for g in vanished_groups:
                    db.execute("DELETE FROM groups WHERE name = ?", (g,))
            report["groups_adopted"] = new_groups
            known_groups = (known_groups | set(new_groups)) - set(vanished_groups)
            on_disk: dict[str, set[str]] = {}
            candidates: list[tuple[str, str]] = []
            for g in sorted(known_groups):
                names, links = set(), []
                for e in os.scandir(self.group_dir(g)):
                    if e.name.startswith("."):
                        continue
                    if e.is_symlink():
                        links.append(e.name)  # never adopted: it could point anywhere (/etc/passwd)
                    elif e.is_file():
                        names.add(e.name)
                report["skipped"] += [
                    {"name": f"{g}/{n}", "reason": "symbolic link: not adopted (copy the file in instead)"}
                    for n in links
                ]
                on_disk[g] = names
                in_cat = {
                    r["filename"]
                    for r in self.catalog.all("SELECT filename FROM images WHERE grp = ? AND status = 'group'", (g,))
                }
                candidates += [(g, n) for n in sorted(names - in_cat) if self.group_dir(g) / n not in pending]
            vanished = []
            for row in self.catalog.all("SELECT * FROM images"):
                if self.abs_path(row) in pending:
                    continue  # a change still has to move it there
                if row["status"] == "group":
                    exists = row["filename"] in on_disk.get(row["grp"], ())
                else:
                    exists = self.abs_path(row).is_file()
                if not exists:
                    vanished.append(row)
            if vanished:
                with self.catalog.transaction() as db:
                    for row in vanished:
                        db.execute("DELETE FROM images WHERE id = ?", (row["id"],))
                    Catalog.log(db, "vanished", ids=[r["id"] for r in vanished])
                report["vanished"] = [self.rel_path(r) for r in vanished]
                for rel in report["vanished"]:
                    log.warning("rescan: %s vanished from disk; removed from the catalog", rel)
        total = len(candidates)
        for i, (g, name) in enumerate(candidates):
            if cancelled():
                break
            if progress:
                progress(i, total, f"Checking {g}/{name}")
            path = self.group_dir(g) / name
            try:
                info = imaging.check_image(path, max_pixels=self.max_image_pixels)
                sha = imaging.sha256_file(path)
                size = path.stat().st_size
            except imaging.ImageRejected as exc:
                report["skipped"].append({"name": f"{g}/{name}", "reason": str(exc)})
                continue
            except OSError as exc:
                report["skipped"].append({"name": f"{g}/{name}", "reason": f"unreadable: {exc.strerror}"})
                continue
            with self._lock, self.catalog.transaction() as db:
                if db.execute(
                    "SELECT 1 FROM images WHERE grp = ? AND status = 'group' AND filename = ?", (g, name)
                ).fetchone():
                    continue
                db.execute(
                    "INSERT INTO images VALUES (?, ?, 'group', ?, ?, ?, ?, NULL, ?, ?, ?, ?)",
                    (
                        secrets.token_hex(8),
                        g,
                        name,
                        Path(name).suffix or info.ext,
                        sha,
                        info.phash,
                        info.width,
                        info.height,
                        size,
                        time.time(),
                    ),
                )
                db.execute("INSERT OR IGNORE INTO seen (sha256, phash, source) VALUES (?, ?, NULL)", (sha, info.phash))
            report["adopted"] += 1
        if progress:
            note = f"Adopted {report['adopted']} images"
            progress(total, total, f"{note}; warning: {self.warnings[0]}" if self.warnings else note)
        if report["adopted"] or report["vanished"] or new_groups or vanished_groups:
            self._emit("groups", rescan=True)
        return report
