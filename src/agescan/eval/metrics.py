"""Age-estimation metrics as the papers define them (pure NumPy)."""

from __future__ import annotations

import numpy as np

from agescan import decisions as D

BANDS = ((0, 5), (6, 10), (11, 15), (16, 17), (18, 25), (26, 40), (41, 60), (61, 200))
#: The five groups of Chaves et al. (ages 0-25).
PAPER_GROUPS = ((0, 5), (6, 10), (11, 15), (16, 17), (18, 25))
#: The eight Adience groups (Ye et al. report exact and 1-off accuracy over them).
ADIENCE_GROUPS = ((0, 2), (4, 6), (8, 12), (15, 20), (25, 32), (38, 43), (48, 53), (60, 100))
#: Child / teen / adult with the legal line at 18 (0-12 / 13-17 / 18+): agescan's own life stages.
LIFE_STAGES = ((0, 12), (13, 17), (18, 200))
#: The 3-class study of König's thesis (ch. "3-class age groups", Table 6): Adience's eight groups merged into
#: 0-12 (0-2, 4-6, 8-12), 15-20 and 25-100 (25-32 ... 60-100). Adience has no labels between its groups; a
#: continuous age is first put in its nearest Adience group (:func:`nearest_group`, as ``adience_exact``
#: does: floor, the younger group on a tie, so 13 -> 0-12, 14 and 21-22 -> 15-20, 23-24 -> 25-100), then merged.
THESIS_3CLASS = ((0, 12), (15, 20), (25, 100))
#: Which :data:`THESIS_3CLASS` class each :data:`ADIENCE_GROUPS` group merges into.
ADIENCE_TO_3CLASS = (0, 0, 0, 1, 2, 2, 2, 2)


def _mean_or_nan(values: np.ndarray) -> float:
    """The mean, or NaN (as for an empty age band) when no face was found, without NumPy's empty-slice warning."""
    return float(values.mean()) if values.size else float("nan")


def thesis_3class(ages: np.ndarray) -> np.ndarray:
    """Class 0, 1 or 2 of :data:`THESIS_3CLASS` for each age, by way of its nearest Adience group."""
    return np.asarray(ADIENCE_TO_3CLASS)[nearest_group(ages, ADIENCE_GROUPS)]


def r2_score(true: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination 1 - SS_res / SS_tot (the thesis' R^2; negative when worse than predicting the
    mean; NaN when every true age is the same)."""
    t = np.asarray(true, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    ss_tot = float(((t - t.mean()) ** 2).sum()) if len(t) else 0.0
    return 1.0 - float(((t - p) ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan")


def impv(a: float, b: float) -> float:
    """The paper's improvement of run B over baseline A, in percent: (A - B) / A x 100.

    Chaves et al.'s Eq. 2 prints an extra division by A, but every value of their Tables 2 and 3 follows
    (A - B) / A x 100 (e.g. MAE 5.37 -> 4.40 gives 17.99 in Table 2, 18.06 here up to their rounding).
    Positive for MAE means B is better; for accuracy, negative means B is better.
    """
    return (a - b) / a * 100.0


def nearest_group(ages: np.ndarray, groups) -> np.ndarray:
    """Index of the group each age falls in, or of the nearest group for ages between groups.

    Ages are floored to whole years first (17.9 is 17), as the paper's groups are whole years; a tie
    between two groups goes to the younger one.
    """
    a = np.floor(np.asarray(ages, dtype=np.float64))[:, None]
    lo = np.array([g[0] for g in groups], dtype=np.float64)[None]
    hi = np.array([g[1] for g in groups], dtype=np.float64)[None]
    dist = np.maximum(lo - a, 0) + np.maximum(a - hi, 0)
    return np.argmin(dist, axis=1)


def bootstrap_ci(err: np.ndarray, n: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``err``."""
    if len(err) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = err[rng.integers(0, len(err), (n, len(err)))].mean(1)
    tail = (1 - level) / 2 * 100
    return (float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail)))


