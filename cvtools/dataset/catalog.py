"""The SQLite catalog: groups, images, everything ever seen, the move journal, an operation log.
This module holds the only SQL of the project: reads are Catalog methods, writes are functions that
take the connection of an open transaction."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = (Path(__file__).with_name("schema.sql")).read_text()
IMAGE_COLUMNS = (
    "id",
    "grp",
    "status",
    "filename",
    "ext",
    "sha256",
    "phash",
    "source",
    "width",
    "height",
    "size",
    "created",
)
UNDO_SECONDS = 600  # how long a change made from the pages can be undone
CHUNK = 500  # ids per IN (...) list: SQLite limits the number of parameters


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _chunks(values: Iterable[str]) -> Iterator[list[str]]:
    unique = list(dict.fromkeys(values))
    for start in range(0, len(unique), CHUNK):
        yield unique[start : start + CHUNK]


class Catalog:
    """One SQLite file in WAL mode; every write is one transaction under one lock."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        if "exclusive" not in self._columns("groups"):  # catalogs made before multi-label datasets
            self._db.execute("ALTER TABLE groups ADD COLUMN exclusive INTEGER NOT NULL DEFAULT 0")
        if "change" not in self._columns("moves"):  # catalogs made before the journal kept changes
            self._db.execute("ALTER TABLE moves ADD COLUMN change INTEGER")

    def _columns(self, table: str) -> set[str]:
        return {r["name"] for r in self._db.execute(f"PRAGMA table_info({table})")}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _all(self, sql: str, args: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, tuple(args)).fetchall()

    def _one(self, sql: str, args: Iterable[Any] = ()) -> sqlite3.Row | None:
        with self._lock:
            return self._db.execute(sql, tuple(args)).fetchone()

    # ---- meta ----------------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        row = self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return row["value"] if row else None

    # ---- groups --------------------------------------------------------------------------
    def group_names(self) -> list[str]:
        return [r["name"] for r in self._all("SELECT name FROM groups ORDER BY name")]

    def group_exists(self, name: str) -> bool:
        return self._one("SELECT 1 FROM groups WHERE name = ?", (name,)) is not None

    def group_named_alike(self, name: str, but: str | None = None) -> str | None:
        """A group whose name equals `name` ignoring case, other than `but`."""
        row = self._one("SELECT name FROM groups WHERE lower(name) = lower(?) AND name IS NOT ?", (name, but))
        return row["name"] if row else None

    def group_rows(self) -> list[sqlite3.Row]:
        return self._all("SELECT name, exclusive FROM groups ORDER BY name")

    def exclusive_roots(self) -> list[str]:
        return [r["name"] for r in self._all("SELECT name FROM groups WHERE exclusive = 1 ORDER BY name")]

    def counts(self) -> list[sqlite3.Row]:
        """(grp, status, n) for every group and status with images."""
        return self._all("SELECT grp, status, count(*) AS n FROM images GROUP BY grp, status")

    def totals(self) -> list[sqlite3.Row]:
        return self._all("SELECT status, count(*) AS n FROM images GROUP BY status")

    # ---- images --------------------------------------------------------------------------
    def image(self, image_id: str) -> sqlite3.Row | None:
        return self._one("SELECT * FROM images WHERE id = ?", (image_id,))

    def images(self, ids: Iterable[str]) -> list[sqlite3.Row]:
        rows: list[sqlite3.Row] = []
        for chunk in _chunks(ids):
            rows += self._all(f"SELECT * FROM images WHERE id IN ({_marks(len(chunk))})", chunk)
        return rows

    def images_in_groups(self, groups: list[str]) -> list[sqlite3.Row]:
        return self._all(f"SELECT * FROM images WHERE grp IN ({_marks(len(groups))})", groups)

    def page(self, group: str, status: str, offset: int, limit: int) -> list[sqlite3.Row]:
        return self._all(
            "SELECT * FROM images WHERE grp = ? AND status = ? ORDER BY created, id LIMIT ? OFFSET ?",
            (group, status, limit, offset),
        )

    def undo(self, token: str) -> sqlite3.Row | None:
        return self._one("SELECT * FROM undo WHERE token = ?", (token,))

    def ids_in(self, group: str, status: str) -> list[str]:
        return [r["id"] for r in self._all("SELECT id FROM images WHERE grp = ? AND status = ?", (group, status))]

    def count(self, group: str, status: str) -> int:
        row = self._one("SELECT count(*) AS n FROM images WHERE grp = ? AND status = ?", (group, status))
        return int(row["n"]) if row else 0

    def with_status(self, status: str) -> list[sqlite3.Row]:
        return self._all("SELECT * FROM images WHERE status = ? ORDER BY grp, created, id", (status,))

    def all_images(self) -> list[sqlite3.Row]:
        return self._all("SELECT * FROM images")

    def group_filenames(self, group: str) -> set[str]:
        return {
            r["filename"] for r in self._all("SELECT filename FROM images WHERE grp = ? AND status = 'group'", (group,))
        }

    def filename_taken(self, group: str, filename: str) -> bool:
        sql = "SELECT 1 FROM images WHERE grp = ? AND status = 'group' AND filename = ?"
        return self._one(sql, (group, filename)) is not None

    def is_member(self, sha: str, group: str, but: str | None = None) -> bool:
        """Whether an image with these bytes is a Group member of `group` (another row than `but`)."""
        sql = "SELECT 1 FROM images WHERE sha256 = ? AND grp = ? AND status = 'group' AND id IS NOT ?"
        return self._one(sql, (sha, group, but)) is not None

    def memberships(self, shas: Iterable[str]) -> dict[str, list[str]]:
        """sha256 -> the groups in which it is a Group member."""
        out: dict[str, list[str]] = {}
        for chunk in _chunks(shas):
            marks = _marks(len(chunk))
            sql = f"SELECT sha256, grp FROM images WHERE status = 'group' AND sha256 IN ({marks}) ORDER BY grp"
            for r in self._all(sql, chunk):
                out.setdefault(r["sha256"], []).append(r["grp"])
        return out

    def multi_members(self) -> int:
        row = self._one(
            "SELECT count(*) AS n FROM (SELECT sha256 FROM images WHERE status = 'group'"
            " GROUP BY sha256 HAVING count(DISTINCT grp) > 1)"
        )
        return int(row["n"]) if row else 0

    # ---- seen ----------------------------------------------------------------------------
    def known_sha(self, sha: str) -> bool:
        """Every intake (upload, grab, adoption) writes `seen`, so it alone answers."""
        return self._one("SELECT 1 FROM seen WHERE sha256 = ?", (sha,)) is not None

    def seen(self) -> list[sqlite3.Row]:
        return self._all("SELECT source, phash FROM seen")

    # ---- the journal ---------------------------------------------------------------------
    def pending_changes(self) -> list[int | None]:
        return [r["change"] for r in self._all("SELECT DISTINCT change FROM moves ORDER BY change")]

    def moves_of(self, change: int | None) -> list[sqlite3.Row]:
        return self._all("SELECT src, dst FROM moves WHERE change IS ? ORDER BY seq", (change,))

    def all_moves(self) -> list[sqlite3.Row]:
        return self._all("SELECT src, dst FROM moves")

    def undo_of(self, change: int | None) -> dict[str, Any]:
        row = self._one("SELECT undo FROM changes WHERE id IS ?", (change,))
        return json.loads(row["undo"]) if row else {"images": {}, "groups": {}, "seen": []}


