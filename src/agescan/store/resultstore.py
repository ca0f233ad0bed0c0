"""The results store: transactional, resumable, one row per item and per face, in SQLite or PostgreSQL.

A *run* is one scan configuration (model, its sha256, detector and decision settings, sources); running
the same command again reopens the same run and skips the items it already holds, so a scan killed at
any moment (even ``kill -9``) resumes without losing or duplicating a record: an item and its faces are
written in one transaction, and ``UNIQUE(run_id, source, frame_index)`` makes a replayed item a no-op. An item
stored with an error is not done: a rerun tries it again and its new outcome replaces the error record (a file
that was locked, unreadable or on a share that dropped is read once it can be).
The same holds when several scanners (processes, machines, Ray tasks) write one PostgreSQL store at once.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Iterable

from agescan.errors import ConfigError
from agescan.store.db import Database, connect
from agescan.results import SCHEMA, face_pose, to_dict
from agescan.triage import LEGACY_RULE, is_flagged
from agescan.types import ImageResult

#: 2: PDQ hashes (pdq, pdq_mirror, pdq_quality) instead of the 64-bit dHash (phash); 3: each face's triage flag;
#: 4: each face's pose (yaw, roll) and framing ("aligned" or "box")
SCHEMA_VERSION = 4

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id {id},
    config_hash TEXT NOT NULL UNIQUE,
    config TEXT NOT NULL,
    agescan_version TEXT NOT NULL,
    model_id TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    detector_id TEXT NOT NULL,
    started DOUBLE PRECISION NOT NULL,
    finished DOUBLE PRECISION
);
CREATE TABLE IF NOT EXISTS items (
    id {id},
    run_id BIGINT NOT NULL REFERENCES runs(id),
    source TEXT NOT NULL,
    frame_index INTEGER NOT NULL,
    timestamp DOUBLE PRECISION NOT NULL,
    sha256 TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    n_faces INTEGER NOT NULL,
    max_p_minor DOUBLE PRECISION,
    error TEXT NOT NULL,
    error_type TEXT NOT NULL,
    scanned DOUBLE PRECISION NOT NULL,
    pdq TEXT NOT NULL DEFAULT '',
    pdq_mirror TEXT NOT NULL DEFAULT '',
    pdq_quality INTEGER NOT NULL DEFAULT 0,
    UNIQUE (run_id, source, frame_index)
);
CREATE TABLE IF NOT EXISTS faces (
    id {id},
    item_id BIGINT NOT NULL REFERENCES items(id),
    face_index INTEGER NOT NULL,
    x1 DOUBLE PRECISION NOT NULL, y1 DOUBLE PRECISION NOT NULL, x2 DOUBLE PRECISION NOT NULL, y2 DOUBLE PRECISION NOT NULL,
    landmarks TEXT NOT NULL,
    detector_score DOUBLE PRECISION NOT NULL,
    age DOUBLE PRECISION NOT NULL,
    interval_lo DOUBLE PRECISION NOT NULL,
    interval_hi DOUBLE PRECISION NOT NULL,
    interval_level DOUBLE PRECISION NOT NULL,
    p_minor DOUBLE PRECISION NOT NULL,
    minor_age INTEGER NOT NULL,
    age_group TEXT NOT NULL,
    model_id TEXT NOT NULL,
    distribution TEXT NOT NULL,
    flagged INTEGER NOT NULL DEFAULT 0,
    yaw DOUBLE PRECISION NOT NULL DEFAULT 0,
    roll DOUBLE PRECISION NOT NULL DEFAULT 0,
    framing TEXT NOT NULL DEFAULT 'aligned',
    UNIQUE (item_id, face_index)
);
CREATE INDEX IF NOT EXISTS items_p_minor ON items(run_id, max_p_minor DESC);
CREATE INDEX IF NOT EXISTS items_sha256 ON items(sha256);
"""

