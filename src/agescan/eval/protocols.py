"""Evaluation protocols: the fixed split, k-fold (by row or by subject), leave-one-subject-out and
leave-one-group-out (pure NumPy).

A protocol is a partition of the rows into folds. Held-out *training* runs one model per fold
(``agescan train cv`` runs a whole protocol; ``agescan train fit --fold I/K [--group-column subject]`` or
``--holdout COLUMN=VALUE`` one fold). ``agescan evaluate --slices kfold|logo`` only *slices one model's
predictions* into the same partition (the spread across subsets; no fold is held out of that model's training).

Subject-disjoint partitions (:func:`grouped_kfold_assign`, :func:`lopo_assign`) put every image of a subject in
one fold, as the papers' protocols do (Adience's five subject-disjoint folds, FG-NET's leave-one-person-out): a
random row partition lets the same person sit on both sides and flatters the model.
"""

from __future__ import annotations

import numpy as np

from agescan.eval.metrics import age_metrics

PROTOCOLS = ("split", "kfold", "logo")
#: The per-fold numbers a protocol summary keeps (all from :func:`age_metrics`).
FOLD_KEYS = ("mae", "r2", "thesis_3class_accuracy", "mae_0_25", "group_accuracy_0_25", "cs5", "adience_exact", "child_teen_adult_accuracy",
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


def grouped_kfold_assign(groups, k: int, seed: int = 0) -> np.ndarray:
    """Fold index (0..k-1) of each row such that all rows of one group (subject) share a fold.

    Subjects are shuffled with ``seed`` and dealt, largest first, to the fold with the fewest rows so far
    (folds of near-equal size in images). Rows with an empty group id are an error: they could land on both
    sides. Deterministic for (groups, k, seed).
    """
    g = np.asarray([str(v) for v in groups])
    if (g == "").any():
        raise ValueError(f"subject-disjoint k-fold: {int((g == '').sum())} row(s) have no subject id. Give every row "
                         "one (or use the row k-fold).")
    names, inverse, counts = np.unique(g, return_inverse=True, return_counts=True)
    if k < 2 or k > len(names):
        raise ValueError(f"subject-disjoint k-fold needs 2 <= k <= number of subjects ({len(names)}). Got k={k}.")
    order = np.random.default_rng(seed).permutation(len(names))
    order = order[np.argsort(-counts[order], kind="stable")]  # largest first, ties in seeded order
    load = np.zeros(k, dtype=np.int64)
    fold_of = np.empty(len(names), dtype=np.int64)
    for s in order:
        f = int(np.argmin(load))
        fold_of[s] = f
        load[f] += counts[s]
    return fold_of[inverse]


def lopo_assign(groups) -> tuple[np.ndarray, list[str]]:
    """Leave-one-subject(person)-out: one fold per subject (the thesis' FG-NET protocol), and the subject ids."""
    g = [str(v) for v in groups]
    if "" in g:
        raise ValueError(f"leave-one-subject-out: {g.count('')} row(s) have no subject id. Give every row one.")
    return group_assign(g)


def assign_folds(protocol: str, n: int, *, k: int = 5, seed: int = 0, groups=None) -> tuple[np.ndarray, list]:
    """Fold index per row and fold names for a held-out training protocol (:data:`TRAIN_PROTOCOLS`)."""
    if protocol == "kfold":
        if groups is None:
            raise ValueError("subject-disjoint k-fold needs a subject column (or use protocol 'random-kfold').")
        return grouped_kfold_assign(groups, k, seed), list(range(k))
    if protocol == "random-kfold":
        return kfold_assign(n, k, seed), list(range(k))
    if protocol == "lopo":
        if groups is None:
            raise ValueError("leave-one-subject-out needs a subject column.")
        return lopo_assign(groups)
    if protocol == "logo":
        if groups is None:
            raise ValueError("leave-one-group-out needs a group column.")
        return group_assign(groups)
    raise ValueError(f"The 'protocol' parameter must be one of {TRAIN_PROTOCOLS}. Got {protocol!r}.")


#: Held-out training protocols of ``agescan train cv``: subject-disjoint k-fold, row k-fold (people may sit on
#: both sides: for comparison only), leave-one-subject-out, leave-one-group-out.
TRAIN_PROTOCOLS = ("kfold", "random-kfold", "lopo", "logo")


def group_assign(values) -> tuple[np.ndarray, list[str]]:
    """Fold index of each row for leave-one-group-out (one fold per distinct value, sorted), and the values."""
    values = np.asarray([str(v) for v in values])
    names = sorted(set(values.tolist()) - {""})
    if len(names) < 2:
        raise ValueError(f"leave-one-group-out needs at least two groups. Got {names}.")
    index = {v: i for i, v in enumerate(names)}
    return np.array([index.get(v, -1) for v in values], dtype=np.int64), names


def training_split(folds: np.ndarray, test_fold: int, seed: int = 0, val_share: float = 0.15,
                   groups=None) -> np.ndarray:
    """'train' / 'val' / 'test' per row for training on one fold: the fold is test, a seeded ``val_share`` of
    the other rows is val (for checkpoint selection), the rest train. With ``groups`` (subject ids) val takes
    whole subjects, so no person is in both train and val either. Rows with fold -1 (no group value)
    are left out (``''``)."""
    out = np.full(len(folds), "", dtype="<U5")
    rest = (folds >= 0) & (folds != test_fold)
    out[folds == test_fold] = "test"
    out[rest] = "train"
    idx = np.flatnonzero(rest)
    rng = np.random.default_rng(seed + 1)
    if groups is None:
        pick = rng.random(len(idx)) < val_share
    else:
        g = np.asarray([str(v) for v in groups])[idx]
        names, inverse = np.unique(g, return_inverse=True)
        pick = (rng.random(len(names)) < val_share)[inverse]
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
