"""`agescan evaluate` as a user runs it (a subprocess, real files): what it refuses before any image is processed,
what it never overwrites, and what it reports beside the metrics."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

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
            "gone4.png,2", "empty.jpg,8", ",12", "c.png,32"]
    (photos / "labels.csv").write_text("path,age\n" + "\n".join(rows) + "\n")
    out = evaluate(MODEL, photos, "--out", tmp_path / "r.json")
    line = one_line(out)
    assert out.returncode == 3, out.stderr
    assert "8 of 11 listed images cannot be read: 1 has an empty path; " in line
    assert "4 do not exist (first: 'gone1.png', 'gone2.png', 'gone3.png')" in line
    assert "1 is a folder (first: 'folder.png')" in line and "2 are not pictures (first: 'notes.png', 'empty.jpg')" in line
    assert str(photos / "labels.csv") in line and not (tmp_path / "r.json").exists()
    from agescan.eval.run import evaluate_folder

    with pytest.raises(ConfigError, match="8 of 11 listed images"):  # before the (unknown) model is even loaded
        evaluate_folder("no-such-model", photos)


def test_impv_over_a_zero_or_unmeasured_baseline_is_null_with_a_note():
    """Before: ZeroDivisionError after the whole evaluation (a metric of 0 is common under keyed-permutation)."""
    from agescan.eval.run import compare

    base = {"model": "a", "rows_sha256": "f", "condition": "clean", "n": 3, "mae": 5.0, "mae_0_25": float("nan"),
            "group_accuracy_0_25": 0.0, "cs5": 0.5, "challenge25_teens_under_25": None}
    c = compare(base, {**base, "mae": 4.0, "group_accuracy_0_25": 0.4})
    m = c["metrics"]
    assert m["mae"]["impv"] == pytest.approx(20.0) and "note" not in m["mae"]
    assert m["group_accuracy_0_25"]["impv"] is None and "baseline is 0" in m["group_accuracy_0_25"]["note"]
    assert m["mae_0_25"]["impv"] is None and m["challenge25_teens_under_25"]["impv"] is None
    assert json.loads(json.dumps(c))["metrics"]["group_accuracy_0_25"]["impv"] is None  # null in the JSON report
    binned = {**{k: base[k] for k in ("model", "rows_sha256", "condition", "n")}, "bin_accuracy": 0.5, "bin_1off": 0.7,
              "mae_to_bin": 3.0}
    with pytest.raises(ConfigError, match="baseline was scored on exact ages, this run on age bins"):
        compare(base, binned)  # a KeyError after the whole run before


@pytest.mark.parametrize("text,said", [("[]", "a JSON list, not an object"), ('{"model": "a"}', "no 'rows_sha256'"),
                                       ('{"model": "a", "rows_sha256": "f", "condition": "clean", "n": 3, "mae": "5", '
                                        '"mae_0_25": 1, "group_accuracy_0_25": 1, "cs5": 1, '
                                        '"challenge25_teens_under_25": 1}', "mae '5': not a number")])
def test_a_baseline_that_is_not_a_report_is_refused_before_the_evaluation(photos, tmp_path, text, said):
    """Before: AttributeError ('list' object has no attribute 'get') or KeyError after the whole evaluation."""
    (tmp_path / "base.json").write_text(text)
    out = evaluate(MODEL, photos, "--compare", tmp_path / "base.json", "--out", tmp_path / "r.json")
    line = one_line(out)
    assert out.returncode == 2 and said in line and str(tmp_path / "base.json") in line, out.stderr
    assert not (tmp_path / "r.json").exists()  # refused before any work


@pytest.mark.slow
def test_compare_with_a_zero_baseline_metric_keeps_the_report(photos, tmp_path):
    out = evaluate(MODEL, photos, "--out", tmp_path / "a.json")
    assert out.returncode == 0, out.stderr
    a = json.loads((tmp_path / "a.json").read_text())
    a["cs5"] = 0.0  # as a run under keyed-permutation, where no face is found, may have it
    (tmp_path / "a.json").write_text(json.dumps(a))
    out = evaluate(MODEL, photos, "--compare", tmp_path / "a.json", "--out", tmp_path / "b.json",
                   "--markdown", tmp_path / "b.md")
    assert out.returncode == 0, out.stderr
    b = json.loads((tmp_path / "b.json").read_text())
    assert b["impv"]["metrics"]["cs5"]["impv"] is None and b["impv"]["metrics"]["mae"]["impv"] == pytest.approx(0.0)
    assert "| cs5 | 0.000 |" in (tmp_path / "b.md").read_text() and "n/a: the baseline is 0" in (tmp_path / "b.md").read_text()


def test_outputs_never_replace_an_input_and_an_existing_one_needs_overwrite(photos, tmp_path):
    """Before: `evaluate DIR --predictions DIR/labels.csv` replaced the labels with predictions, and --out,
    --markdown and --plots overwrote whatever was there."""
    labels = photos / "labels.csv"
    kept = labels.read_text()
    image = (photos / "a.png").read_bytes()
    for extra in ((), ("--overwrite",)):  # an input is never written over, --overwrite or not
        for args in (("--predictions", labels), ("--markdown", photos / "a.png"), ("--out", labels)):
            out = evaluate(MODEL, photos, *args, *extra)
            assert out.returncode == 2 and "an input of this evaluation" in one_line(out), (args, out.stderr)
    assert labels.read_text() == kept and (photos / "a.png").read_bytes() == image
    out = evaluate(MODEL, photos, "--out", tmp_path / "x.json", "--markdown", tmp_path / "x.json")
    assert out.returncode == 2 and "names the same file" in one_line(out)
    (tmp_path / "old.json").write_text("earlier work")
    out = evaluate(MODEL, photos, "--out", tmp_path / "old.json")
    assert out.returncode == 2 and "exists; add --overwrite" in one_line(out)
    assert (tmp_path / "old.json").read_text() == "earlier work"
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "mae_by_band.png").write_text("earlier plot")
    out = evaluate(MODEL, photos, "--plots", tmp_path / "plots")
    assert out.returncode == 2 and "mae_by_band.png exists" in one_line(out)
    out = evaluate(MODEL, photos, "--out", tmp_path / "old.json", "--overwrite")
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "old.json").read_text())["n"] == 3


def test_protocol_options_the_set_cannot_meet_are_usage_errors_before_any_work(photos, tmp_path):
    """Before: `--protocol kfold` with more folds than rows, `--folds 1` and a logo column of one group ran the
    whole pipeline, then stopped with a ValueError traceback (exit 1) and no report."""
    (photos / "labels.csv").write_text("path,age,race,subject\na.png,30,1,p1\nb.png,31,1,p1\nc.png,32,1,p2\n")
    for args, said in ((("--protocol", "kfold", "--folds", "3"), "has only 2 subject(s) to deal into folds"),
                       (("--protocol", "logo", "--group-column", "race"), "has 1 group(s) ('1')")):
        out = evaluate(MODEL, photos, *args, "--out", tmp_path / "r.json")
        line = one_line(out)
        assert out.returncode == 2 and said in line, out.stderr
        assert not (tmp_path / "r.json").exists()
    (photos / "labels.csv").write_text("path,age\na.png,30\nb.png,31\nc.png,32\n")
    out = evaluate(MODEL, photos, "--protocol", "kfold", "--folds", "5")
    assert out.returncode == 2 and "has only 3 row(s)" in one_line(out) and "--folds 3 or fewer" in out.stderr
    for args, said in ((("--folds", "1"), "argument --folds: 1 is less than 2"),
                       (("--folds", "two"), "argument --folds: 'two' is not an integer"),
                       (("--minor-threshold", "5"), "argument --minor-threshold: 5 is not a probability"),
                       (("--threads", "-1"), "argument --threads: -1 is less than 0")):
        out = evaluate(MODEL, photos, "--protocol", "kfold", *args)
        assert out.returncode == 2 and said in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)


def test_logo_needs_a_group_column_as_the_help_says(photos):
    """Before: --help said logo's --group-column defaulted to 'split', and leaving it out was an error (exit 3)."""
    helptext = " ".join(subprocess.run([sys.executable, "-m", "agescan", "evaluate", "--help"], capture_output=True,
                                       text=True).stdout.split())
    assert "--group-column (default: split)" not in helptext and "--group-column (required; --preset utkface names race)" in helptext
    assert "--subject-column" in helptext and "--gender-column" in helptext
    out = evaluate(MODEL, photos, "--protocol", "logo")
    assert out.returncode == 2 and "--protocol logo needs --group-column COLUMN" in one_line(out)