#: The per-file errors (unreadable, corrupt, hostile inputs) as their own relation: a view over ``items``,
#: so an error is still one item of the run (counted, resumable, exported) and never stored twice.
_ERRORS_VIEW = """
CREATE VIEW errors AS
SELECT id AS item_id, run_id, source, frame_index, sha256, error_type, error, scanned
FROM items WHERE error <> ''
"""

#: Version 1 -> 2: the PDQ columns, as the version 2 DDL declares them (last, so both have one column order);
#: the dHash, which grouped different faces, is dropped (the files' sha256, faces and ages are all kept).
#: Items scanned before have no PDQ hash ('' and quality 0) and are never grouped as near-duplicates.
_UPGRADE_1_TO_2 = """
ALTER TABLE items ADD COLUMN pdq TEXT NOT NULL DEFAULT '';
ALTER TABLE items ADD COLUMN pdq_mirror TEXT NOT NULL DEFAULT '';
ALTER TABLE items ADD COLUMN pdq_quality INTEGER NOT NULL DEFAULT 0;
ALTER TABLE items DROP COLUMN phash
"""

#: Version 2 -> 3: each face's triage flag, set by agescan.triage for the faces already stored (see _flag_old_faces).
_UPGRADE_2_TO_3 = "ALTER TABLE faces ADD COLUMN flagged INTEGER NOT NULL DEFAULT 0"

#: Version 3 -> 4: each face's pose and framing; the faces already stored were all "aligned" (the only framing
#: then) and get the pose of their stored landmarks (see _pose_old_faces).
_UPGRADE_3_TO_4 = """
ALTER TABLE faces ADD COLUMN yaw DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE faces ADD COLUMN roll DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE faces ADD COLUMN framing TEXT NOT NULL DEFAULT 'aligned'
"""


