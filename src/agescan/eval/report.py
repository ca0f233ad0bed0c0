"""Evaluation outputs beyond JSON: a Markdown summary and PNG plots (matplotlib, in the train extra)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agescan.eval.metrics import BANDS, PAPER_GROUPS, nearest_group


def markdown(report: dict) -> str:
    """A Markdown table of the headline metrics of one ``evaluate_folder`` report."""
    if "bin_accuracy" in report:
        return binned_markdown(report)
    b = report["minor_by_p_minor_0.5"]
    lo, hi = report["mae_ci95"]
    rows = [
        ("images", report["n"]),
        ("MAE (95% CI)", f"{report['mae']:.2f} ({lo:.2f}-{hi:.2f})"),
        ("MAE ages 0-25", f"{report['mae_0_25']:.2f}"),
        ("R^2", f"{report['r2']:.3f}"),
        ("5-group accuracy (0-25)", f"{report['group_accuracy_0_25']:.1%}"),
        ("CS@5", f"{report['cs']['5']:.1%}"),
        ("Adience exact / 1-off", f"{report['adience_exact']:.1%} / {report['adience_1off']:.1%}"),
        ("child/teen/adult accuracy (0-12 / 13-17 / 18+)", f"{report['child_teen_adult_accuracy']:.1%}"),
        ("thesis 3-class accuracy (0-12 / 15-20 / 25-100, via Adience groups)",
         f"{report['thesis_3class_accuracy']:.1%}"),
        ("under 18, P>=0.5: recall / precision / F2", f"{b['recall']:.1%} / {b['precision']:.1%} / {b['f2']:.3f}"),
        ("under 18: best recall at precision >= 95% (threshold chosen on this split)",
         f"{report['minor_recall_at_precision_95']['recall']:.1%}"),
        ("Challenge-25 (13-17 estimated under 25)", f"{report['challenge25_teens_under_25']:.1%}"),
        ("90% interval coverage", f"{report['interval_coverage']:.1%}"),
        ("faces found by the detector", f"{report['faces_found']} of {report['n']}"),
        ("faces framed from their box (turned past the profile yaw)",
         f"{report.get('faces_framed_from_box', 0)} (yaw beyond ±{report.get('profile_yaw', 90):g} degrees)"),
        ("misses", report["miss_rule"]),
        ("rows or files without an age (left out)", report.get("unlabelled_files", 0)),
    ]
    for key, label in (("found_only", "found faces only"), ("template_fallback", "misses aligned by template")):
        sec = report.get(key) or {}
        if sec:
            rows.append((f"secondary, {label}: n / MAE / MAE 0-25 / minor recall",
                         f"{sec['n']} / {sec['mae']:.2f} / {sec['mae_0_25']:.2f} / {sec['minor_recall']:.1%}"))
    bands = " | ".join(f"{k} {v['mae']:.2f} (n={v['n']})" for k, v in report["mae_by_band"].items())
    text = (f"### {report['model']} on {report['data']} ({report['split']}, {report['condition']}, "
            f"detector {report['detector']}; end to end, misses counted)\n\n"
            "| metric | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
            + f"\n\nMAE by band: {bands}\n")
    if "protocol" in report:
        text += _protocol_table(report["protocol"])
    return text + _impv_table(report) + _warnings(report)


def _num(v, spec: str) -> str:
    """A metric in a table: formatted, or 'n/a' where it was not measured (None)."""
    return "n/a" if v is None else format(v, spec)


def _warnings(report: dict) -> str:
    """The report's warnings as a Markdown list ('' without any)."""
    w = report.get("warnings") or []
    return ("\n**Warnings**\n\n" + "".join(f"- {x}\n" for x in w)) if w else ""


def _impv_table(report: dict) -> str:
    """The ``--compare`` table of a report ('' without one); an undefined Impv is 'n/a' with its note."""
    if "impv" not in report:
        return ""
    c = report["impv"]
    return (f"\nImpv over {c['baseline_model']} (paper's Eq. 2; MAE: positive = better, accuracy: negative = "
            "better)\n\n| metric | baseline | this | Impv % |\n|---|---|---|---|\n"
            + "".join(f"| {k} | {_num(v['baseline'], '.3f')} | {_num(v['this'], '.3f')} | "
                      f"{_num(v['impv'], '.2f') if v['impv'] is not None else 'n/a: ' + v['note']} |\n"
                      for k, v in c["metrics"].items()))


