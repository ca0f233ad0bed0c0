"""The whole scan over 10,000 corrupt and adversarial inputs: no crash, every input recorded once."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agescan.store import connect
from tests.fuzz_corpus import make_corpus


@pytest.mark.slow
def test_scan_of_10000_adversarial_inputs_records_every_one(tmp_path, astronaut):
    files = make_corpus(tmp_path / "fuzz", 10_000, seed=7, seed_image=astronaut)
    db_path = tmp_path / "fuzz.sqlite"
    cmd = [sys.executable, "-m", "agescan", "scan", str(tmp_path / "fuzz"), "--db", str(db_path), "--no-progress"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 1, run.stderr[-3000:]  # errors recorded, scan completed
    assert "Traceback" not in run.stderr
    db = connect(db_path, readonly=True)
    sources = [s for (s,) in db.execute("SELECT source FROM items WHERE frame_index <= 0").fetchall()]
    assert len(sources) == len(set(sources)), "an input was recorded twice"
    covered = {s.split("::", 1)[0] for s in sources}
    missing = [str(f) for f in files if str(f) not in covered]
    assert not missing, f"{len(missing)} input(s) not recorded, e.g. {missing[:3]}"
    kinds = dict(db.execute("SELECT error_type, COUNT(*) FROM items GROUP BY error_type").fetchall())
    assert kinds.get("DecodeError", 0) > 5000 and kinds.get("", 0) > 500  # both paths exercised
    # TooManyPixelsError is the DecodeError of an image larger than --max-pixels (a bomb)
    assert set(kinds) <= {"", "DecodeError", "TooManyPixelsError"}, f"unexpected failure types: {kinds}"
    bombs = db.execute("SELECT COUNT(*) FROM items WHERE error LIKE '%more than the limit%zip-bomb guard%'"
                       ).fetchone()[0]
    assert bombs == 2  # the two zip bombs (pictures declaring too many pixels are TooManyPixelsError items)
    assert db.execute("SELECT finished IS NOT NULL FROM runs").fetchone()[0]
    stored = db.execute("SELECT source, frame_index, error_type FROM items ORDER BY source, frame_index").fetchall()
    db.close()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    # every error is tried again (the same corpus: each fails the same way, its record replaced, none added)
    retried = sum(1 for _, f, t in stored if t and f <= 0)
    assert f"scanned {retried} new or retried file(s)" in again.stderr, again.stderr[-2000:]
    db = connect(db_path, readonly=True)
    assert db.execute("SELECT source, frame_index, error_type FROM items ORDER BY source, frame_index").fetchall() \
        == stored
    db.close()
