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