def config_hash(config: dict) -> str:
    """sha256 of the canonical JSON of a run configuration."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


class ResultStore:
    """A scan's results in one database (created on first use, schema checked on open).

    ``target`` is a file path (SQLite, the default for one machine) or a ``postgresql://`` URL (a team
    server; several scanners may write to it at once).

    Example:
        >>> with ResultStore("case.sqlite") as store:                     # doctest: +SKIP
        ...     run = store.open_run(config, model_id, model_sha, "mtcnn", version)
        ...     todo = [s for s in sources if not store.has_item(run, s)]
    """

    def __init__(self, target: str | Path):
        self.target = target
        self._db: Database | None = None

    def __enter__(self) -> "ResultStore":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> "ResultStore":
        if self._db is None:
            db = connect(self.target)
            try:
                check_schema(db, create=True)
            except BaseException:
                db.close()
                raise
            self._db = db
        return self

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> Database:
        return self.open()._db

    def open_run(self, config: dict, model_id: str, model_sha256: str, detector_id: str, version: str) -> int:
        """The id of the run with this configuration, created when new (safe against concurrent scanners)."""
        h = config_hash(config)
        self.db.execute(
            "INSERT INTO runs (config_hash, config, agescan_version, model_id, model_sha256, detector_id, started) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (config_hash) DO NOTHING",
            (h, json.dumps(config, sort_keys=True), version, model_id, model_sha256, detector_id, time.time()))
        return int(self.db.execute("SELECT id FROM runs WHERE config_hash=?", (h,)).fetchone()[0])

    def done_sources(self, run_id: int) -> set[tuple[str, int]]:
        """(source, frame_index) of every item this run already holds without an error (an error is tried again)."""
        return {(s, int(f)) for s, f in self.db.execute(
            "SELECT source, frame_index FROM items WHERE run_id=? AND error=''", (run_id,)).fetchall()}

    def error_sources(self, run_id: int) -> set[tuple[str, int]]:
        """(source, frame_index) of every item this run holds with an error."""
        return {(s, int(f)) for s, f in self.db.execute(
            "SELECT source, frame_index FROM items WHERE run_id=? AND error!=''", (run_id,)).fetchall()}

    def drop_items(self, run_id: int, keys: Iterable[tuple[str, int]]) -> int:
        """Delete these error items of the run (items with faces are never deleted); returns how many were."""
        n = 0
        for source, frame in keys:
            with self.db.transaction():
                n += self.db.execute("DELETE FROM items WHERE run_id=? AND source=? AND frame_index=? AND error!='' "
                                     "RETURNING id", (run_id, source, frame)).fetchone() is not None
        return n

    def stored_among(self, run_id: int, sources: Iterable[str], chunk: int = 500) -> set[tuple[str, int]]:
        """(source, frame_index) of the items this run holds without an error among ``sources`` (queried in chunks,
        so a distributed scan never loads a whole case's keys)."""
        sources = list(sources)
        out: set[tuple[str, int]] = set()
        for i in range(0, len(sources), chunk):
            part = sources[i:i + chunk]
            marks = ", ".join("?" * len(part))
            out.update((s, int(f)) for s, f in self.db.execute(
                f"SELECT source, frame_index FROM items WHERE run_id=? AND error='' AND source IN ({marks})",
                (run_id, *part)).fetchall())
        return out

    def add(self, run_id: int, results: Iterable[ImageResult]) -> int:
        """Write results, each item with its faces in one transaction; returns how many were new (an item that
        replaces an error record of the same source is not)."""
        return self.add_records(run_id, (to_dict(r, include_distribution=True) for r in results))

    def add_records(self, run_id: int, records: Iterable[dict]) -> int:
        """Like :meth:`add`, for results already in the result schema (``to_dict(..., include_distribution=True)``),
        e.g. read back from a distributed scan's partition files."""
        new = 0
        for d in records:
            new += self._add_one(run_id, d)
        return new

    def _add_one(self, run_id: int, d: dict) -> int:
        db = self.db
        with db.transaction():
            # an error stored by an earlier pass is replaced by this outcome (an error item has no faces); the item
            # is not new
            replaced = db.execute("DELETE FROM items WHERE run_id=? AND source=? AND frame_index=? AND error!='' "
                                  "RETURNING id", (run_id, d["source"], d["frame_index"])).fetchone() is not None
            row = db.execute(
                "INSERT INTO items (run_id, source, frame_index, timestamp, sha256, pdq, pdq_mirror, pdq_quality, "
                "width, height, n_faces, max_p_minor, error, error_type, scanned) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (run_id, source, frame_index) DO NOTHING RETURNING id",
                (run_id, d["source"], d["frame_index"], d["timestamp"], d["sha256"], d["pdq"], d["pdq_mirror"],
                 d["pdq_quality"], d["width"], d["height"], len(d["faces"]),
                 max((f["p_minor"] for f in d["faces"]), default=None), d["error"], d["error_type"],
                 time.time())).fetchone()
            if row is None:  # already stored by an earlier (killed) attempt or another scanner
                return 0
            item_id = row[0]
            db.executemany(
                "INSERT INTO faces (item_id, face_index, x1, y1, x2, y2, landmarks, detector_score, age, "
                "interval_lo, interval_hi, interval_level, p_minor, minor_age, age_group, model_id, distribution, "
                "flagged, yaw, roll, framing) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(item_id, i, *f["box"], json.dumps(f["landmarks"]), f["detector_score"], f["age"], *f["interval"],
                  f["interval_level"], f["p_minor"], f["minor_age"], f["age_group"], f["model_id"],
                  json.dumps(f["distribution"]), int(_flag(f)), *face_pose(f)) for i, f in enumerate(d["faces"])])
        return 0 if replaced else 1

    def finish_run(self, run_id: int) -> None:
        self.db.execute("UPDATE runs SET finished=? WHERE id=?", (time.time(), run_id))

    def counts(self, run_id: int) -> dict:
        q = self.db.execute
        faces, flagged = q("SELECT COUNT(*), COALESCE(SUM(flagged), 0) FROM faces JOIN items "
                           "ON faces.item_id = items.id WHERE run_id=?", (run_id,)).fetchone()
        items, files = q("SELECT COUNT(*), COALESCE(SUM(CASE WHEN frame_index <= 0 THEN 1 ELSE 0 END), 0) FROM items "
                         "WHERE run_id=?", (run_id,)).fetchone()
        # files: a video (its first sampled frame) or a picture with several frames (its first) counts once
        return {"items": items, "files": int(files),
                "errors": q("SELECT COUNT(*) FROM errors WHERE run_id=?", (run_id,)).fetchone()[0],
                "faces": faces, "flagged": int(flagged)}


