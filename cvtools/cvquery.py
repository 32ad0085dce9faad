"""The /cv contract in one place: reading `<path or URL>[:n]` and writing `[[group, probability], ...]`.
Plain Python: the app and the model bundle's Ray Serve application answer through it."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from .errors import BadInput

_SUFFIX = re.compile(r"^(?P<target>.+):(?P<n>[^:/\\]*)$")


def parse_cv_query(raw: str) -> tuple[str, int | None]:
    """'<path or URL>[:n]' -> (target, n); n = 0 or none: every group, as the original answered.
    Ports, drive letters and colons inside paths are kept."""
    text = unquote(raw)
    if not text:
        raise BadInput("give an image path or URL: /cv?<path or URL>[:n]")
    m = _SUFFIX.match(text)
    if not m:
        return text, None
    suffix = m["n"]
    if suffix.isdigit() and not re.match(r"^https?://[^/]*$", m["target"]):
        n = int(suffix)
        return m["target"], n or None
    if re.fullmatch(r"[+-]?\d+(\.\d*)?|", suffix) or (suffix and not re.search(r"[.\s]", suffix) and len(suffix) <= 12):
        raise BadInput(f"the part after the last ':' ({suffix!r}) must be a whole number (0: every group)")
    return text, None  # a colon inside a file name, e.g. /data/a:b.jpg


def cv_list(ranked: list[tuple[str, float]], n: int | None, score: float | None = None) -> list[list[Any]]:
    """The original's answer: [[group, probability], ...], highest first, the top n when n > 0; with
    `score` (the opt-in cv_unknown setting) an ["unknown", score] pair first (above 1: unknown)."""
    out: list[list[Any]] = [[g, p] for g, p in (ranked[:n] if n else ranked)]
    if score is not None:
        out.insert(0, ["unknown", score])
    return out
