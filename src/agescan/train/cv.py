"""Summarise fold or group runs: each run's held-out metrics, and their mean and sd across runs.

    agescan train fit DATA runs/cv-0 --fold 0/5 ...   (one run per fold, I = 0..4)
    agescan train cv runs/cv-0 runs/cv-1 runs/cv-2 runs/cv-3 runs/cv-4 [--out cv.json]

Each run's ``heldout.json`` is written by ``agescan train fit`` when a ``--fold`` or ``--holdout`` run
finishes (best-on-val checkpoint, held-out rows, clean and with the eye band).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

KEYS = (("mae", "MAE"), ("mae_0_25", "MAE 0-25"), ("group_accuracy_0_25", "5-group"), ("cs5", "CS@5"),
        ("challenge25_teens_under_25", "Challenge-25"))


def _row(rep: dict) -> dict:
    out = {k: rep[k] for k, _ in KEYS}
    out["minor_recall"] = rep["minor_by_p_minor_0.5"]["recall"]
    return out


def summarise(runs: list[str | Path]) -> dict:
    """Per-run held-out metrics per condition, and their mean and sd (ddof=1) across runs."""
    per = []
    for run in runs:
        path = Path(run) / "heldout.json"
        if not path.is_file():
            raise SystemExit(f"{path}: missing. Train the run to its last epoch with --fold I/K or --holdout.")
        rep = json.loads(path.read_text())
        per.append({"run": str(run), "fold": rep["fold"] or rep["holdout"], "n": rep["n"],
                    **{c: _row(rep[c]) for c in ("clean", "eyeband") if c in rep}})
    summary: dict = {"runs": per, "mean": {}, "sd": {}}
    for cond in ("clean", "eyeband"):
        if all(cond in r for r in per):
            for stat, fn in (("mean", np.nanmean), ("sd", lambda v: np.nanstd(v, ddof=1) if len(v) > 1 else np.nan)):
                summary[stat][cond] = {k: float(fn(np.array([r[cond][k] for r in per], dtype=np.float64)))
                                       for k in per[0][cond]}
    return summary


def markdown(summary: dict) -> str:
    cols = [*KEYS, ("minor_recall", "minor recall")]
    lines = []
    for cond in summary["mean"]:
        lines += [f"\n{cond}\n", "| fold | n | " + " | ".join(n for _, n in cols) + " |",
                  "|---|---|" + "---|" * len(cols)]
        for r in summary["runs"]:
            lines.append(f"| {r['fold']} | {r['n']} | " + " | ".join(f"{r[cond][k]:.3f}" for k, _ in cols) + " |")
        lines.append("| mean ± sd | | " + " | ".join(
            f"{summary['mean'][cond][k]:.3f} ± {summary['sd'][cond][k]:.3f}" for k, _ in cols) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="agescan train cv", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run folders trained with --fold or --holdout")
    p.add_argument("--out", help="also write the summary JSON here")
    a = p.parse_args(argv)
    s = summarise(a.runs)
    if a.out:
        Path(a.out).write_text(json.dumps(s, indent=2))
    sys.stdout.write(markdown(s))


if __name__ == "__main__":
    main()