def test_kfold_refuses_a_set_where_only_some_rows_have_a_subject_id(photos, tmp_path):
    """Before: one row without a subject id silently turned the subject-disjoint k-fold into a row k-fold (on
    morph_small, 24 of 71 people then sat in several folds)."""
    (photos / "labels.csv").write_text("path,age,subject\na.png,30,p1\nb.png,31,\nc.png,32,p2\n")
    out = evaluate(MODEL, photos, "--protocol", "kfold", "--folds", "2", "--out", tmp_path / "r.json")
    line = one_line(out)
    assert out.returncode == 2 and "1 of 3 row(s)" in line and "no subject id in column 'subject'" in line
    assert "(first: 'b.png')" in line and not (tmp_path / "r.json").exists()


@pytest.mark.slow
def test_kfold_by_a_named_subject_column_and_a_loud_row_kfold_without_one(photos, tmp_path):
    """`--subject-column` (listed in the README) was rejected by evaluate; a set without subject ids is dealt by
    row, which is now said on stderr, in the JSON and in the Markdown."""
    (photos / "labels.csv").write_text("path,age,person\na.png,30,p1\nb.png,31,p1\nc.png,32,p2\n")
    out = evaluate(MODEL, photos, "--protocol", "kfold", "--folds", "2", "--subject-column", "person",
                   "--out", tmp_path / "s.json")
    assert out.returncode == 0, out.stderr
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["protocol"]["by_subject"] and sorted(f["n"] for f in s["protocol"]["folds"]) == [1, 2]  # p1's 2 together
    assert s["warnings"] == [] and "warning" not in out.stderr
    out = evaluate(MODEL, photos, "--protocol", "kfold", "--folds", "2", "--out", tmp_path / "r.json",
                   "--markdown", tmp_path / "r.md")
    assert out.returncode == 0, out.stderr
    r = json.loads((tmp_path / "r.json").read_text())
    assert not r["protocol"]["by_subject"] and "has no subject ids, so rows were dealt into folds" in r["warnings"][0]
    assert "agescan evaluate: warning: --protocol kfold:" in out.stderr
    assert "**Warnings**" in (tmp_path / "r.md").read_text()


