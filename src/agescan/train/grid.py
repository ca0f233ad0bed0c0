"""Learning-rate x batch-size grid search, selected on val (the paper's optional recipe step).

    agescan train grid DATA OUT --lrs 5e-4,1e-3,2e-3 --batch-sizes 64,128 [any `train fit` option]

Each cell is an ordinary run in ``OUT/lr{LR}-bs{BS}`` (resumable: rerun the command after an interruption
and finished cells are kept). The cell with the lowest best val score (the same score that selects a run's
checkpoint) wins; ``OUT/grid.json`` and ``OUT/grid.md`` hold every cell. Never selected on test.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from agescan.train.loop import TrainConfig, build_parser, train


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def best_of(run: Path) -> dict:
    """The best epoch's log record of a run (lowest val score)."""
    recs = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    return min(recs, key=lambda r: r["val_score"])


def grid(base: TrainConfig, lrs: list[float], batch_sizes: list[int]) -> dict:
    out = Path(base.out)
    cells = []
    for lr in lrs:
        for bs in batch_sizes:
            cfg = replace(base, lr=lr, batch_size=bs, out=str(out / f"lr{lr:g}-bs{bs}"))
            run = Path(cfg.out)
            done = (run / "log.jsonl").exists() and len((run / "log.jsonl").read_text().splitlines()) >= cfg.epochs
            if not done:
                train(cfg, resume=True)
            b = best_of(run)
            cells.append({"lr": lr, "batch_size": bs, "run": str(run), "best_epoch": b["epoch"],
                          "val_score": b["val_score"], "val_mae": b["val_mae"], "val_mae_0_25": b["val_mae_0_25"]})
    best = min(cells, key=lambda c: c["val_score"])
    result = {"selected_on": base.select_on + " (val)", "cells": cells, "best": best}
    (out / "grid.json").write_text(json.dumps(result, indent=2))
    (out / "grid.md").write_text(markdown(result))
    return result


def markdown(result: dict) -> str:
    rows = "\n".join(f"| {c['lr']:g} | {c['batch_size']} | {c['best_epoch']} | {c['val_score']:.3f} | "
                     f"{c['val_mae']:.3f} | {c['val_mae_0_25']:.3f} |" + (" **best** |" if c == result["best"] else " |")
                     for c in result["cells"])
    return ("| lr | batch | best epoch | val score | val MAE | val MAE 0-25 | |\n|---|---|---|---|---|---|---|\n"
            + rows + "\n")


def main(argv: list[str] | None = None) -> None:
    p = build_parser("agescan train grid")
    p.description = __doc__
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--lrs", required=True, help="comma-separated learning rates, e.g. 5e-4,1e-3,2e-3")
    p.add_argument("--batch-sizes", required=True, help="comma-separated batch sizes, e.g. 64,128")
    a = vars(p.parse_args(argv))
    lrs, bss = _floats(a.pop("lrs")), _ints(a.pop("batch_sizes"))
    a.pop("resume")
    if not lrs or not bss:
        p.error("--lrs and --batch-sizes need at least one value each")
    result = grid(TrainConfig(**a), lrs, bss)
    sys.stdout.write(markdown(result))
    b = result["best"]
    print(f"best: lr {b['lr']:g}, batch {b['batch_size']} ({b['run']}, val score {b['val_score']:.3f})")


if __name__ == "__main__":
    main()
