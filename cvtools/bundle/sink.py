"""The output of a batch run, CSV or JSON Lines: appended and flushed to disk batch by batch, so a stop at
any moment keeps every answer already written, and a new run skips the paths the file already holds."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

COLUMNS = [
    "path",
    "group",
    "probability",
    "unknown",
    "reason",
    "fallback",
    "nearest_id",
    "nearest_distance",
    "top3",
    "labels",
    "error",
]


def csv_row(r: dict[str, Any]) -> list[Any]:
    if "error" in r:
        return [r["path"], *[""] * (len(COLUMNS) - 2), r["error"]]
    top = r["classification"][0]
    nearest = r.get("nearest") or {}
    return [
        r["path"],
        top[0],
        f"{top[1]:.6f}",
        r.get("unknown", False),
        r.get("reason") or "",
        r.get("fallback") or "",
        nearest.get("id", ""),
        nearest.get("distance", ""),
        "; ".join(f"{g} {p:.4f}" for g, p in r["classification"][:3]),
        "; ".join(r.get("labels") or []),
        "",
    ]


class Sink:
    """One output file; `.jsonl` / `.json` for JSON Lines (every field of /api/classify), else CSV."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.jsonl = path.suffix.lower() in (".jsonl", ".json", ".ndjson")

    def done(self) -> set[str]:
        """The paths already answered. A line cut short by a stop is dropped from the file first."""
        if not self.path.is_file():
            return set()
        data = self.path.read_bytes()
        keep = data[: data.rfind(b"\n") + 1]
        if len(keep) != len(data):
            with open(self.path, "r+b") as fh:
                fh.truncate(len(keep))
        text = keep.decode("utf-8", errors="replace")
        if self.jsonl:
            out = set()
            for line in text.splitlines():
                try:
                    out.add(json.loads(line)["path"])
                except (ValueError, KeyError, TypeError):
                    continue
            return out
        return {row["path"] for row in csv.DictReader(io.StringIO(text)) if row.get("path")}

    def write(self, rows: Iterable[dict[str, Any]]) -> int:
        rows = list(rows)
        if not rows:
            return 0
        new = not self.path.is_file() or self.path.stat().st_size == 0
        buf = io.StringIO()
        if self.jsonl:
            for r in rows:
                buf.write(json.dumps(r, ensure_ascii=False) + "\n")
        else:
            w = csv.writer(buf, lineterminator="\n")
            if new:
                w.writerow(COLUMNS)
            w.writerows(csv_row(r) for r in rows)
        with open(self.path, "a", encoding="utf-8", newline="") as fh:
            fh.write(buf.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        return len(rows)