def binned_markdown(report: dict) -> str:
    """A Markdown table of an ``evaluate_folder`` report on a set with age bins (FairFace's layout)."""
    c, a = report["children"], report["adults"]
    thr = report["flag_threshold"]
    rows = [
        ("images", report["n"]),
        (f"{len(report['bins'])}-bin accuracy / 1-off", f"{report['bin_accuracy']:.1%} / {report['bin_1off']:.1%}"),
        ("years from the point age to the true bin (mean)", f"{report['mae_to_bin']:.2f}"),
        (f"children ({', '.join(c['bins'])}; n={c['n']}): point age under {report['minor_age']}",
         f"{c['under_minor_age']:.1%}"),
        (f"children: flagged ({report.get('flag_rule', f'P(minor) >= {thr:g}')})", f"{c.get('flagged', float('nan')):.1%}"),
        (f"children: P(minor) >= {thr:g} / >= 0.5", f"{c['p_minor_recall']:.1%} / {c['p_minor_recall_0.5']:.1%}"),
        (f"adults (n={a['n']}): point age under {report['minor_age']} / flagged / P(minor) >= {thr:g}",
         f"{a['under_minor_age']:.1%} / {a['flagged']:.1%} / {a.get('p_minor_over_threshold', float('nan')):.1%}"),
        ("faces found by the detector", f"{report['faces_found']} of {report['n']}"),
        ("faces framed from their box (turned past the profile yaw)",
         f"{report.get('faces_framed_from_box', 0)} (yaw beyond ±{report.get('profile_yaw', 90):g} degrees)"),
        ("misses", report["miss_rule"]),
        ("rows or files without an age (left out)", report.get("unlabelled_files", 0)),
    ]
    sec = report.get("found_only") or {}
    if sec:
        rows.append(("secondary, found faces only: n / bin accuracy / children under 18",
                     f"{sec['n']} / {sec['bin_accuracy']:.1%} / {sec['children_under_minor_age']:.1%}"))
    per = "| bin | n | accuracy | median point age | under 18 | flagged |\n|---|---|---|---|---|---|\n" + "".join(
        f"| {k} | {v['n']} | {v['accuracy']:.1%} | {v['median_age']:.1f} | {v['under_minor_age']:.1%} | "
        f"{v['flagged']:.1%} |\n" for k, v in report["per_bin"].items())
    return (f"### {report['model']} on {report['data']} ({report['split']}, {report['condition']}, "
            f"detector {report['detector']}; age bins, end to end, misses counted)\n\n"
            "| metric | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows) + "\n\n" + per
            + _impv_table(report) + _warnings(report))


#: Columns of a per-fold table: (key in :data:`agescan.eval.protocols.FOLD_KEYS`, heading).
FOLD_COLUMNS = (("mae", "MAE"), ("r2", "R^2"), ("thesis_3class_accuracy", "3-class"), ("mae_0_25", "MAE 0-25"), ("group_accuracy_0_25", "5-group"), ("cs5", "CS@5"),
                ("challenge25_teens_under_25", "Challenge-25"), ("minor_recall", "minor recall"))