def _flag(face: dict) -> bool:
    """A face record's flag; a record written by an agescan from before the flag (a distributed scan's partition
    file) is flagged by the rule of that time."""
    if "flagged" in face:
        return bool(face["flagged"])
    return is_flagged(face["p_minor"], face["age"], *LEGACY_RULE)


def _flag_old_faces(db: Database) -> None:
    """Set the flag of the faces stored before schema 3 by the rule of that time (agescan.triage.LEGACY_RULE)."""
    rows = db.execute("SELECT id, p_minor, age FROM faces").fetchall()
    db.executemany("UPDATE faces SET flagged = 1 WHERE id = ?",
                   [(i,) for i, p, a in rows if is_flagged(p, a, *LEGACY_RULE)])


def _pose_old_faces(db: Database) -> None:
    """Set the pose of the faces stored before schema 4 from their stored landmarks (framing stays "aligned"; a face
    stored without its five landmarks keeps yaw and roll 0)."""
    poses = []
    for i, lm in db.execute("SELECT id, landmarks FROM faces").fetchall():
        points = json.loads(lm) if lm else []
        if len(points) == 5:
            yaw, roll, _ = face_pose({"landmarks": points})
            poses.append((yaw, roll, i))
    db.executemany("UPDATE faces SET yaw = ?, roll = ? WHERE id = ?", poses)


def check_schema(db: Database, create: bool = False) -> int:
    """Check a results database and return its schema version.

    A writer (``create``) creates the tables in a new database and upgrades a version 1, 2 or 3 database to this
    version; a reader reads versions 1 (no PDQ columns), 2 (no stored flags) and 3 (no stored pose) as they are,
    or this version.
    Other versions are refused.
    """
    if not db.has_table("meta"):
        if not create:
            raise ConfigError(f"{db.name}: not an agescan results database (no meta table); "
                              f"create one with `agescan scan SOURCE --db {db.name}`.")
        with db.transaction():
            db.serialize_ddl()
            db.script(_DDL)  # IF NOT EXISTS: a no-op for a scanner that lost the race
            db.execute("INSERT INTO meta VALUES ('schema_version', ?), ('result_schema', ?) "
                       "ON CONFLICT (key) DO NOTHING", (str(SCHEMA_VERSION), SCHEMA))
    version = _version(db)
    if version not in range(1, SCHEMA_VERSION + 1):
        raise ConfigError(f"{db.name}: results database schema version {version}; this agescan reads "
                          f"versions 1 to {SCHEMA_VERSION}. Use a matching agescan or a new --db target.")
    if create and (version < SCHEMA_VERSION or not db.has_table("errors")):
        with db.transaction():
            db.serialize_ddl()  # another scanner may be upgrading the same database: one at a time
            if not db.has_table("errors"):  # a version 1 database written before the view existed
                db.script(_ERRORS_VIEW)
            if _version(db) == 1:
                db.script(_UPGRADE_1_TO_2)
            if _version(db) < 3:
                db.script(_UPGRADE_2_TO_3)
                _flag_old_faces(db)
            if _version(db) < 4:
                db.script(_UPGRADE_3_TO_4)
                _pose_old_faces(db)
                db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
                db.execute("UPDATE meta SET value=? WHERE key='result_schema'", (SCHEMA,))
        version = SCHEMA_VERSION
    return version


def _version(db: Database) -> int:
    return int(db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])
