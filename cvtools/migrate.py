"""Bring the work done in the original CV Tools: its `classes.dat`, a pickle of
`{group name: {absolute path: "Group" | "New" | "Deleted"}}`, with grabbed New images under its
`web/<keywords>-<time>/` folder.

The pickle is read by an unpickler that builds nothing but dicts, lists, sets, strings and ints: a
classes.dat that names any other object (which is how a hostile pickle runs code) is refused before
anything is built. Paths that moved since (another dataset folder, another web folder) are mapped;
every path that cannot be used is reported with its reason, and nothing else changes for it.
"""

from __future__ import annotations

import io
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from .dataset import Dataset, Incoming
from .errors import BadInput, CVError
from .imaging import sha256_file
from .schemas import ImageRef, ImageStatus

STATUSES = {"Group": ImageStatus.GROUP, "New": ImageStatus.NEW, "Deleted": ImageStatus.DELETED}
ALLOWED = {"dict", "list", "set", "frozenset", "str", "int"}  # what a classes.dat is made of
MAX_BYTES = 64 * 1024 * 1024


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module in ("builtins", "__builtin__") and name in ALLOWED:
            return {"dict": dict, "list": list, "set": set, "frozenset": frozenset, "str": str, "int": int}[name]
        raise pickle.UnpicklingError(f"it names {module}.{name}, which a classes.dat never holds")


def read_classes(data: bytes) -> dict[str, dict[str, ImageStatus]]:
    """The original's statuses, or BadInput (400) for anything that is not its format."""
    if len(data) > MAX_BYTES:
        raise BadInput("this file is too large to be a classes.dat")
    try:
        raw = _Restricted(io.BytesIO(data)).load()
    except pickle.UnpicklingError as exc:
        raise BadInput(f"not the original's classes.dat: {exc}") from None
    except Exception as exc:  # truncated or foreign bytes: every way a pickle can be malformed
        raise BadInput(f"not the original's classes.dat (unreadable pickle: {type(exc).__name__})") from None
    if not isinstance(raw, dict) or not all(isinstance(g, str) and isinstance(v, dict) for g, v in raw.items()):
        raise BadInput("not the original's classes.dat: expected {group: {path: status}}")
    out: dict[str, dict[str, ImageStatus]] = {}
    for group, files in raw.items():
        for path, status in files.items():
            if not isinstance(path, str) or status not in STATUSES:
                raise BadInput(f"not the original's classes.dat: {group!r} holds {path!r}: {status!r}")
        out[group] = {path: STATUSES[status] for path, status in files.items()}
    return out


@dataclass
class ImportReport:
    added: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in ImageStatus})
    changed: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in ImageStatus})
    unchanged: int = 0
    groups_created: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "groups_created": self.groups_created,
            "skipped": self.skipped,
        }


def _parts(path: str) -> tuple[str, ...]:
    return (PureWindowsPath(path) if "\\" in path else PurePosixPath(path)).parts


def locate(path: str, group: str, status: ImageStatus, root: Path, web_dir: Path | None) -> Path | None:
    """Where the original's file is now: where it was, else in our group folder (the dataset folder
    moved), else under web_dir (its web folder moved)."""
    parts = _parts(path)
    tries = [Path(path)]
    if parts:
        tries.append(root.joinpath(*group.split("/"), parts[-1]))
    if web_dir is not None and status == ImageStatus.NEW:
        if "web" in parts:
            tries.append(web_dir.joinpath(*parts[len(parts) - parts[::-1].index("web") :]))
        tries += [web_dir.joinpath(*parts[-2:]), web_dir / parts[-1]] if parts else []
    return next((p for p in tries if p.is_file() and not p.is_symlink()), None)


class Importer:
    def __init__(self, dataset: Dataset, web_dir: Path | None) -> None:
        self.dataset, self.web_dir = dataset, web_dir
        self.report = ImportReport()
        refs = [r for s in ImageStatus for r in dataset.with_status(s)]
        self.by_sha: dict[str, ImageRef] = {r.sha256: r for r in refs}
        # Images already New or Deleted here are no longer in a group folder: known by group and name.
        self.by_name = {(r.group.lower(), r.filename.lower()): r for r in refs}

    def run(self, classes: dict[str, dict[str, ImageStatus]]) -> ImportReport:
        for group, files in classes.items():
            if not self._group(group):
                self._skip_all(files, f"the group name {group!r} cannot be used here")
                continue
            for path, status in files.items():
                self._one(group, path, status)
        return self.report

    def _group(self, group: str) -> bool:
        if group.lower() in {g.lower() for g in self.dataset.group_names()}:
            return True
        try:
            self.dataset.create_group(group)
        except CVError:
            return False
        self.report.groups_created.append(group)
        return True

    def _skip_all(self, files: dict[str, ImageStatus], reason: str) -> None:
        self.report.skipped += [{"path": p, "reason": reason} for p in files]

    def _one(self, group: str, path: str, status: ImageStatus) -> None:
        found = locate(path, group, status, self.dataset.root, self.web_dir)
        known = self.by_name.get((group.lower(), _parts(path)[-1].lower())) if _parts(path) else None
        if found is None and known is not None:
            self._guarded(path, lambda: self._update(known, group, status))
            return
        if found is None:
            self.report.skipped.append({"path": path, "reason": "no such file (here or where it was mapped to)"})
            return
        try:
            ref = self.by_sha.get(sha256_file(found))
        except OSError as exc:
            self.report.skipped.append({"path": path, "reason": f"unreadable ({exc.strerror or exc})"})
            return
        if ref is None:
            self._guarded(path, lambda: self._add(group, path, found, status))
        else:
            self._guarded(path, lambda: self._update(ref, group, status))

    def _guarded(self, path: str, change: Callable[[], None]) -> None:
        try:
            change()
        except CVError as exc:
            self.report.skipped.append({"path": path, "reason": exc.detail})

    def _add(self, group: str, path: str, found: Path, status: ImageStatus) -> None:
        if status == ImageStatus.DELETED:  # deleted there and never here: nothing to bring
            self.report.skipped.append({"path": path, "reason": "deleted in the original; not in this dataset"})
            return
        tmp = self.dataset.new_tmp_path()
        shutil.copyfile(found, tmp)
        result = self.dataset.add_images(group, [Incoming(found.name, tmp)], status=status.value)
        for ref in result.added:
            self.by_sha[ref.sha256] = ref
            self.report.added[status.value] += 1
        self.report.skipped += [{"path": path, "reason": s["reason"]} for s in result.skipped]

    def _update(self, ref: ImageRef, group: str, status: ImageStatus) -> None:
        if ref.group.lower() != group.lower() and status == ImageStatus.GROUP:
            self.dataset.move([ref.id], group)
        elif ref.status == status:
            self.report.unchanged += 1
            return
        if ref.status != status:
            self.dataset.set_status([ref.id], status.value)
        self.report.changed[status.value] += 1


def import_original(dataset: Dataset, data: bytes, web_dir: Path | None = None) -> ImportReport:
    """Read a classes.dat (BadInput when it is not one: nothing changes) and bring its statuses."""
    classes = read_classes(data)
    return Importer(dataset, web_dir).run(classes)
