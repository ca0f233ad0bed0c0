"""The results store on SQLite and on a real PostgreSQL server, and resumable scans killed with SIGKILL in a
real subprocess."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from agescan import ConfigError
from agescan.store import SCHEMA_VERSION, ResultStore, connect


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
        assert store.add(run, results) == 0  # the same items again: nothing duplicated
        assert store.counts(run) == {"items": 3, "errors": 1, "faces": 1}
        assert store.done_sources(run) == {(str(astronaut_path), -1), ("<array>", -1), (str(bad), -1)}
    db = connect(store_target, readonly=True)
    source, error_type, error = db.execute("SELECT source, error_type, error FROM errors").fetchone()
    assert source == str(bad) and error_type == results[2].error_type and error == results[2].error
    age, p_minor, group = db.execute("SELECT age, p_minor, age_group FROM faces").fetchone()
    f = results[0].faces[0]
    assert abs(age - f.age) < 0.01 and abs(p_minor - f.p_minor) < 1e-3 and group == f.age_group
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == str(SCHEMA_VERSION)


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
    try:
        db = connect(target, readonly=True)
    except ConfigError:  # not created yet
        return 0
    try:
        return db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    except Exception:  # tables not created yet
        return 0
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
    # a third run has nothing left to do
    third = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert "scanned 0 new file(s)" in third.stderr
