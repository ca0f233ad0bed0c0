"""Tables and reliability diagrams of docs/calibration.md from `agescan evaluate --out` reports (run by hand).

    python benchmarks/calibration_report.py runs/cal/eval/resnet10x2-test-clean.json \
        runs/cal/eval/resnet10x2-test-eyeband.json --figure docs/calibration-reliability.png > table.md

Each report holds ``reliability_and_coverage`` (ECE and reliability bins of P(age < t), coverage per band) from
:func:`agescan.eval.metrics.calibration_metrics`, computed on the results the pipeline returned.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def tables(reports: list[dict]) -> str:
    out = []
    out.append("| condition | faces found | t | ECE | Brier | positives |")
    out.append("|---|---|---|---|---|---|")
    for r in reports:
        rc = r["reliability_and_coverage"]
        for t, e in rc["ece"].items():
            out.append(f"| {r['condition']} | {rc['faces_found']:,} / {rc['faces']:,} | {t} | {e['ece']:.4f} | "
                       f"{e['brier']:.4f} | {e['positives']:,} |")
    out.append("")
    for r in reports:
        rc = r["reliability_and_coverage"]
        levels = list(rc["coverage"])
        out.append(f"**{r['condition']}**, coverage by band of *predicted* age (faces found; the Mondrian guarantee), "
                   "coverage / mean width in years:")
        out.append("")
        bands = list(rc["coverage"][levels[0]]["by_predicted_band"])
        out.append("| band | n | " + " | ".join(f"{float(lv):.0%}" for lv in levels) + " |")
        out.append("|---|---|" + "---|" * len(levels))
        for b in bands:
            n = rc["coverage"][levels[0]]["by_predicted_band"][b]["n"]
            cells = []
            for lv in levels:
                c = rc["coverage"][lv]["by_predicted_band"][b]
                miss = abs(c["coverage"] - float(lv)) > 0.02 and n >= 100
                cells.append(f"{'**' if miss else ''}{c['coverage']:.1%}{'**' if miss else ''} / {c['mean_width']:.1f}")
            out.append(f"| {b} | {n:,} | " + " | ".join(cells) + " |")
        cells = [f"{rc['coverage'][lv]['coverage_found']:.1%} / {rc['coverage'][lv]['mean_width']:.1f}"
                 for lv in levels]
        out.append(f"| all found | {rc['faces_found']:,} | " + " | ".join(cells) + " |")
        cells = [f"{rc['coverage'][lv]['coverage']:.1%}" for lv in levels]
        out.append(f"| all, misses uncovered | {rc['faces']:,} | " + " | ".join(cells) + " |")
        out.append("")
        out.append(f"**{r['condition']}**, coverage by band of *true* age (every face, misses uncovered; not what "
                   "Mondrian guarantees):")
        out.append("")
        out.append("| band | n | " + " | ".join(f"{float(lv):.0%}" for lv in levels) + " |")
        out.append("|---|---|" + "---|" * len(levels))
        for b, c0 in rc["coverage"][levels[0]]["by_true_band"].items():
            cells = [f"{rc['coverage'][lv]['by_true_band'][b]['coverage']:.1%} / "
                     f"{rc['coverage'][lv]['by_true_band'][b]['mean_width']:.1f}" for lv in levels]
            out.append(f"| {b} | {c0['n']:,} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def figure(reports: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = list(reports[0]["reliability_and_coverage"]["ece"])
    fig, axes = plt.subplots(len(reports), len(ts), figsize=(3.0 * len(ts), 3.0 * len(reports)), squeeze=False)
    for i, r in enumerate(reports):
        for j, t in enumerate(ts):
            ax = axes[i][j]
            e = r["reliability_and_coverage"]["ece"][t]
            xs = [b["p"] for b in e["reliability"]]
            ys = [b["observed"] for b in e["reliability"]]
            ns = [b["n"] for b in e["reliability"]]
            ax.plot([0, 1], [0, 1], color="0.7", lw=1)
            ax.plot(xs, ys, "o-", color="C0", ms=3)
            for x, y, n in zip(xs, ys, ns):
                ax.annotate(str(n), (x, y), fontsize=6, xytext=(2, -8), textcoords="offset points", color="0.4")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            ax.set_title(f"{r['condition']}, P(age < {t}): ECE {e['ece']:.3f}", fontsize=8)
            ax.tick_params(labelsize=7)
            if j == 0:
                ax.set_ylabel("observed share under t", fontsize=7)
            if i == len(reports) - 1:
                ax.set_xlabel("predicted P(age < t), 10 bins", fontsize=7)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reports", nargs="+")
    ap.add_argument("--figure", help="write the reliability diagrams here (PNG)")
    a = ap.parse_args(argv)
    reports = [json.loads(Path(p).read_text()) for p in a.reports]
    print(tables(reports))
    if a.figure:
        figure(reports, a.figure)


if __name__ == "__main__":
    main()
