"""Metrics as the papers define them, on hand-computed cases."""

from __future__ import annotations

import numpy as np

from agescan.eval.metrics import age_metrics, binary, group_accuracy


def test_group_accuracy_is_mean_per_group_recall():
    true = np.array([1, 2, 7, 12, 16, 20, 21])
    pred = np.array([1, 9, 7, 12, 18, 20, 30])
    # groups: 0-5: 1/2, 6-10: 1/1, 11-15: 1/1, 16-17: 0/1, 18-25: 1/2
    assert np.isclose(group_accuracy(true, pred), np.mean([0.5, 1, 1, 0, 0.5]))


def test_group_boundaries_floor_fractional_ages():
    assert group_accuracy(np.array([17]), np.array([17.9])) == 1.0
    assert group_accuracy(np.array([17]), np.array([18.0])) == 0.0


def test_binary_counts():
    r = binary(np.array([True, True, False, False]), np.array([True, False, True, False]))
    assert (r["tp"], r["fp"], r["fn"]) == (1, 1, 1)
    assert r["precision"] == 0.5 and r["recall"] == 0.5


def test_age_metrics_one_hot():
    probs = np.zeros((3, 101))
    probs[0, 10] = probs[1, 30] = probs[2, 5] = 1
    m = age_metrics(np.array([12, 30, 5]), probs)
    assert np.isclose(m["mae"], 2 / 3) and np.isclose(m["mae_0_25"], 1.0)
    assert m["minor_by_point_age"]["recall"] == 1.0
    assert m["mae_by_band"]["26-40"] == {"n": 1, "mae": 0.0}


def test_impv_matches_the_papers_table_2():
    from agescan.eval.metrics import impv

    assert abs(impv(5.37, 4.40) - 17.99) < 0.1  # Fine-tune Org., MORPH, 200 -> 400 images per age
    assert abs(impv(6.57, 5.71) - 13.13) < 0.1
    assert impv(4.0, 4.0) == 0.0


def test_adience_groups_and_life_stages():
    from agescan.eval.metrics import ADIENCE_GROUPS, LIFE_STAGES, nearest_group

    assert nearest_group(np.array([0, 2, 3.4, 7, 13, 14, 33, 70]), ADIENCE_GROUPS).tolist() == [0, 0, 0, 1, 2, 3, 4, 7]
    assert nearest_group(np.array([12.9, 13, 17.9, 18]), LIFE_STAGES).tolist() == [0, 1, 1, 2]


def test_threshold_for_1pct_missed_minors():
    from agescan.eval.metrics import threshold_for_miss_rate

    p = np.linspace(0.01, 1.0, 100)
    t = threshold_for_miss_rate(p, np.ones(100, bool), 0.01)
    assert (p < t).sum() <= 1 and (p < t).sum() == 1


def test_full_metric_set_on_distributions():
    rng = np.random.default_rng(0)
    true = rng.integers(1, 80, 400)
    probs = np.zeros((400, 101))
    probs[np.arange(400), np.clip(true + rng.integers(-3, 4, 400), 0, 100)] = 1
    m = age_metrics(true, probs, minor_threshold=0.5)
    lo, hi = m["mae_ci95"]
    assert lo <= m["mae"] <= hi and m["cs"]["3"] == 1.0
    assert 0.8 < m["adience_1off"] <= 1 and m["child_teen_adult_accuracy"] > 0.8
    assert sum(map(sum, m["child_teen_adult_confusion"])) == 400
    assert m["challenge25_teens_under_25"] == 1.0
    assert m["at_minor_threshold"]["recall"] > 0.9


def test_recall_at_precision_sweeps_thresholds_and_respects_ties():
    from agescan.eval.metrics import recall_at_precision

    p = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    minor = np.array([True, True, False, True, True, False])
    r = recall_at_precision(p, minor, 0.75)  # at 0.5: 4 tp, 1 fp = 80%; at 0.4 the last adult drops it to 66.7%
    assert r == {"recall": 1.0, "precision": 0.8, "threshold": 0.5}
    assert recall_at_precision(p, minor, 0.95) == {"recall": 0.5, "precision": 1.0, "threshold": 0.8}
    tied = recall_at_precision(np.array([0.9, 0.5, 0.5]), np.array([True, True, False]), 0.95)
    assert tied["recall"] == 0.5  # the minor at 0.5 cannot be taken without the adult at 0.5
    assert np.isnan(recall_at_precision(p, np.zeros(6, bool))["recall"])
