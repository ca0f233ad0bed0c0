"""Subject-disjoint protocols on real MORPH labels, dataset presets and column errors, R^2 and the thesis'
3-class metric against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from agescan import ConfigError
from agescan.eval.datasets import DatasetSpec, read_dataset
from agescan.eval.metrics import age_metrics, r2_score, thesis_3class
from agescan.eval.protocols import assign_folds, grouped_kfold_assign, kfold_assign, lopo_assign, training_split
from tests.conftest import MORPH, morph_rows


def _subjects_on_both_sides(subjects: np.ndarray, folds: np.ndarray) -> int:
    return sum(len(set(subjects[folds == f]) & set(subjects[folds != f])) for f in np.unique(folds))


def test_subject_kfold_never_puts_a_person_on_both_sides_of_a_fold_on_real_morph_labels():
    morph_rows()
    ds = DatasetSpec(data=str(MORPH), preset="morph").read(require=("subject",))
    subjects = np.array(ds.subjects())
    assert len(subjects) == 1838 and len(set(subjects)) == 968  # the set as its README describes it
    for k, seed in ((5, 0), (5, 1), (10, 3)):
        folds = grouped_kfold_assign(subjects, k, seed)
        assert _subjects_on_both_sides(subjects, folds) == 0
        sizes = np.bincount(folds)
        assert len(sizes) == k and sizes.max() - sizes.min() <= 4  # near-equal in images, whole subjects
        for f in range(k):  # the training split of each fold: test, train and val are subject-disjoint too
            s = training_split(folds, f, seed, groups=subjects)
            parts = [set(subjects[s == name]) for name in ("train", "val", "test")]
            assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
            assert 0.10 < (s == "val").sum() / (s != "test").sum() < 0.20
    assert np.array_equal(grouped_kfold_assign(subjects, 5, 0), grouped_kfold_assign(subjects, 5, 0))
    assert not np.array_equal(grouped_kfold_assign(subjects, 5, 0), grouped_kfold_assign(subjects, 5, 1))
    # The row k-fold the papers warn about: hundreds of people end up on both sides.
    assert _subjects_on_both_sides(subjects, kfold_assign(len(subjects), 5, 0)) > 300
    lopo, names = lopo_assign(subjects)
    assert len(names) == 968 and _subjects_on_both_sides(subjects, lopo) == 0
    assert all(len(set(subjects[lopo == i])) == 1 for i in range(0, 968, 97))


def test_protocol_assignment_errors_say_what_is_missing():
    with pytest.raises(ValueError, match="no subject id"):
        grouped_kfold_assign(["a", "", "b"], 2)
    with pytest.raises(ValueError, match="number of subjects"):
        grouped_kfold_assign(["a", "a", "b"], 3)
    with pytest.raises(ValueError, match="needs a subject column"):
        assign_folds("kfold", 10)
    with pytest.raises(ValueError, match="'protocol' parameter"):
        assign_folds("bootstrap", 10)


def test_presets_and_missing_columns_are_named(tmp_path):
    (tmp_path / "labels.csv").write_text("path,age,person,sex\na.png,7,p1,F\nb.png,,p2,M\nc.png,40,p2,M\n")
    ds = read_dataset(tmp_path, split="all", subject_column="person", gender_column="sex")
    assert [(r["path"], r["subject"], r["gender"]) for r in ds.rows] == [("a.png", "p1", "F"), ("c.png", "p2", "M")]
    assert ds.unlabelled == 1 and "b.png" in ds.unlabelled_examples[0]  # the row without an age: counted, named
    with pytest.raises(ConfigError, match=r"no column 'subject' for the subject, which this protocol needs"):
        read_dataset(tmp_path, split="all", require=("subject",))
    with pytest.raises(ConfigError, match=r"no column 'id' for the subject \(--subject-column\)"):
        read_dataset(tmp_path, split="all", subject_column="id")
    with pytest.raises(ConfigError, match=r"no column 'subject' for the subject"):
        DatasetSpec(data=str(tmp_path), preset="morph").read()  # MORPH's names, another set's CSV
    spec = DatasetSpec(data=str(tmp_path), preset="morph", subject_column="person", gender_column="sex")
    assert spec.read().rows[1]["subject"] == "p2"
    with pytest.raises(ConfigError, match="'preset' parameter"):
        DatasetSpec(data=str(tmp_path), preset="fgnet").read()
    # DATA may be the CSV itself
    assert len(read_dataset(tmp_path / "labels.csv", split="all").rows) == 2


def test_r2_and_the_thesis_three_classes_against_hand_computed_values():
    true, pred = np.array([10.0, 20.0, 30.0]), np.array([12.0, 18.0, 33.0])
    # SS_res = 4 + 4 + 9 = 17; mean 20, SS_tot = 100 + 0 + 100 = 200
    assert r2_score(true, pred) == pytest.approx(1 - 17 / 200)
    assert r2_score(true, np.full(3, 20.0)) == pytest.approx(0.0)  # predicting the mean
    assert r2_score(true, np.array([30.0, 20.0, 10.0])) == pytest.approx(1 - 800 / 200)  # worse than the mean
    assert np.isnan(r2_score(np.array([5.0, 5.0]), np.array([4.0, 6.0])))
    # 0-12 / 15-20 / 25-100 by way of the nearest Adience group: 13 is nearer 8-12, 14 nearer 15-20,
    # 21 and 22 nearer 15-20, 23 and 24 nearer 25-32; 12.9 floors to 12.
    ages = np.array([0, 12, 12.9, 13, 14, 15, 20, 21, 22, 23, 24, 25, 100])
    assert thesis_3class(ages).tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2]
    t = np.array([5.0, 16.0, 18.0, 40.0, 70.0])
    p_age = np.array([6, 23, 19, 26, 30])  # classes: true 0,1,1,2,2; predicted 0,2,1,2,2
    rep = age_metrics(t, np.eye(101)[p_age], 0)
    assert rep["thesis_3class_accuracy"] == pytest.approx(4 / 5)
    assert rep["thesis_3class_confusion"] == [[1, 0, 0], [0, 1, 1], [0, 0, 2]]
    ss_res = float(((p_age - t) ** 2).sum())
    assert rep["r2"] == pytest.approx(1 - ss_res / float(((t - t.mean()) ** 2).sum()))
    # agescan's own legal-line stages stay as they were: 16 and 18 are teen and adult there
    assert rep["child_teen_adult_confusion"][1] == [0, 0, 1]
