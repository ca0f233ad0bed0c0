"""Generic labelled sets (any CSV, age-named folders and files), k-fold and leave-one-group-out protocols,
and the Impv comparison of two evaluation reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from agescan import ConfigError
from agescan.eval.datasets import DatasetSpec, read_dataset
from agescan.eval.metrics import impv
from agescan.eval.protocols import fold_summary, group_assign, kfold_assign, training_split
from agescan.eval.run import compare


def _png(path, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((8, 8, 3), value, np.uint8))


def test_kfold_partition_is_balanced_deterministic_and_seeded():
    f = kfold_assign(103, 5, seed=3)
    assert sorted(np.bincount(f).tolist()) == [20, 20, 21, 21, 21]
    assert np.array_equal(f, kfold_assign(103, 5, seed=3))
    assert not np.array_equal(f, kfold_assign(103, 5, seed=4))
    with pytest.raises(ValueError, match="2 <= k"):
        kfold_assign(3, 5)


def test_group_partition_and_training_split():
    folds, names = group_assign(["b", "a", "", "b", "c"])
    assert names == ["a", "b", "c"] and folds.tolist() == [1, 0, -1, 1, 2]
    with pytest.raises(ValueError, match="two groups"):
        group_assign(["a", "a"])
    f = kfold_assign(1000, 5)
    s = training_split(f, 2, seed=0)
    assert set(np.flatnonzero(s == "test")) == set(np.flatnonzero(f == 2))
    assert 0.10 < (s == "val").sum() / (f != 2).sum() < 0.20  # the default 15% of the other folds
    assert (s[f != 2] != "").all() and (s[f == 2] == "test").all()
    assert training_split(folds, 0).tolist()[2] == ""  # a row without a group is in no set


def test_fold_summary_per_fold_mean_and_sd():
    true = np.array([5.0, 5.0, 20.0, 20.0])
    pred = np.array([6, 5, 20, 24])  # fold 0 errors 1 and 0, fold 1 errors 0 and 4
    probs = np.eye(101)[pred]
    s = fold_summary(true, probs, 0, np.array([0, 0, 1, 1]))
    assert [r["mae"] for r in s["folds"]] == [0.5, 2.0]
    assert s["mean"]["mae"] == pytest.approx(1.25) and s["sd"]["mae"] == pytest.approx(np.std([0.5, 2.0], ddof=1))
    named = fold_summary(true, probs, 0, np.array([1, 1, 0, -1]), ["x", "y"])
    assert [(r["fold"], r["n"]) for r in named["folds"]] == [("x", 1), ("y", 2)]


def test_csv_with_own_column_names_bom_and_no_split_column(tmp_path):
    _png(tmp_path / "img" / "a.png")
    _png(tmp_path / "img" / "b.png")
    (tmp_path / "truth.csv").write_text("\ufefffile,years,subject\nimg/a.png,7,s1\nimg/b.png,31.5,s2\n", encoding="utf-8")
    ds = read_dataset(tmp_path, labels=tmp_path / "truth.csv", path_column="file", age_column="years")
    assert [(r["path"], r["age"], r["subject"]) for r in ds.rows] == [("img/a.png", 7.0, "s1"), ("img/b.png", 31.5, "s2")]
    assert ds.rows[0]["file"] == tmp_path / "img" / "a.png" and ds.split.startswith("all (no 'split'")
    with pytest.raises(ConfigError, match="--path-column"):
        read_dataset(tmp_path, labels=tmp_path / "truth.csv")


def test_a_bad_age_is_an_error_naming_the_line(tmp_path):
    (tmp_path / "labels.csv").write_text("path,age,split\na.png,7,test\nb.png,seven,test\n")
    with pytest.raises(ConfigError, match=r"line 3: age 'seven' of 'b.png'"):
        read_dataset(tmp_path)
    (tmp_path / "labels.csv").write_text("path,age,split\na.png,7,train\n")
    with pytest.raises(ConfigError, match="no rows with split='test'"):
        read_dataset(tmp_path)
    assert len(read_dataset(tmp_path, split="all").rows) == 1


def test_ages_from_folder_and_file_names(tmp_path):
    _png(tmp_path / "7" / "x.png")
    _png(tmp_path / "25_0_1_20170116.jpg.png")
    _png(tmp_path / "holiday.png")  # no age anywhere: counted, left out
    _png(tmp_path / "misc" / "9-boy.png")
    ds = read_dataset(tmp_path)
    assert sorted((r["path"], r["age"]) for r in ds.rows) == [
        ("25_0_1_20170116.jpg.png", 25.0), ("7/x.png", 7.0), ("misc/9-boy.png", 9.0)]
    assert ds.unlabelled == 1 and ds.split.startswith("all")
    empty = tmp_path / "empty"
    empty.mkdir()
    _png(empty / "photo.png")
    with pytest.raises(ConfigError, match="--labels FILE"):
        read_dataset(empty)


def test_compare_gives_the_papers_impv_and_refuses_other_sets():
    base = {"model": "a", "rows_sha256": "f00", "condition": "eyeband", "n": 10, "mae": 5.37,
            "mae_0_25": 4.0, "group_accuracy_0_25": 0.4, "cs5": 0.5, "challenge25_teens_under_25": 0.9}
    new = {**base, "model": "b", "mae": 4.40, "group_accuracy_0_25": 0.5}
    c = compare(base, new)
    assert c["metrics"]["mae"]["impv"] == pytest.approx(impv(5.37, 4.40)) and c["metrics"]["mae"]["impv"] > 18
    assert c["metrics"]["group_accuracy_0_25"]["impv"] == pytest.approx(-25.0)
    with pytest.raises(ConfigError, match="condition"):
        compare(base, {**new, "condition": "clean"})
    with pytest.raises(ConfigError, match="rows_sha256"):
        compare(base, {**new, "rows_sha256": "ba5"})


@pytest.mark.slow
def test_evaluate_kfold_logo_and_compare_on_real_faces(tmp_path):
    from agescan import DEFAULT_MODEL
    from tests.conftest import UTKFACE, utkface_rows

    rows = utkface_rows("test")[:36]
    data = tmp_path / "faces"  # a folder of age-named files, as a user's own set may be
    data.mkdir()
    for i, r in enumerate(rows):
        os.symlink(UTKFACE / r["path"], data / f"{int(r['age'])}_{i}.jpg")

    def evaluate(*args):
        out = subprocess.run([sys.executable, "-m", "agescan", "evaluate", *map(str, args)], capture_output=True,
                             text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        return out

    evaluate(DEFAULT_MODEL, data, "--protocol", "kfold", "--folds", "3", "--out", tmp_path / "a.json")
    a = json.loads((tmp_path / "a.json").read_text())
    assert a["n"] == 36 and a["split"].startswith("all") and a["protocol"]["k"] == 3
    assert sum(f["n"] for f in a["protocol"]["folds"]) == 36
    assert a["protocol"]["mean"]["mae"] == pytest.approx(np.mean([f["mae"] for f in a["protocol"]["folds"]]))
    evaluate("dexnet-m.utkface", data, "--compare", tmp_path / "a.json", "--out", tmp_path / "b.json",
             "--markdown", tmp_path / "b.md")
    b = json.loads((tmp_path / "b.json").read_text())
    assert b["impv"]["metrics"]["mae"]["impv"] == pytest.approx(impv(a["mae"], b["mae"]))
    assert "Impv over " + DEFAULT_MODEL in (tmp_path / "b.md").read_text()
    # Another set: the report is still written, the Impv refused with the reason and exit code 3.
    out = subprocess.run([sys.executable, "-m", "agescan", "evaluate", DEFAULT_MODEL, data, "--limit", "5",
                          "--compare", tmp_path / "a.json", "--out", tmp_path / "d.json"], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 3 and "Evaluate both on the same" in out.stderr
    assert json.loads((tmp_path / "d.json").read_text())["n"] == 5
    evaluate(DEFAULT_MODEL, UTKFACE, "--limit", "40", "--protocol", "logo", "--group-column", "race",
             "--out", tmp_path / "c.json", "--markdown", tmp_path / "c.md")
    c = json.loads((tmp_path / "c.json").read_text())
    from agescan.eval.run import SLICE_NAMES

    races = sorted({r["race"] for r in utkface_rows("test")[:40]})
    assert [f["fold"] for f in c["protocol"]["folds"]] == [SLICE_NAMES["race"][r] for r in races]
    assert "leave-one-race-out" in (tmp_path / "c.md").read_text()


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "-5", "-0.5"])
def test_an_age_that_is_not_finite_or_negative_is_an_error_naming_the_line(tmp_path, value):
    """Before: 'nan' and 'inf' parsed as floats were used as ages (evaluate crashed after the whole pipeline with
    'cannot convert float NaN to integer', or reported "mae": Infinity) and -5 was silently scored."""
    (tmp_path / "labels.csv").write_text(f"path,age,split\na.png,7,test\nb.png,{value},test\n")
    with pytest.raises(ConfigError, match=rf"labels.csv, line 3: age '{value}' of 'b.png' is not an age"):
        read_dataset(tmp_path)
    with pytest.raises(ConfigError, match="line 3"):  # what `agescan train prepare` reads
        DatasetSpec(data=str(tmp_path)).read()


@pytest.mark.parametrize("low,high", [("nan", "nan"), ("3", "nan"), ("inf", "inf"), ("-10", "-1"), ("30", "20")])
def test_a_bin_that_is_not_finite_negative_or_reversed_is_an_error_naming_the_line(tmp_path, low, high):
    (tmp_path / "labels.csv").write_text(f"path,age_low,age_high\na.png,3,9\nb.png,{low},{high}\n")
    with pytest.raises(ConfigError, match=r"labels.csv, line 3: "):
        read_dataset(tmp_path, split="all")


def test_a_row_with_both_bin_bounds_empty_is_counted_as_unlabelled(tmp_path):
    (tmp_path / "labels.csv").write_text("path,age_low,age_high\na.png,3,9\nb.png,,\n")
    ds = read_dataset(tmp_path, split="all")
    assert len(ds.rows) == 1 and ds.unlabelled == 1 and "b.png" in ds.unlabelled_examples[0]


def test_evaluate_refuses_a_nan_age_before_any_image_is_read(tmp_path):
    """The listed images do not even exist: the age is refused while the CSV is read, with exit code 3 and one
    line naming the file and the line, no traceback."""
    (tmp_path / "labels.csv").write_text("path,age\nnowhere/a.png,7\nnowhere/b.png,nan\n")
    out = subprocess.run([sys.executable, "-m", "agescan", "evaluate", "dexnet-m-ocl.utkface", str(tmp_path),
                          "--threads", "1"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 3 and "Traceback" not in out.stderr, out.stderr
    assert f"{tmp_path / 'labels.csv'}, line 3: age 'nan' of 'nowhere/b.png' is not an age" in out.stderr
