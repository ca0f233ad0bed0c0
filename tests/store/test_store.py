"""The results store on SQLite and on a real PostgreSQL server, and resumable scans killed with SIGKILL in a
real subprocess."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agescan import ConfigError
from agescan.results import to_dict
from agescan.store import SCHEMA_VERSION, ResultStore, check_schema, connect
from agescan.triage import LEGACY_RULE, is_flagged

#: The schema of agescan before PDQ hashes, verbatim from its source (schema version 1).
SCHEMA_V1 = Path(__file__).parent / "data" / "schema_v1.sql"


def test_items_and_faces_round_trip_and_replays_are_no_ops(store_target, estimator, astronaut_path, tmp_path):
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    results = [estimator.predict(astronaut_path), estimator.predict(np.zeros((30, 30, 3), np.uint8)),
               *estimator.stream([bad])]
    assert results[2].error  # recorded, not raised
    with ResultStore(store_target) as store:
        run = store.open_run({"a": 1}, "m", "sha", "mtcnn", "0.1.0")
        assert store.open_run({"a": 1}, "m", "sha", "mtcnn", "0.1.0") == run
        assert store.open_run({"a": 2}, "m", "sha", "mtcnn", "0.1.0") != run
        assert store.add(run, results) == 3
        assert store.add(run, results) == 0  # the same items again: nothing duplicated (the error is replaced)
        flagged = int(results[0].faces[0].flagged)
        assert store.counts(run) == {"items": 3, "files": 3, "errors": 1, "faces": 1, "flagged": flagged}
        # an error is not done: a rerun tries it again
        assert store.done_sources(run) == {(str(astronaut_path), -1), ("<array>", -1)}
        assert store.error_sources(run) == {(str(bad), -1)}
    db = connect(store_target, readonly=True)
    source, error_type, error = db.execute("SELECT source, error_type, error FROM errors").fetchone()
    assert source == str(bad) and error_type == results[2].error_type and error == results[2].error
    age, p_minor, group, flag = db.execute("SELECT age, p_minor, age_group, flagged FROM faces").fetchone()
    f = results[0].faces[0]
    assert abs(age - f.age) < 0.01 and abs(p_minor - f.p_minor) < 1e-3 and group == f.age_group
    assert flag == f.flagged  # the estimator's decision, stored as it was made
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)
    pdq, mirror, quality = db.execute("SELECT pdq, pdq_mirror, pdq_quality FROM items WHERE source=?",
                                      (str(astronaut_path),)).fetchone()
    p = results[0].provenance
    assert (pdq, mirror, quality) == (p.pdq, p.pdq_mirror, p.pdq_quality) and len(pdq) == 64 and quality > 50
    db.close()
    with ResultStore(store_target) as store:  # a database of this version opens as it is
        assert store.counts(store.open_run({"a": 1}, "m", "sha", "mtcnn", "0.1.0"))["items"] == 3


def _v1_database(target: str, result) -> None:
    """A results database as agescan wrote it before PDQ hashes: schema version 1, one item with its face."""
    d = to_dict(result)
    f = d["faces"][0]
    db = connect(target)
    with db.transaction():
        db.script(SCHEMA_V1.read_text())
        db.execute("INSERT INTO meta VALUES ('schema_version', '1'), ('result_schema', 'agescan.result/1')")
        run = db.execute("INSERT INTO runs (config_hash, config, agescan_version, model_id, model_sha256, detector_id, "
                         "started) VALUES ('c0ffee', '{}', '0.1.0', ?, 'sha', 'mtcnn', 0) RETURNING id",
                         (f["model_id"],)).fetchone()[0]
        # the version 1 statement of ResultStore._add_one, with its 64-bit dHash
        item = db.execute(
            "INSERT INTO items (run_id, source, frame_index, timestamp, sha256, phash, width, height, "
            "n_faces, max_p_minor, error, error_type, scanned) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (run_id, source, frame_index) DO NOTHING RETURNING id",
            (run, d["source"], -1, -1.0, d["sha256"], "e1c3c7c3c3e3f1f0", d["width"], d["height"], 1, f["p_minor"],
             "", "", 0.0)).fetchone()[0]
        db.execute("INSERT INTO faces (item_id, face_index, x1, y1, x2, y2, landmarks, detector_score, age, "
                   "interval_lo, interval_hi, interval_level, p_minor, minor_age, age_group, model_id, distribution) "
                   "VALUES (?, 0, ?, ?, ?, ?, '[]', ?, ?, ?, ?, ?, ?, ?, ?, ?, '{}')",
                   (item, *f["box"], f["detector_score"], f["age"], *f["interval"], f["interval_level"], f["p_minor"],
                    f["minor_age"], f["age_group"], f["model_id"]))
    db.close()


def test_a_version_1_database_is_read_as_it_is_and_upgraded_by_a_scan(store_target, estimator, astronaut_path,
                                                                     tmp_path):
    from agescan.report import write_report

    result = estimator.predict(astronaut_path)
    _v1_database(store_target, result)
    # the report reads it as it is (read-only): the item listed, nothing grouped, the old columns exported
    page = write_report(store_target, tmp_path / "r1", thumbnails=False).read_text(encoding="utf-8")
    assert page.count("data-pminor") == 1 and "1 listed file(s) have no PDQ hash" in page
    assert "e1c3c7c3c3e3f1f0" in (tmp_path / "r1" / "items.csv").read_text(encoding="utf-8")
    db = connect(store_target, readonly=True)
    assert check_schema(db) == 1  # still version 1: a reader never changes the database
    db.close()
    # a scan into it (a writer) upgrades it in place, keeping its items and faces
    with ResultStore(store_target) as store:
        run = store.db.execute("SELECT id FROM runs").fetchone()[0]
        assert store.add(run, [result]) == 0  # already there: the item scanned before the upgrade
        assert store.add(run, [estimator.predict(np.asarray(Image.open(astronaut_path).resize((256, 256))))]) == 1
        assert store.counts(run)["items"] == 2 and store.counts(run)["faces"] == 2
    db = connect(store_target, readonly=True)
    assert check_schema(db) == SCHEMA_VERSION == 4
    assert db.execute("SELECT value FROM meta WHERE key='result_schema'").fetchone()[0] == "agescan.result/4"
    # the face stored before flags were stored got the flag of the rule of that time
    assert db.execute("SELECT flagged FROM faces ORDER BY id").fetchall()[0][0] == int(
        is_flagged(result.faces[0].p_minor, result.faces[0].age, *LEGACY_RULE))
    # faces from before pose was stored: "aligned" (the only framing then); this one had no landmarks stored
    assert db.execute("SELECT yaw, roll, framing FROM faces ORDER BY id").fetchall()[0] == (0, 0, "aligned")
    cols = [c[0] for c in db.execute("SELECT * FROM items").description]
    assert "phash" not in cols and cols[-3:] == ["pdq", "pdq_mirror", "pdq_quality"]
    rows = db.execute("SELECT pdq, pdq_quality FROM items ORDER BY id").fetchall()
    assert rows[0] == ("", 0) and len(rows[1][0]) == 64  # the old item has no hash; the new one has
    db.close()
    page = write_report(store_target, tmp_path / "r2", thumbnails=False).read_text(encoding="utf-8")
    assert page.count("data-pminor") == 2 and "1 listed file(s) have no PDQ hash" in page


def test_a_version_3_database_gets_the_pose_of_its_stored_landmarks_on_upgrade(store_target, estimator, astronaut,
                                                                               tmp_path):
    from agescan.align import estimate_pose
    from agescan.report import write_report

    turned = np.ascontiguousarray(astronaut[:, ::-1])
    results = [estimator.predict(astronaut), estimator.predict(turned)]
    with ResultStore(store_target) as store:
        run = store.open_run({"a": 3}, "m", "sha", "mtcnn", "0.1.0")
        store.add(run, results[:1])
    db = connect(store_target)  # as agescan wrote it before pose was stored: schema version 3
    with db.transaction():
        for col in ("yaw", "roll", "framing"):
            db.execute(f"ALTER TABLE faces DROP COLUMN {col}")
        db.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
        db.execute("UPDATE meta SET value='agescan.result/3' WHERE key='result_schema'")
    db.close()
    page = write_report(store_target, tmp_path / "r3", thumbnails=False).read_text(encoding="utf-8")
    assert page.count("data-pminor") == 1 and ">profile<" not in page  # read as it is
    with ResultStore(store_target) as store:  # a writer upgrades it
        assert store.add(store.open_run({"a": 4}, "m", "sha", "mtcnn", "0.1.0"), results[1:]) == 1
    db = connect(store_target, readonly=True)
    assert check_schema(db) == SCHEMA_VERSION == 4
    (old_yaw, old_roll, old_framing), (new_yaw, _, _) = db.execute(
        "SELECT yaw, roll, framing FROM faces ORDER BY id").fetchall()
    want = estimate_pose(to_dict(results[0])["faces"][0]["landmarks"])  # from the stored (rounded) landmarks
    assert (old_yaw, old_roll, old_framing) == (pytest.approx(want.yaw), pytest.approx(want.roll), "aligned")
    assert new_yaw == pytest.approx(results[1].faces[0].yaw, abs=0.06)
    db.close()


def test_a_database_from_before_the_errors_view_gets_it_on_open(store_target):
    ResultStore(store_target).open().close()
    db = connect(store_target)
    db.execute("DROP VIEW errors")
    assert not db.has_table("errors")
    db.close()
    with ResultStore(store_target) as store:
        assert store.db.has_table("errors")
        assert store.counts(store.open_run({}, "m", "sha", "mtcnn", "0.1.0"))["errors"] == 0


def test_other_schema_version_is_refused(store_target):
    ResultStore(store_target).open().close()
    db = connect(store_target)
    db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    db.close()
    with pytest.raises(ConfigError, match="schema version 99"):
        ResultStore(store_target).open()
    db = connect(store_target, readonly=True)
    with pytest.raises(ConfigError, match="schema version 99"):
        check_schema(db)
    db.close()


def test_a_database_that_is_not_ours_is_refused_by_the_report(tmp_path):
    from agescan.report import write_report

    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(ConfigError, match="not an agescan results database"):
        write_report(other, tmp_path / "r")
    with pytest.raises(ConfigError, match="no such results database"):
        write_report(tmp_path / "absent.sqlite", tmp_path / "r")


def test_postgres_errors_say_what_to_do_and_hide_the_password(postgres_server):
    url = postgres_server().replace("agescan@", "agescan:s3cret@").rsplit(":", 1)[0] + ":1/x"  # a closed port
    with pytest.raises(ConfigError) as e:
        ResultStore(url).open()
    assert "Cannot connect to postgresql://agescan:***@127.0.0.1:1/x" in str(e.value) and "s3cret" not in str(e.value)


def _items(target) -> int:
    """Items the scan has stored so far: 0 while the database or its tables do not exist yet (or while SQLite
    briefly locks a database being created); any other failure is raised, so a broken query fails the test with its
    own message instead of reading as "nothing stored yet"."""
    try:
        db = connect(target, readonly=True)
    except ConfigError as e:
        if "no such results database" in str(e):  # the scan has not created the file yet
            return 0
        raise
    try:
        if not db.has_table("items"):
            return 0
        return db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    except sqlite3.OperationalError as e:
        if "locked" in str(e):
            return 0
        raise
    finally:
        db.close()


@pytest.mark.slow
def test_scan_killed_with_sigkill_resumes_without_loss_or_duplicates(tmp_path, astronaut_path, store_target):
    folder = tmp_path / "evidence"
    folder.mkdir()
    n = 80
    data = astronaut_path.read_bytes()
    for i in range(n):
        (folder / f"img {i:03d}.png").write_bytes(data)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 20)
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}
    db_path = store_target
    cmd = [sys.executable, "-m", "agescan", "scan", str(folder), "--db", str(db_path), "--no-progress",
           "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while _items(db_path) < 5 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = _items(db_path)
    assert 5 <= partial < n + 1, f"the scan was not killed mid-run ({partial} items)"

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 1, again.stderr  # broken.jpg is recorded as an error
    assert f"already in {db_path}" in again.stderr
    db = connect(db_path, readonly=True)
    rows = db.execute("SELECT source, COUNT(*) FROM items GROUP BY source").fetchall()
    assert len(rows) == n + 1 and all(c == 1 for _, c in rows)
    assert db.execute("SELECT COUNT(*) FROM faces").fetchone()[0] == n
    assert db.execute("SELECT COUNT(*) FROM items WHERE error != ''").fetchone()[0] == 1
    assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
    assert db.execute("SELECT COUNT(*) FROM faces GROUP BY item_id HAVING COUNT(*) > 1").fetchall() == []
    # evidence untouched: same bytes, same mtimes, nothing written next to it
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in folder.iterdir()}
    assert after == before
    # a third run has nothing left to do but try the broken file again, which replaces its error record
    third = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert "scanned 1 new or retried file(s)" in third.stderr
    db = connect(db_path, readonly=True)
    assert db.execute("SELECT COUNT(*) FROM items").fetchone()[0] == n + 1
    assert db.execute("SELECT source FROM items WHERE error != ''").fetchall() == [(str(folder / "broken.jpg"),)]
    db.close()