def threshold_for_miss_rate(p_minor: np.ndarray, minor: np.ndarray, max_miss: float = 0.01) -> float:
    """The largest P(minor) threshold that lets at most ``max_miss`` of the minors pass as adults."""
    pm = np.sort(np.asarray(p_minor)[minor])
    if len(pm) == 0:
        return float("nan")
    k = int(np.floor(max_miss * len(pm)))  # this many minors may fall below the threshold
    return float(pm[k])


def recall_at_precision(p_minor: np.ndarray, minor: np.ndarray, min_precision: float = 0.95) -> dict:
    """The highest minor recall any P(minor) threshold reaches while precision stays >= ``min_precision``
    (the accuracy issue's "recall >= 97% at precision >= 95%"), with that threshold; an oracle on this split."""
    p = np.asarray(p_minor, dtype=np.float64)
    minor = np.asarray(minor, dtype=bool)
    n_pos = int(minor.sum())
    if n_pos == 0:
        return {"recall": float("nan"), "precision": float("nan"), "threshold": float("nan")}
    order = np.argsort(-p, kind="stable")
    ps, hits = p[order], minor[order]
    tp, fp = np.cumsum(hits), np.cumsum(~hits)
    last_of_tie = np.r_[ps[1:] != ps[:-1], True]  # a threshold keeps every face with the same score
    prec = tp / (tp + fp)
    ok = last_of_tie & (prec >= min_precision)
    if not ok.any():
        return {"recall": 0.0, "precision": float("nan"), "threshold": float("nan")}
    i = int(np.flatnonzero(ok)[np.argmax(tp[ok])])
    return {"recall": float(tp[i] / n_pos), "precision": float(prec[i]), "threshold": float(ps[i])}


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


