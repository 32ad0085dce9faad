"""The SQLite catalog: groups, images, everything ever seen, pending file moves, an operation log."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS groups (
    name TEXT PRIMARY KEY,
    created REAL NOT NULL,
    exclusive INTEGER NOT NULL DEFAULT 0  -- a root whose children are the values of one attribute
);
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    grp TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('group', 'new', 'deleted')),
    filename TEXT NOT NULL,
    ext TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    phash TEXT,
    source TEXT,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    size INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS images_grp_status ON images (grp, status, created, id);
CREATE INDEX IF NOT EXISTS images_sha ON images (sha256);
-- Every image ever taken in, kept after it is deleted, so that it is never offered again.
CREATE TABLE IF NOT EXISTS seen (
    sha256 TEXT PRIMARY KEY,
    phash TEXT,
    source TEXT
);
CREATE INDEX IF NOT EXISTS seen_source ON seen (source);
CREATE INDEX IF NOT EXISTS seen_phash ON seen (phash);
-- File moves decided by a committed transaction and not yet done on disk (rolled forward at start).
CREATE TABLE IF NOT EXISTS moves (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    src TEXT NOT NULL,
    dst TEXT NOT NULL,
    change INTEGER  -- the change (below) whose moves these are
);
-- Changes whose moves are not done yet, with the rows as they were before (to undo them).
CREATE TABLE IF NOT EXISTS changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    op TEXT NOT NULL,
    created REAL NOT NULL,
    undo TEXT NOT NULL
);
-- Dataset-wide choices made on the pages (label_mode), so they travel with the dataset.
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS oplog (
    ts REAL NOT NULL,
    op TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""


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
        columns = {r["name"] for r in self._db.execute("PRAGMA table_info(groups)")}
        if "exclusive" not in columns:  # catalogs made before multi-label datasets
            self._db.execute("ALTER TABLE groups ADD COLUMN exclusive INTEGER NOT NULL DEFAULT 0")
        if "change" not in {r["name"] for r in self._db.execute("PRAGMA table_info(moves)")}:
            self._db.execute("ALTER TABLE moves ADD COLUMN change INTEGER")  # catalogs before the journal

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

    def all(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def one(self, sql: str, args: tuple[Any, ...] | list[Any] = ()) -> sqlite3.Row | None:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    @staticmethod
    def log(db: sqlite3.Connection, op: str, **detail: Any) -> None:
        db.execute(
            "INSERT INTO oplog (ts, op, detail) VALUES (?, ?, ?)",
            (time.time(), op, json.dumps(detail, ensure_ascii=False)),
        )
