-- The catalog's tables (catalog.py creates them; it holds every query).
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
-- A file name free in a group folder is looked up for every image a change names or moves there.
CREATE INDEX IF NOT EXISTS images_grp_filename ON images (grp, filename);
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
-- Undo tokens of changes made from the pages: the images as they were and as the change left them.
CREATE TABLE IF NOT EXISTS undo (
    token TEXT PRIMARY KEY,
    op TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    data TEXT NOT NULL
);
