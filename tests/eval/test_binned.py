"""Evaluation on age bins (FairFace's age_low/age_high): reading them, the bin metrics by hand, a real run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from agescan import ConfigError
from agescan.eval.datasets import read_dataset
from agescan.eval.metrics import binned_metrics, binned_point_metrics
from tests.conftest import FAIRFACE, REPO, fairface_rows

#: Six faces over four bins, worked by hand below.
LOW = [0, 3, 3, 10, 20, 20]
HIGH = [2, 9, 9, 19, 29, 29]
PRED = [1.0, 12.0, 19.5, 25.0, 2.0, 29.9]
P_MINOR = [0.9, 0.6, 0.03, 0.2, 0.7, 0.01]


def test_bin_metrics_by_hand():
    m = binned_point_metrics(LOW, HIGH, PRED, P_MINOR, flag_threshold=0.02)
    assert m["bins"] == ["0-2", "3-9", "10-19", "20-29"]
    # predicted bins (floored point age): 0-2, 10-19, 10-19 (19.5 -> 19), 20-29, 0-2, 20-29 (29.9 -> 29)
    assert m["bin_accuracy"] == pytest.approx(2 / 6)
    assert m["bin_1off"] == pytest.approx(5 / 6)  # only the adult read as 2 is 3 bins off
    # years to the true bin [low, high + 1): 0, 12-10, 19.5-10, 25-20, 20-2, 0
    assert m["mae_to_bin"] == pytest.approx((0 + 2 + 9.5 + 5 + 18 + 0) / 6)
    assert m["confusion"] == [[1, 0, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1], [1, 0, 0, 1]]
    c = m["children"]  # the bins wholly under 18: 0-2 and 3-9 (10-19 straddles 18 and is in neither group)
    assert c["bins"] == ["0-2", "3-9"] and c["n"] == 3
    assert c["under_minor_age"] == pytest.approx(2 / 3)  # 19.5 is not under 18
    assert c["p_minor_recall"] == pytest.approx(1.0)  # 0.03 >= 0.02
    assert c["p_minor_recall_0.5"] == pytest.approx(2 / 3)
    assert c["flagged"] == pytest.approx(1.0) and m["flag_rule"] == "P(minor) >= 0.02"  # no flags given
    a = m["adults"]
    assert a["n"] == 2 and a["under_minor_age"] == pytest.approx(0.5) and a["flagged"] == pytest.approx(0.5)
    assert a["p_minor_over_threshold"] == pytest.approx(0.5)
    b = m["per_bin"]["3-9"]
    assert b == {"n": 2, "accuracy": 0.0, "median_age": pytest.approx(15.75), "under_minor_age": 0.5,
                 "flagged": 1.0, "mean_p_minor": pytest.approx(0.315)}
    assert m["per_bin"]["10-19"]["accuracy"] == 0.0 and m["per_bin"]["20-29"]["accuracy"] == 0.5


def test_the_pipelines_flags_are_counted_as_given_not_re_decided_from_p_minor():
    # the pipeline did not flag the 3-9 child with P(minor) 0.03 (its refer interval said adult) and flagged the
    # adult read as 2: "flagged" follows the flags, the P(minor) shares still follow the threshold
    flags = [True, True, False, False, True, False]
    m = binned_point_metrics(LOW, HIGH, PRED, P_MINOR, flag_threshold=0.02, flagged=flags)
    assert m["children"]["flagged"] == pytest.approx(2 / 3) and m["children"]["p_minor_recall"] == pytest.approx(1.0)
    assert m["adults"]["flagged"] == pytest.approx(0.5) and m["per_bin"]["3-9"]["flagged"] == 0.5
    assert m["flag_rule"].startswith("the pipeline's flag")


def test_a_tool_without_p_minor_gets_empty_p_minor_numbers_and_an_open_bin_is_named_with_a_plus():
    m = binned_point_metrics([0, 70], [2, 120], [1.0, 90.0], None)
    assert m["bins"] == ["0-2", "70+"] and m["bin_accuracy"] == 1.0
    assert np.isnan(m["children"]["p_minor_recall"]) and np.isnan(m["adults"]["flagged"])


def test_distributions_give_the_same_numbers_as_their_means():
    probs = np.zeros((6, 101))
    for i, a in enumerate(PRED):  # the point ages above as distributions (19.5 and 29.9 split over two years)
        lo = int(np.floor(a))
        probs[i, lo] += 1 - (a - lo)
        if a != lo:
            probs[i, lo + 1] += a - lo
    m = binned_metrics(LOW, HIGH, probs, 0, flag_threshold=0.5)
    assert m["bin_accuracy"] == pytest.approx(2 / 6) and m["mae_to_bin"] == pytest.approx(34.5 / 6)
    assert m["children"]["p_minor_recall"] == pytest.approx(2 / 3)  # P(minor) of 1, 1, 0


def test_a_csv_with_bins_is_read_as_binned_and_a_bad_bin_names_its_line(tmp_path):
    (tmp_path / "labels.csv").write_text("path,age_low,age_high,age_group\na.jpg,3,9,3-9\nb.jpg,70,120,70+\n")
    ds = read_dataset(tmp_path, split="all")
    assert ds.binned and ds.split == "all"
    assert [(r["age_low"], r["age_high"], r["age"]) for r in ds.rows] == [(3, 9, 6), (70, 120, 95)]
    (tmp_path / "labels.csv").write_text("path,age,age_low,age_high\na.jpg,5,3,9\n")
    assert not read_dataset(tmp_path).binned  # an exact age wins over its bin
    (tmp_path / "labels.csv").write_text("path,age_low,age_high\na.jpg,9,3\n")
    with pytest.raises(ConfigError, match="line 2: bin 9-3"):
        read_dataset(tmp_path)
    (tmp_path / "labels.csv").write_text("path,age_low\na.jpg,9\n")
    with pytest.raises(ConfigError, match="no column 'age'"):
        read_dataset(tmp_path)


#: fairface270 faces: a baby (0-2), three children (3-9) and two adults (50-59), all frontal.
REAL = ("images/fairface_0092.jpg", "images/fairface_0166.jpg", "images/fairface_0188.jpg",
        "images/fairface_0214.jpg", "images/fairface_0039.jpg", "images/fairface_0050.jpg")


@pytest.mark.slow
def test_agescan_evaluate_on_real_binned_faces(tmp_path):
    rows = {r["path"]: r for r in fairface_rows()}
    lines = ["path,age_low,age_high"] + [f"{FAIRFACE / p},{rows[p]['age_low']},{rows[p]['age_high']}" for p in REAL]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    proc = subprocess.run([sys.executable, "-m", "agescan", "evaluate", "resnet10x2-ocl.utkface", str(tmp_path),
                           "--split", "all", "--threads", "1", "--out", str(out), "--markdown", str(md),
                           "--predictions", str(tmp_path / "p.csv")],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    assert r["labels"] == "age bins" and r["n"] == 6 and r["faces_found"] == 6
    assert r["bins"] == ["0-2", "3-9", "50-59"]
    c = r["children"]
    assert c["n"] == 4 and c["under_minor_age"] == 1.0 and c["p_minor_recall"] == 1.0 and c["flagged"] == 1.0
    assert r["flag_rule"].startswith("the pipeline's flag")
    p_minor = [float(x.split(",")[4]) for x in (tmp_path / "p.csv").read_text().splitlines()[1:]]
    assert r["flag_threshold"] == 0.039 and min(p_minor[:4]) >= 0.039  # the card's threshold
    assert r["adults"]["under_minor_age"] == 0.0
    assert 0.25 <= r["bin_accuracy"] <= 1.0
    assert "3-bin accuracy" in md.read_text() and "| 3-9 | 3 |" in md.read_text()
    assert (tmp_path / "p.csv").read_text().splitlines()[0] == "path,age,found,pred,p_minor,age_low,age_high"
    with pytest.raises(ConfigError, match="needs exact ages"):
        from agescan.eval.run import evaluate_folder

        evaluate_folder("resnet10x2-ocl.utkface", tmp_path, split="all", protocol="kfold")


def test_labelled_face_rule_by_hand():
    """The labelled face of a 100 x 100 chip padded by PAD = 50 (its centre at 100, 100): nearest the centre among
    boxes at least 0.3 of the width; when none is, a box at least 0.15 wide over the centre (a turned face)."""
    from agescan.eval.run import PAD, central_index

    assert PAD == 50
    big_off, big_near, small_centred, small_off = (10, 10, 50, 50), (70, 70, 120, 130), (90, 80, 110, 120), \
        (10, 90, 30, 110)
    assert central_index([big_off, big_near, small_centred], 100, 100) == 1  # wide ones win, the nearer of them
    assert central_index([big_off, small_centred], 100, 100) == 0  # a wide one wins over a narrow centred one
    assert central_index([small_off, small_centred], 100, 100) == 1  # none wide: the narrow box over the centre
    assert central_index([small_off], 100, 100) is None  # narrow and off-centre: a background face
    assert central_index([(95, 95, 105, 105)], 100, 100) is None  # over the centre but under 0.15 wide
    assert central_index([], 100, 100) is None


#: fairface270 faces the default detector finds with a box under 0.3 of the crop's width (a boy in three-quarter
#: view, a girl in full profile; both 3-9) and one frontal adult in a loose headscarf crop (70+).
NARROW = ("images/fairface_0277.jpg", "images/fairface_0333.jpg", "images/fairface_0409.jpg")


def test_turned_children_count_as_found():
    """Evaluation takes the detector's narrow, centred box of a turned face as the labelled face (it used to score
    these faces as misses although the detector found them)."""
    from agescan.detect import DEFAULT_DETECTOR, create_detector
    from agescan.eval.run import central_face, pad_chip
    from agescan.io import read_image

    fairface_rows()  # skips without the data
    det = create_detector(DEFAULT_DETECTOR, threads=1)
    for p in NARROW:
        img = read_image(FAIRFACE / p)
        h, w = img.shape[:2]
        face = central_face(det.detect(pad_chip(img)), w, h)
        assert face is not None, p
        assert 0.15 * w <= face.box.width < 0.3 * w, (p, face.box)