def test_a_limit_that_is_not_positive_is_refused(photos):
    """Before: --limit -5 evaluated all rows but the last 5 (a Python slice)."""
    from agescan import InputError
    from agescan.eval.datasets import read_dataset

    for value in ("-5", "0"):
        out = evaluate(MODEL, photos, "--limit", value)
        assert out.returncode == 2 and f"argument --limit: {value} is less than 1" in out.stderr, out.stderr
    with pytest.raises(InputError, match="'limit' parameter"):
        read_dataset(photos, limit=-1)
    assert len(read_dataset(photos, limit=2).rows) == 2


@pytest.mark.slow
def test_rows_without_an_age_are_said_on_stderr_and_in_the_markdown(photos, tmp_path):
    """Before: they were counted only in the JSON's unlabelled_files."""
    (photos / "labels.csv").write_text("path,age\na.png,30\nb.png,\nc.png,32\n")
    out = evaluate(MODEL, photos, "--out", tmp_path / "r.json", "--markdown", tmp_path / "r.md")
    assert out.returncode == 0, out.stderr
    assert "agescan evaluate: warning: 1 row(s) or file(s) of" in out.stderr and "have no age" in out.stderr
    assert "line 3: 'b.png'" in out.stderr
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["n"] == 2 and r["unlabelled_files"] == 1 and "have no age" in r["warnings"][0]
    md = (tmp_path / "r.md").read_text()
    assert "| rows or files without an age (left out) | 1 |" in md and "**Warnings**" in md


@pytest.mark.slow
def test_plots_of_a_set_with_age_bins(photos, tmp_path):
    """Before: --plots on a set with age bins wrote nothing and said nothing."""
    (photos / "labels.csv").write_text("path,age_low,age_high\na.png,30,39\nb.png,30,39\nc.png,20,29\n")
    out = evaluate(MODEL, photos, "--plots", tmp_path / "plots", "--out", tmp_path / "r.json")
    assert out.returncode == 0, out.stderr
    r = json.loads((tmp_path / "r.json").read_text())
    names = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert names == ["bin_confusion.png", "point_age_by_bin.png"] and len(r["plots"]) == 2
    assert all((tmp_path / "plots" / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in names)
    again = evaluate(MODEL, photos, "--plots", tmp_path / "plots")  # the binned plots are outputs like the others
    assert again.returncode == 2 and "point_age_by_bin.png exists" in again.stderr