# ---- writes inside a transaction ------------------------------------------------------------
def set_meta(db: sqlite3.Connection, key: str, value: str, *, replace: bool = True) -> None:
    verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
    db.execute(f"{verb} INTO meta (key, value) VALUES (?, ?)", (key, value))


def log(db: sqlite3.Connection, op: str, **detail: Any) -> None:
    db.execute(
        "INSERT INTO oplog (ts, op, detail) VALUES (?, ?, ?)", (time.time(), op, json.dumps(detail, ensure_ascii=False))
    )


def image_row(db: sqlite3.Connection, image_id: str) -> sqlite3.Row | None:
    return db.execute("SELECT * FROM images WHERE id = ?", (image_id,)).fetchone()


def group_row(db: sqlite3.Connection, name: str) -> sqlite3.Row | None:
    return db.execute("SELECT * FROM groups WHERE name = ?", (name,)).fetchone()


def insert_image(db: sqlite3.Connection, row: dict[str, Any]) -> None:
    marks = ", ".join(f":{c}" for c in IMAGE_COLUMNS)
    db.execute(f"INSERT INTO images ({', '.join(IMAGE_COLUMNS)}) VALUES ({marks})", row)


def update_image(db: sqlite3.Connection, image_id: str, values: dict[str, Any]) -> None:
    sets = ", ".join(f"{k} = ?" for k in values if k in IMAGE_COLUMNS)
    db.execute(f"UPDATE images SET {sets} WHERE id = ?", (*values.values(), image_id))


