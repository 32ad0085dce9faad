"""Group names and file names: what may be a folder name here and on the other systems a dataset is
copied to."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from ..errors import BadInput

_BAD_NAME_CHARS = re.compile(r'[/\\<>:"|?*\x00-\x1f\x7f]')
# Names Windows reserves in any folder (with or without an extension): a dataset copied there breaks.
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}
MAX_LEAF_BYTES = 120


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
    if len(name.encode()) > MAX_LEAF_BYTES:
        raise BadInput(f"group name is too long ({MAX_LEAF_BYTES} bytes at most)")
    return name


def validate_new_leaf(name: str) -> str:
    """A name for a new or renamed group: also portable (no name Windows reserves)."""
    leaf = validate_leaf(name)
    if leaf.split(".")[0].lower() in _RESERVED:
        raise BadInput(f"group name {leaf!r} is reserved on Windows (CON, PRN, AUX, NUL, COM1-9, LPT1-9)")
    return leaf


def validate_group_path(name: str) -> str:
    """A full group name such as 'mammals/cats'."""
    if not isinstance(name, str) or not name:
        raise BadInput("group name must not be empty")
    return "/".join(validate_leaf(p) for p in name.split("/"))


def parent_of(name: str) -> str | None:
    return name.rsplit("/", 1)[0] if "/" in name else None


def safe_filename(name: str, ext: str, fallback: str) -> str:
    """A file name from an uploaded or downloaded name: no path, no control or reserved characters."""
    stem = Path(Path(unicodedata.normalize("NFC", name or "")).name).stem
    stem = _BAD_NAME_CHARS.sub("_", stem)
    stem = "".join(c for c in stem if unicodedata.category(c)[0] != "C").strip(" .")
    return f"{stem[:100] or fallback}{ext}"
