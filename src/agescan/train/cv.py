"""Summarise fold or group runs: each run's held-out metrics, and their mean and sd across runs.

    agescan train fit DATA runs/cv-0 --fold 0/5 ...   (one run per fold, I = 0..4)
    agescan train cv runs/cv-0 runs/cv-1 runs/cv-2 runs/cv-3 runs/cv-4 [--out cv.json]

Each run's ``heldout.json`` is written by ``agescan train fit`` when a ``--fold`` or ``--holdout`` run
finishes (best-on-val checkpoint, held-out rows, clean, with the eye band and with each transform the run was
trained with; runs from agescan 0.1 name the band ``eyeband``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from agescan.eval.protocols import fold_row, mean_sd
from agescan.eval.report import fold_table
from agescan.privacy import ALIASES


def summarise(runs: list[str | Path]) -> dict:
    """Per-run held-out metrics per condition, and their mean and sd (ddof=1) across runs."""
    per = []
    for run in runs:
        path = Path(run) / "heldout.json"
        if not path.is_file():
            raise SystemExit(f"{path}: missing. Train the run to its last epoch with --fold I/K or --holdout.")
        rep = json.loads(path.read_text())
        conds = {ALIASES.get(k, k): v for k, v in rep.items() if isinstance(v, dict) and "mae" in v}
        per.append({"run": str(run), "fold": rep["fold"] or rep["holdout"], "n": rep["n"],
                    **{c: fold_row(v) for c, v in conds.items()}})
    summary: dict = {"runs": per, "mean": {}, "sd": {}}
    seen = [c for c in per[0] if c not in ("run", "fold", "n")] if per else []
    for cond in seen:
        if all(cond in r for r in per):
            summary["mean"][cond], summary["sd"][cond] = mean_sd([r[cond] for r in per])
    return summary


def markdown(summary: dict) -> str:
    return "".join(f"\n{cond}\n\n" + fold_table("fold", [(r["fold"], r["n"], r[cond]) for r in summary["runs"]],
                                                 summary["mean"][cond], summary["sd"][cond])
                   for cond in summary["mean"])


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