def delete_image(db: sqlite3.Connection, image_id: str) -> None:
    db.execute("DELETE FROM images WHERE id = ?", (image_id,))


def insert_group(db: sqlite3.Connection, name: str, created: float, exclusive: bool = False) -> None:
    db.execute("INSERT INTO groups (name, created, exclusive) VALUES (?, ?, ?)", (name, created, int(exclusive)))


def delete_groups(db: sqlite3.Connection, names: list[str]) -> None:
    db.execute(f"DELETE FROM groups WHERE name IN ({_marks(len(names))})", names)


def set_exclusive(db: sqlite3.Connection, name: str, exclusive: bool) -> None:
    db.execute("UPDATE groups SET exclusive = ? WHERE name = ?", (int(exclusive), name))


def rename_prefix(db: sqlite3.Connection, old: str, new: str) -> None:
    """A group and its sub-groups, in both tables: 'a' -> 'b' also makes 'a/x' 'b/x'."""
    n = len(old)
    for table, col in (("groups", "name"), ("images", "grp")):
        db.execute(
            f"UPDATE {table} SET {col} = ? || substr({col}, ?) WHERE {col} = ? OR substr({col}, 1, ?) = ?",
            (new, n + 1, old, n + 1, old + "/"),
        )


def add_seen(db: sqlite3.Connection, sha: str, phash: str | None, source: str | None) -> bool:
    """Record an image as seen; False when it was already."""
    cur = db.execute("INSERT OR IGNORE INTO seen (sha256, phash, source) VALUES (?, ?, ?)", (sha, phash, source))
    return bool(cur.rowcount)


def forget_seen(db: sqlite3.Connection, shas: list[str]) -> None:
    db.executemany("DELETE FROM seen WHERE sha256 = ?", [(s,) for s in shas])


def record_change(db: sqlite3.Connection, op: str, undo: dict[str, Any], moves: list[tuple[str, str]]) -> int:
    cid = db.execute(
        "INSERT INTO changes (op, created, undo) VALUES (?, ?, ?)", (op, time.time(), json.dumps(undo))
    ).lastrowid
    db.executemany("INSERT INTO moves (change, src, dst) VALUES (?, ?, ?)", [(cid, s, d) for s, d in moves])
    return int(cid or 0)


def forget_change(db: sqlite3.Connection, change: int | None) -> None:
    db.execute("DELETE FROM moves WHERE change IS ?", (change,))
    db.execute("DELETE FROM changes WHERE id IS ?", (change,))


def put_undo(db: sqlite3.Connection, token: str, op: str, data: dict[str, Any], keep: float) -> None:
    now = time.time()
    db.execute("DELETE FROM undo WHERE expires < ?", (now - 86400,))  # expired a day ago: forgotten
    db.execute(
        "INSERT INTO undo (token, op, created, expires, data) VALUES (?, ?, ?, ?, ?)",
        (token, op, now, now + keep, json.dumps(data)),
    )


def use_undo(db: sqlite3.Connection, token: str, *, used: bool = True) -> None:
    db.execute("UPDATE undo SET used = ? WHERE token = ?", (int(used), token))
