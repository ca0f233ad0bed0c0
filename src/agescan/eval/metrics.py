"""Age-estimation metrics as the papers define them (pure NumPy)."""

from __future__ import annotations

import numpy as np

BANDS = ((0, 5), (6, 10), (11, 15), (16, 17), (18, 25), (26, 40), (41, 60), (61, 200))
#: The five groups of Chaves et al. (ages 0-25).
PAPER_GROUPS = ((0, 5), (6, 10), (11, 15), (16, 17), (18, 25))


def _group_index(ages: np.ndarray, groups=PAPER_GROUPS) -> np.ndarray:
    a = np.floor(np.asarray(ages, dtype=np.float64))
    idx = np.full(a.shape, -1, dtype=np.int64)
    for i, (lo, hi) in enumerate(groups):
        idx[(a >= lo) & (a <= hi)] = i
    return idx


def group_accuracy(true: np.ndarray, pred: np.ndarray, groups=PAPER_GROUPS) -> float:
    """Mean per-group recall over ``groups`` for samples whose true age is in a group (paper's Acc)."""
    t, p = _group_index(true, groups), _group_index(np.clip(pred, 0, None), groups)
    recalls = [float((p[t == g] == g).mean()) for g in range(len(groups)) if (t == g).any()]
    return float(np.mean(recalls)) if recalls else float("nan")


def binary(flag_pred: np.ndarray, flag_true: np.ndarray) -> dict:
    tp = int((flag_pred & flag_true).sum())
    fp = int((flag_pred & ~flag_true).sum())
    fn = int((~flag_pred & flag_true).sum())
    prec = tp / (tp + fp) if tp + fp else float("nan")
    rec = tp / (tp + fn) if tp + fn else float("nan")
    f2 = 5 * prec * rec / (4 * prec + rec) if tp else 0.0
    return {"precision": prec, "recall": rec, "f2": f2, "tp": tp, "fp": fp, "fn": fn}


def age_metrics(true: np.ndarray, probs: np.ndarray, min_age: int = 0, level: float = 0.9) -> dict:
    """MAE overall, for ages 0-25 and per band; 5-group accuracy; minors; interval coverage."""
    true = np.asarray(true, dtype=np.float64)
    ages = np.arange(min_age, min_age + probs.shape[1])
    pred = probs @ ages
    err = np.abs(pred - true)
    young = true <= 25
    cdf = np.cumsum(probs, axis=1)
    tail = (1 - level) / 2
    lo = ages[np.argmax(cdf >= tail, axis=1)]
    hi = ages[np.argmax(cdf >= 1 - tail, axis=1)]
    p_minor = probs[:, ages < 18].sum(1)
    minor = true < 18
    out = {
        "n": int(len(true)),
        "mae": float(err.mean()),
        "median_ae": float(np.median(err)),
        "mae_0_25": float(err[young].mean()) if young.any() else float("nan"),
        "n_0_25": int(young.sum()),
        "group_accuracy_0_25": group_accuracy(true[young], pred[young]),
        "cs5": float((err <= 5).mean()),
        "interval_coverage": float(((true >= lo) & (true <= hi)).mean()),
        "interval_mean_width": float((hi - lo).mean()),
        "minor_by_point_age": binary(pred < 18, minor),
        "minor_by_p_minor_0.5": binary(p_minor >= 0.5, minor),
        "mae_by_band": {},
    }
    for a, b in BANDS:
        m = (true >= a) & (true <= b)
        if m.any():
            out["mae_by_band"][f"{a}-{b if b < 200 else '+'}"] = {"n": int(m.sum()), "mae": float(err[m].mean())}
    return out
