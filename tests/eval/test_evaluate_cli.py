"""`agescan evaluate` as a user runs it (a subprocess, real files): what it refuses before any image is processed,
what it never overwrites, and what it reports beside the metrics."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import pytest

from agescan import ConfigError

MODEL = "dexnet-m-ocl.utkface"  # the smallest shipped model: these tests are about the command, not the numbers


def evaluate(*args, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agescan", "evaluate", *map(str, args), "--threads", "1"],
                          capture_output=True, text=True, timeout=timeout)


def one_line(out: subprocess.CompletedProcess) -> str:
    """The error as the user sees it: one line, no traceback."""
    assert "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    return lines[0]


@pytest.fixture()
def photos(tmp_path, astronaut_path):
    """A folder of three real photos (copies of the NASA portrait), listed in labels.csv with ages."""
    d = tmp_path / "set"
    d.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        shutil.copy(astronaut_path, d / name)
    (d / "labels.csv").write_text("path,age\na.png,30\nb.png,31\nc.png,32\n")
    return d


def test_listed_images_that_cannot_be_read_are_refused_before_any_is_processed(photos, tmp_path):
    """Before: the pipeline ran until the first missing file, then stopped with 'no such file' naming that one file
    and no report (exit 1); a folder or a CSV listed as an image likewise."""
    (photos / "folder.png").mkdir()
    (photos / "notes.png").write_text("not a picture")
    (photos / "empty.jpg").write_bytes(b"")
    rows = ["a.png,30", "gone1.png,5", "b.png,31", "folder.png,7", "gone2.png,9", "notes.png,40", "gone3.png,3",
            "gone4.png,2", "empty.jpg,8", "c.png,32"]
    (photos / "labels.csv").write_text("path,age\n" + "\n".join(rows) + "\n")
    start = time.time()
    out = evaluate(MODEL, photos, "--out", tmp_path / "r.json")
    line = one_line(out)
    assert out.returncode == 3, out.stderr
    assert "7 of 10 listed images cannot be read" in line
    assert "4 do not exist (first: 'gone1.png', 'gone2.png', 'gone3.png')" in line
    assert "1 are folders (first: 'folder.png')" in line and "2 are not pictures (first: 'notes.png', 'empty.jpg')" in line
    assert str(photos / "labels.csv") in line and not (tmp_path / "r.json").exists()
    from agescan.eval.run import evaluate_folder

    with pytest.raises(ConfigError, match="7 of 10 listed images"):  # before the (unknown) model is even loaded
        evaluate_folder("no-such-model", photos)
    assert time.time() - start < 120
