-- The results database of agescan before stored triage flags (schema version 2): _DDL and _ERRORS_VIEW copied
-- verbatim from src/agescan/store/resultstore.py at commit 674acdf. Tests build a database as that version wrote it
-- (both engines: {id} is the engine's id column) and resume its runs with this version.
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
    UNIQUE (item_id, face_index)
);
CREATE INDEX IF NOT EXISTS items_p_minor ON items(run_id, max_p_minor DESC);
CREATE INDEX IF NOT EXISTS items_sha256 ON items(sha256);
;
CREATE VIEW errors AS
SELECT id AS item_id, run_id, source, frame_index, sha256, error_type, error, scanned
FROM items WHERE error <> ''