def age_metrics(true: np.ndarray, probs: np.ndarray, min_age: int = 0, level: float = 0.9,
                minor_threshold: float | None = None, *, pred: np.ndarray | None = None,
                decider: D.Decider | None = None, found: np.ndarray | None = None, minor_age: int = 18) -> dict:
    """Every metric of the papers and of the accuracy issue, from true ages and the distributions as reported.

    Point age, interval and P(minor) follow :mod:`agescan.decisions`, the rules users get: ``pred`` is the reported
    point age (default: the distributions' means), the interval is ``decider``'s at ``level`` (default: the central
    ``level`` of ``probs``, as for a card without conformal data), P(minor) = P(age < ``minor_age``).
    ``found`` False marks detector misses: their interval covers nothing. ``minor_threshold``: a P(minor) threshold
    chosen elsewhere (on val) to report adults flagged at; the threshold that lets at most 1% of *this* split's
    minors pass is always reported too (an oracle).
    """
    true = np.asarray(true, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64).reshape(len(true), -1)
    pred = D.point_age(probs, min_age) if pred is None else np.asarray(pred, dtype=np.float64)
    decider = decider or D.Decider(min_age)
    err = np.abs(pred - true)
    young = true <= 25
    lo, hi = decider.interval(probs, pred, level)
    covered = (true >= lo) & (true <= hi)
    if found is not None:
        covered &= np.asarray(found, dtype=bool)
    p_minor = D.p_below(probs, minor_age, min_age)
    minor = true < minor_age
    out = {
        "n": int(len(true)),
        "mae": float(err.mean()),
        "median_ae": float(np.median(err)),
        "r2": r2_score(true, pred),
        "mae_0_25": float(err[young].mean()) if young.any() else float("nan"),
        "n_0_25": int(young.sum()),
        "group_accuracy_0_25": group_accuracy(true[young], pred[young]),
        "cs5": float((err <= 5).mean()),
        "interval_level": level,
        "interval_coverage": float(covered.mean()),
        "interval_mean_width": _mean_or_nan((hi - lo)[found if found is not None else slice(None)]),
        "minor_age": minor_age,
        "minor_by_point_age": binary(pred < minor_age, minor),
        "minor_by_p_minor_0.5": binary(p_minor >= 0.5, minor),
        "mae_by_band": {},
        "ae_quartiles": [float(q) for q in np.percentile(err, [25, 50, 75])],
        "mae_ci95": bootstrap_ci(err),
        "mae_0_25_ci95": bootstrap_ci(err[young]),
        "cs": {str(k): float((err <= k).mean()) for k in (1, 2, 3, 5, 10)},
    }
    t_true, t_pred = nearest_group(true, ADIENCE_GROUPS), nearest_group(pred, ADIENCE_GROUPS)
    out["adience_exact"] = float((t_true == t_pred).mean())
    out["adience_1off"] = float((np.abs(t_true - t_pred) <= 1).mean())
    s_true, s_pred = nearest_group(true, LIFE_STAGES), nearest_group(pred, LIFE_STAGES)
    out["child_teen_adult_accuracy"] = float((s_true == s_pred).mean())
    out["child_teen_adult_confusion"] = np.bincount(s_true * 3 + s_pred, minlength=9).reshape(3, 3).tolist()
    k_true, k_pred = thesis_3class(true), thesis_3class(pred)
    out["thesis_3class_accuracy"] = float((k_true == k_pred).mean())
    out["thesis_3class_confusion"] = np.bincount(k_true * 3 + k_pred, minlength=9).reshape(3, 3).tolist()
    teen = (true >= 13) & (true <= 17)
    out["challenge25_teens_under_25"] = float((pred[teen] < 25).mean()) if teen.any() else float("nan")
    adult = ~minor

    def adults_flagged(t: float) -> float:
        return float((p_minor[adult] >= t).mean()) if adult.any() else float("nan")

    out["minor_recall_at_precision_95"] = recall_at_precision(p_minor, minor, 0.95)
    t1 = threshold_for_miss_rate(p_minor, minor, 0.01)
    out["oracle_threshold_1pct_minors_missed"] = {"threshold": t1, "adults_flagged": adults_flagged(t1)}
    if minor_threshold is not None:
        out["at_minor_threshold"] = {"threshold": float(minor_threshold), **binary(p_minor >= minor_threshold, minor),
                                     "adults_flagged": adults_flagged(minor_threshold)}
    for a, b in BANDS:
        m = (true >= a) & (true <= b)
        if m.any():
            out["mae_by_band"][f"{a}-{b if b < 200 else '+'}"] = {"n": int(m.sum()), "mae": float(err[m].mean())}
    return out