def fold_table(label: str, rows: list[tuple[str, int, dict]], mean: dict, sd: dict) -> str:
    """A Markdown table of per-fold numbers (``rows``: fold name, n, numbers) and their mean ± sd."""
    lines = [f"| {label} | n | " + " | ".join(h for _, h in FOLD_COLUMNS) + " |",
             "|---|---|" + "---|" * len(FOLD_COLUMNS)]
    lines += [f"| {name} | {n} | " + " | ".join(f"{v[k]:.3f}" for k, _ in FOLD_COLUMNS) + " |" for name, n, v in rows]
    lines.append("| mean ± sd | | " + " | ".join(f"{mean[k]:.3f} ± {sd[k]:.3f}" for k, _ in FOLD_COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def _protocol_table(p: dict) -> str:
    title = (f"{p['k']}-fold (seed {p['seed']})" if p["name"] == "kfold" else f"leave-one-{p['group_column']}-out")
    title += " slices of this one model's predictions (no fold was held out of its training)"
    label = "fold" if p["name"] == "kfold" else p["group_column"]
    return f"\n{title}\n\n" + fold_table(label, [(r["fold"], r["n"], r) for r in p["folds"]], p["mean"], p["sd"])


#: The files :func:`plots` writes.
PLOT_FILES = ("predicted_vs_true.png", "mae_by_band.png", "confusion_5groups.png")


def plots(true: np.ndarray, pred: np.ndarray, out_dir: str | Path, title: str = "") -> list[Path]:
    """predicted_vs_true.png, mae_by_band.png and confusion_5groups.png (:data:`PLOT_FILES`); returns their
    paths."""
    import matplotlib

    matplotlib.use("Agg")  # no display; only this module's figures, set before pyplot is imported
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(true, pred, s=3, alpha=0.3)
    top = max(float(true.max()), float(pred.max())) + 2
    ax.plot([0, top], [0, top], "k--", lw=1)
    ax.set(xlabel="true age", ylabel="estimated age", title=f"{title}\npredicted vs true", xlim=(0, top), ylim=(0, top))
    paths.append(out / PLOT_FILES[0])
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)

    err = np.abs(pred - true)
    labels, maes = [], []
    for a, b in BANDS:
        m = (true >= a) & (true <= b)
        if m.any():
            labels.append(f"{a}-{b if b < 200 else '+'}")
            maes.append(float(err[m].mean()))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(labels, maes, color="#4a78b0")
    ax.set(ylabel="MAE (years)", title=f"{title}\nMAE by age band")
    paths.append(out / PLOT_FILES[1])
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)

    young = true <= 25
    groups = PAPER_GROUPS + ((26, 200),)  # estimates above 25 get their own column, as the accuracy counts them
    t, p = nearest_group(true[young], groups), nearest_group(np.clip(pred[young], 0, None), groups)
    cm = np.zeros((5, 6))
    np.add.at(cm, (t, p), 1)
    cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.imshow(cm, cmap="Blues", vmin=0, vmax=1)
    names = [f"{a}-{b}" for a, b in PAPER_GROUPS]
    ax.set(xticks=range(6), yticks=range(5), xticklabels=names + ["26+"], yticklabels=names,
           xlabel="estimated group", ylabel="true group", title=f"{title}\n5-group confusion (row-normalised)")
    for i in range(5):
        for j in range(6):
            ax.text(j, i, f"{cm[i, j]:.2f}", ha="center", va="center", color="white" if cm[i, j] > 0.5 else "black")
    paths.append(out / PLOT_FILES[2])
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)
    return paths


#: The files :func:`binned_plots` writes (a set with age bins).
BINNED_PLOT_FILES = ("point_age_by_bin.png", "bin_confusion.png")


def binned_plots(low: np.ndarray, high: np.ndarray, pred: np.ndarray, report: dict, out_dir: str | Path,
                 title: str = "") -> list[Path]:
    """For a set with age bins (:data:`BINNED_PLOT_FILES`): each face's point age over its true bin (the bin drawn
    as a band, the minor age as a line) and the row-normalised bin confusion matrix of ``report`` (a
    :func:`agescan.eval.metrics.binned_point_metrics` report of the same rows); returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = report["bins"]
    bins = sorted(set(zip(np.asarray(low, float).tolist(), np.asarray(high, float).tolist())))
    index = {b: i for i, b in enumerate(bins)}
    x = np.array([index[b] for b in zip(np.asarray(low, float).tolist(), np.asarray(high, float).tolist())])
    paths = []

    fig, ax = plt.subplots(figsize=(max(5, 0.8 * len(bins) + 2), 4.5))
    for i, (lo, hi) in enumerate(bins):
        ax.fill_between([i - 0.4, i + 0.4], lo, min(hi + 1, 100), color="#cfdcec", zorder=0)
    jitter = np.random.default_rng(0).uniform(-0.25, 0.25, len(x))
    ax.scatter(x + jitter, pred, s=6, alpha=0.5, zorder=2)
    ax.axhline(report["minor_age"], color="#b04a4a", lw=1, ls="--", zorder=1)
    ax.set(xticks=range(len(bins)), xticklabels=names, xlabel="true age bin (band)", ylabel="point age",
           title=f"{title}\npoint age by true bin (dashed: age {report['minor_age']})")
    paths.append(out / BINNED_PLOT_FILES[0])
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)

    cm = np.asarray(report["confusion"], dtype=np.float64)
    cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(bins) + 2), max(4, 0.6 * len(bins) + 1.5)))
    ax.imshow(cm, cmap="Blues", vmin=0, vmax=1)
    ax.set(xticks=range(len(bins)), yticks=range(len(bins)), xticklabels=names, yticklabels=names,
           xlabel="estimated bin", ylabel="true bin", title=f"{title}\nbin confusion (row-normalised)")
    for i in range(len(bins)):
        for j in range(len(bins)):
            ax.text(j, i, f"{cm[i, j]:.2f}", ha="center", va="center", color="white" if cm[i, j] > 0.5 else "black",
                    fontsize=8)
    paths.append(out / BINNED_PLOT_FILES[1])
    fig.savefig(paths[-1], dpi=110, bbox_inches="tight")
    plt.close(fig)
    return paths
