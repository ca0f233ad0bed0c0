"""Evaluation protocols: the fixed split, k-fold and leave-one-group-out (pure NumPy).

A protocol is a partition of the rows into folds. The same partition is used to *train* per fold
(``agescan train fit --fold I/K`` or ``--holdout COLUMN=VALUE``) and to *score* a model per fold
(``agescan evaluate --protocol kfold|logo``): each fold's metrics, then their mean and standard deviation
across folds (the spread a single fixed split hides).
"""

from __future__ import annotations

import numpy as np

from agescan.eval.metrics import age_metrics

PROTOCOLS = ("split", "kfold", "logo")
#: The per-fold numbers a protocol summary keeps (all from :func:`age_metrics`).
FOLD_KEYS = ("mae", "mae_0_25", "group_accuracy_0_25", "cs5", "adience_exact", "child_teen_adult_accuracy",
             "challenge25_teens_under_25", "minor_recall", "minor_precision")


def kfold_assign(n: int, k: int, seed: int = 0) -> np.ndarray:
    """Fold index (0..k-1) of each of ``n`` rows: a seeded random partition into k folds of near-equal size.

    Deterministic for (n, k, seed), so training fold I and scoring fold I see the same rows.
    """
    if k < 2 or k > n:
        raise ValueError(f"k-fold needs 2 <= k <= number of rows ({n}). Got k={k}.")
    perm = np.random.default_rng(seed).permutation(n)
    folds = np.empty(n, dtype=np.int64)
    folds[perm] = np.arange(n) % k
    return folds


def group_assign(values) -> tuple[np.ndarray, list[str]]:
    """Fold index of each row for leave-one-group-out (one fold per distinct value, sorted), and the values."""
    values = np.asarray([str(v) for v in values])
    names = sorted(set(values.tolist()) - {""})
    if len(names) < 2:
        raise ValueError(f"leave-one-group-out needs at least two groups. Got {names}.")
    index = {v: i for i, v in enumerate(names)}
    return np.array([index.get(v, -1) for v in values], dtype=np.int64), names


def training_split(folds: np.ndarray, test_fold: int, seed: int = 0, val_share: float = 0.15) -> np.ndarray:
    """'train' / 'val' / 'test' per row for training on one fold: the fold is test, a seeded ``val_share`` of
    the other rows is val (for checkpoint selection), the rest train. Rows with fold -1 (no group value)
    are left out (``''``)."""
    out = np.full(len(folds), "", dtype="<U5")
    rest = (folds >= 0) & (folds != test_fold)
    out[folds == test_fold] = "test"
    out[rest] = "train"
    idx = np.flatnonzero(rest)
    pick = np.random.default_rng(seed + 1).random(len(idx)) < val_share
    out[idx[pick]] = "val"
    return out


def fold_row(rep: dict) -> dict:
    """The :data:`FOLD_KEYS` numbers of one :func:`age_metrics` report (minor ones at P(minor) >= 0.5)."""
    return {key: rep["minor_by_p_minor_0.5"][key.split("_", 1)[1]] if key.startswith("minor_") else rep[key]
            for key in FOLD_KEYS}


def mean_sd(rows: list[dict]) -> tuple[dict, dict]:
    """Mean and standard deviation (ddof=1) of each :data:`FOLD_KEYS` number over ``rows`` (NaN skipped)."""
    mean, sd = {}, {}
    for key in FOLD_KEYS:
        v = np.array([r[key] for r in rows], dtype=np.float64)
        v = v[np.isfinite(v)]
        mean[key] = float(v.mean()) if len(v) else float("nan")
        sd[key] = float(v.std(ddof=1)) if len(v) > 1 else float("nan")
    return mean, sd


def fold_summary(true: np.ndarray, probs: np.ndarray, min_age: int, folds: np.ndarray,
                 names: list[str] | None = None, pred: np.ndarray | None = None) -> dict:
    """Metrics of each fold and their mean and standard deviation (ddof=1) across folds (``pred``: the reported
    point ages, default the distributions' means)."""
    per = []
    for f in sorted(set(folds.tolist()) - {-1}):
        m = folds == f
        rep = age_metrics(true[m], probs[m], min_age, pred=None if pred is None else pred[m])
        per.append({"fold": names[f] if names else int(f), "n": int(m.sum()), "n_0_25": rep["n_0_25"],
                    **fold_row(rep)})
    mean, sd = mean_sd(per)
    return {"folds": per, "mean": mean, "sd": sd}
