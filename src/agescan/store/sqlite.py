"""SQLite results store: transactional, resumable, one row per item and per face.

A *run* is one scan configuration (model, its sha256, detector and decision settings, sources); running
the same command again reopens the same run and skips the items it already holds, so a scan killed at
any moment (even ``kill -9``) resumes without losing or duplicating a record: an item and its faces are
written in one transaction, and ``UNIQUE(run_id, source, frame_index)`` makes a replayed item a no-op.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Iterable

from agescan.errors import ConfigError
from agescan.results import SCHEMA, to_dict
from agescan.types import ImageResult

SCHEMA_VERSION = 1

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    config_hash TEXT NOT NULL UNIQUE,
    config TEXT NOT NULL,
    agescan_version TEXT NOT NULL,
    model_id TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    detector_id TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL
);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    source TEXT NOT NULL,
    frame_index INTEGER NOT NULL,
    timestamp REAL NOT NULL,
    sha256 TEXT NOT NULL,
    phash TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    n_faces INTEGER NOT NULL,
    max_p_minor REAL,
    error TEXT NOT NULL,
    error_type TEXT NOT NULL,
    scanned REAL NOT NULL,
    UNIQUE (run_id, source, frame_index)
);
CREATE TABLE IF NOT EXISTS faces (
    id INTEGER PRIMARY KEY,
    item_id INTEGER NOT NULL REFERENCES items(id),
    face_index INTEGER NOT NULL,
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
    landmarks TEXT NOT NULL,
    detector_score REAL NOT NULL,
    age REAL NOT NULL,
    interval_lo REAL NOT NULL,
    interval_hi REAL NOT NULL,
    interval_level REAL NOT NULL,
    p_minor REAL NOT NULL,
    minor_age INTEGER NOT NULL,
    age_group TEXT NOT NULL,
    model_id TEXT NOT NULL,
    distribution TEXT NOT NULL,
    UNIQUE (item_id, face_index)
);
CREATE INDEX IF NOT EXISTS items_p_minor ON items(run_id, max_p_minor DESC);
CREATE INDEX IF NOT EXISTS items_sha256 ON items(sha256);
"""


def config_hash(config: dict) -> str:
    """sha256 of the canonical JSON of a run configuration."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


class ResultStore:
    """A scan's results in one SQLite file (created on first use, schema checked on open).

    Example:
        >>> with ResultStore("case.sqlite") as store:                     # doctest: +SKIP
        ...     run = store.open_run(config, model_id, model_sha, "mtcnn", version)
        ...     todo = [s for s in sources if not store.has_item(run, s)]
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._db: sqlite3.Connection | None = None

    def __enter__(self) -> "ResultStore":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> "ResultStore":
        if self._db is None:
            db = sqlite3.connect(self.path, isolation_level=None)  # explicit transactions below
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a committed item survives a killed process
            db.execute("PRAGMA foreign_keys=ON")
            row = db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
            if row is None:
                db.executescript(_DDL)
                db.execute("INSERT INTO meta VALUES ('schema_version', ?), ('result_schema', ?)",
                           (str(SCHEMA_VERSION), SCHEMA))
            version = int(db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])
            if version != SCHEMA_VERSION:
                db.close()
                raise ConfigError(f"{self.path}: results database schema version {version}; this agescan reads "
                                  f"version {SCHEMA_VERSION}. Use a matching agescan or a new --db file.")
            self._db = db
        return self

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        return self.open()._db

    def open_run(self, config: dict, model_id: str, model_sha256: str, detector_id: str, version: str) -> int:
        """The id of the run with this configuration, created when new."""
        h = config_hash(config)
        row = self.db.execute("SELECT id FROM runs WHERE config_hash=?", (h,)).fetchone()
        if row:
            return int(row[0])
        cur = self.db.execute(
            "INSERT INTO runs (config_hash, config, agescan_version, model_id, model_sha256, detector_id, started) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (h, json.dumps(config, sort_keys=True), version, model_id, model_sha256, detector_id, time.time()))
        return int(cur.lastrowid)

    def done_sources(self, run_id: int) -> set[tuple[str, int]]:
        """(source, frame_index) of every item this run already holds."""
        return set(self.db.execute("SELECT source, frame_index FROM items WHERE run_id=?", (run_id,)))

    def add(self, run_id: int, results: Iterable[ImageResult]) -> int:
        """Write results, each item with its faces in one transaction; returns how many were new."""
        new = 0
        for r in results:
            new += self._add_one(run_id, r)
        return new

    def _add_one(self, run_id: int, r: ImageResult) -> int:
        d = to_dict(r, include_distribution=True)
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            cur = db.execute(
                "INSERT OR IGNORE INTO items (run_id, source, frame_index, timestamp, sha256, phash, width, height, "
                "n_faces, max_p_minor, error, error_type, scanned) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, d["source"], d["frame_index"], d["timestamp"], d["sha256"], d["phash"], d["width"], d["height"], len(d["faces"]),
                 max((f["p_minor"] for f in d["faces"]), default=None), d["error"], d["error_type"], time.time()))
            if cur.rowcount == 0:  # already stored by an earlier (killed) attempt
                db.execute("ROLLBACK")
                return 0
            item_id = cur.lastrowid
            db.executemany(
                "INSERT INTO faces (item_id, face_index, x1, y1, x2, y2, landmarks, detector_score, age, "
                "interval_lo, interval_hi, interval_level, p_minor, minor_age, age_group, model_id, distribution) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(item_id, i, *f["box"], json.dumps(f["landmarks"]), f["detector_score"], f["age"], *f["interval"],
                  f["interval_level"], f["p_minor"], f["minor_age"], f["age_group"], f["model_id"],
                  json.dumps(f["distribution"])) for i, f in enumerate(d["faces"])])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return 1

    def finish_run(self, run_id: int) -> None:
        self.db.execute("UPDATE runs SET finished=? WHERE id=?", (time.time(), run_id))

    def counts(self, run_id: int) -> dict:
        q = self.db.execute
        return {"items": q("SELECT COUNT(*) FROM items WHERE run_id=?", (run_id,)).fetchone()[0],
                "errors": q("SELECT COUNT(*) FROM items WHERE run_id=? AND error != ''", (run_id,)).fetchone()[0],
                "faces": q("SELECT COUNT(*) FROM faces JOIN items ON faces.item_id = items.id WHERE run_id=?",
                           (run_id,)).fetchone()[0]}