def ece(p: np.ndarray, y: np.ndarray, bins: int = 10) -> tuple[float, list[dict]]:
    """Expected calibration error of probabilities ``p`` for outcomes ``y`` over ``bins`` equal-width bins, and the
    reliability diagram's bins (n, mean predicted probability, observed frequency)."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=bool)
    idx = np.minimum((p * bins).astype(np.int64), bins - 1)
    total, diagram = 0.0, []
    for b in range(bins):
        m = idx == b
        if not m.any():
            continue
        conf, freq = float(p[m].mean()), float(y[m].mean())
        total += m.mean() * abs(conf - freq)
        diagram.append({"bin": [b / bins, (b + 1) / bins], "n": int(m.sum()), "p": conf, "observed": freq})
    return float(total), diagram


def calibration_metrics(true: np.ndarray, probs: np.ndarray, pred: np.ndarray, found: np.ndarray,
                        decider: D.Decider, min_age: int = 0, thresholds=(13, 16, 18),
                        levels=(0.8, 0.9, 0.95)) -> dict:
    """How far the reported probabilities and intervals can be trusted.

    ``ece``: per t, the ECE (10 equal-width bins) and reliability diagram of P(age < t) on the faces found, with the
    Brier score. ``coverage``: per level, the intervals ``decider`` reports (conformal when the card has it) --
    overall over every face (a miss covers nothing), then per band of *predicted* age over the faces found (what
    Mondrian conformal guarantees) and per band of *true* age over every face (misses count as not covered), each
    with its count, coverage and mean width.
    """
    true = np.asarray(true, dtype=np.float64)
    found = np.asarray(found, dtype=bool)
    out: dict = {"ece": {}, "coverage": {}, "faces_found": int(found.sum()), "faces": int(len(true)),
                 "miss_rule": "a face the detector misses has no interval: it counts as not covered over all faces "
                              "and per true-age band; per predicted band only found faces exist"}
    for t in thresholds:
        p = D.p_below(probs[found], t, min_age)
        y = true[found] < t
        e, diagram = ece(p, y)
        out["ece"][str(t)] = {"ece": e, "brier": float(np.mean((p - y) ** 2)), "n": int(found.sum()),
                              "positives": int(y.sum()), "reliability": diagram}
    bands = decider.calibration.conformal.bands if decider.calibration.conformal else D.CONFORMAL_BANDS
    for level in levels:
        lo, hi = decider.interval(probs, np.nan_to_num(pred, nan=0.0), level)
        cov = (true >= lo) & (true <= hi) & found
        width = hi - lo
        rec: dict = {"coverage": float(cov.mean()), "coverage_found": float(cov[found].mean()) if found.any() else
                     float("nan"), "mean_width": float(width[found].mean()) if found.any() else float("nan"),
                     "by_predicted_band": {}, "by_true_band": {}}
        pb = D.band_index(np.nan_to_num(pred, nan=0.0), bands)
        tb = D.band_index(true, bands)
        for i, (a, b) in enumerate(bands):
            name = f"{a}-{b}" if b < 200 else f"{a}+"
            m = found & (pb == i)
            if m.any():
                rec["by_predicted_band"][name] = {"n": int(m.sum()), "coverage": float(cov[m].mean()),
                                                  "mean_width": float(width[m].mean())}
            m = tb == i
            if m.any():
                f = m & found
                rec["by_true_band"][name] = {"n": int(m.sum()), "coverage": float(cov[m].mean()),
                                             "mean_width": float(width[f].mean()) if f.any() else float("nan")}
        out["coverage"][str(level)] = rec
    return out


def bin_index(ages: np.ndarray, bins) -> np.ndarray:
    """Index of the bin (inclusive whole-year bounds) each age falls in: :func:`nearest_group` over ``bins``.
    An age between two bins (19.5 floors to 19) goes to the bin it floors into, or the nearer one."""
    return nearest_group(ages, bins)


def binned_metrics(low: np.ndarray, high: np.ndarray, probs: np.ndarray, min_age: int = 0,
                   flag_threshold: float = 0.5, minor_age: int = 18) -> dict:
    """Metrics for age bins (FairFace's ``0-2``, ``3-9``, ... ``70+``) from predicted distributions over whole
    years from ``min_age``: :func:`binned_point_metrics` of their means and of P(age < ``minor_age``)."""
    return binned_point_metrics(low, high, D.point_age(probs, min_age), D.p_below(probs, minor_age, min_age),
                                flag_threshold=flag_threshold, minor_age=minor_age)


def binned_point_metrics(low: np.ndarray, high: np.ndarray, pred: np.ndarray, p_minor: np.ndarray | None = None,
                         flag_threshold: float = 0.5, minor_age: int = 18,
                         flagged: np.ndarray | None = None) -> dict:
    """Metrics for age bins from point ages (and P(minor) when the tool gives one; NaN where it does not).

    Args:
        low, high: inclusive bounds of each face's true bin (years).
        pred: point ages.
        p_minor: P(age < ``minor_age``) per face, or None (a tool that gives only a point age).
        flag_threshold: a P(minor) threshold: ``p_minor_recall`` (children) and ``p_minor_over_threshold``
            (adults) are the shares with P(minor) at or above it; it is also the flag when ``flagged`` is not given.
        minor_age: ages below this are minors.
        flagged: the flag each face got from the pipeline (``FaceResult.flagged``: the card's threshold *and* the
            refer interval, :mod:`agescan.decisions`; a miss is never flagged). When given, every "flagged" share
            is of these flags (``flag_rule`` says which rule was used).

    The bins are the distinct (low, high) pairs of the set; a point age is floored and put in the bin it falls
    in (between bins: the nearest, ties to the younger). Returned: ``bin_accuracy`` (share in the true bin),
    ``bin_1off``, ``mae_to_bin`` (years from the point age to the true bin ``[low, high + 1)``, 0 inside it),
    ``per_bin`` (n, accuracy, median point age, share with point age under ``minor_age``, share flagged, mean
    P(minor)), the ``confusion`` matrix (rows true, columns predicted, in ``bins`` order), and for *children*
    (bins wholly under ``minor_age``) and *adults* (bins wholly at or over it): share with point age under
    ``minor_age``, share flagged, share with P(minor) at or over ``flag_threshold`` (children: also at 0.5).
    Bins straddling ``minor_age`` (FairFace's 10-19) are in ``per_bin`` only.
    """
    low = np.asarray(low, dtype=np.float64)
    high = np.asarray(high, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    has_p = p_minor is not None
    p_minor = np.asarray(p_minor, dtype=np.float64) if has_p else np.full(len(pred), np.nan)
    bins = sorted(set(zip(low.tolist(), high.tolist())))
    names = [f"{lo:g}+" if hi >= 100 else f"{lo:g}-{hi:g}" for lo, hi in bins]
    t = np.array([bins.index(b) for b in zip(low.tolist(), high.tolist())], dtype=np.int64)
    p = bin_index(pred, bins)
    under = pred < minor_age
    over = (p_minor >= flag_threshold).astype(np.float64)
    flagged_half = (p_minor >= 0.5).astype(np.float64)
    if not has_p:
        over[:] = flagged_half[:] = np.nan
    if flagged is not None:
        flagged = np.asarray(flagged, dtype=bool).astype(np.float64)
        rule = "the pipeline's flag (FaceResult.flagged: threshold and refer interval; a miss is never flagged)"
    else:
        flagged = over
        rule = f"P(minor) >= {flag_threshold:g}" if has_p else "none (the tool gives no P(minor))"
    dist = np.maximum(low - pred, 0) + np.maximum(pred - (high + 1), 0)
    per_bin = {}
    for i, name in enumerate(names):
        m = t == i
        per_bin[name] = {"n": int(m.sum()), "accuracy": float((p[m] == i).mean()),
                         "median_age": float(np.median(pred[m])), "under_minor_age": float(under[m].mean()),
                         "flagged": float(flagged[m].mean()), "mean_p_minor": float(p_minor[m].mean())}
    child, adult = high < minor_age, low >= minor_age

    def share(x: np.ndarray, m: np.ndarray) -> float:
        return float(x[m].mean()) if m.any() else float("nan")

    return {
        "n": int(len(low)), "bins": names, "minor_age": int(minor_age), "flag_threshold": float(flag_threshold),
        "flag_rule": rule,
        "bin_accuracy": float((p == t).mean()) if len(t) else float("nan"),
        "bin_1off": float((np.abs(p - t) <= 1).mean()) if len(t) else float("nan"),
        "mae_to_bin": float(dist.mean()) if len(t) else float("nan"),
        "per_bin": per_bin,
        "confusion": np.bincount(t * len(bins) + p, minlength=len(bins) ** 2).reshape(len(bins), -1).tolist(),
        "children": {"n": int(child.sum()), "bins": [n for n, (lo, hi) in zip(names, bins) if hi < minor_age],
                     "under_minor_age": share(under, child), "flagged": share(flagged, child),
                     "p_minor_recall": share(over, child), "p_minor_recall_0.5": share(flagged_half, child)},
        "adults": {"n": int(adult.sum()), "under_minor_age": share(under, adult), "flagged": share(flagged, adult),
                   "p_minor_over_threshold": share(over, adult)},
    }
