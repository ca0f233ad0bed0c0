"""Choose the pose-aware framing threshold (``profile_yaw``) on validation sets: UTKFace val (ages 0-25, MAE) and
fairface270 (age bins).

Hand-run benchmark (not a test)::

    nice -n 10 .venv/bin/python benchmarks/pose_framing.py --model resnet10x2-ocl.utkface --out runs/pose.json

Every image is padded as ``agescan evaluate`` pads it and run through :class:`agescan.AgeEstimator` twice: with
``profile_yaw=90`` (every face warped by its five points) and ``profile_yaw=0`` (every face framed from its box);
the labelled face is the central one (:func:`agescan.eval.run.central_face`), a miss is scored as evaluation scores
it. For each threshold T the face takes the box framing's estimate when its estimated |yaw| > T (the pipeline's
rule, :func:`agescan.align.choose_framing`), else the warp's: exactly what ``AgeEstimator(profile_yaw=T)`` returns.
Only validation data is read (UTKFace's val split, fairface270, which is a validation set): test is never used here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from agescan import DEFAULT_MODEL, AgeEstimator  # noqa: E402
from agescan.eval.datasets import read_dataset  # noqa: E402
from agescan.eval.metrics import binned_metrics  # noqa: E402
from agescan.eval.run import central_face, miss_age, pad_chip  # noqa: E402
from agescan.io import read_image  # noqa: E402
from agescan.triage import DEFAULT_FLAG_THRESHOLD  # noqa: E402

THRESHOLDS = (0, 20, 30, 35, 40, 45, 50, 55, 60, 70, 90)


def run(est: AgeEstimator, rows: list[dict]) -> dict:
    """Per row: found, |yaw|, and the distributions of the warp and of the box framing."""
    warp, box = est.replace(profile_yaw=90), est.replace(profile_yaw=0)
    n_bins = est.card.n_bins
    out = {"found": np.zeros(len(rows), bool), "yaw": np.zeros(len(rows)), "aligned": np.zeros((len(rows), n_bins)),
           "box": np.zeros((len(rows), n_bins))}
    for i, r in enumerate(rows):
        img = read_image(r["file"])
        h, w = img.shape[:2]
        padded = pad_chip(img)
        a = central_face(warp.predict(padded).faces, w, h)
        if a is None:
            continue
        b = min(box.predict(padded).faces, key=lambda f: -f.box.iou(a.box))  # the same face, framed from its box
        out["found"][i], out["yaw"][i] = True, abs(a.yaw)
        out["aligned"][i], out["box"][i] = a.distribution.probs, b.distribution.probs
    return out


def at(res: dict, t: float, miss: float, min_age: int) -> np.ndarray:
    use_box = res["yaw"] > t if t < 90 else np.zeros(len(res["yaw"]), bool)
    probs = np.where(use_box[:, None], res["box"], res["aligned"])
    probs[~res["found"]] = 0
    probs[~res["found"], int(np.clip(round(miss) - min_age, 0, probs.shape[1] - 1))] = 1
    return probs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--utkface", default=str(_common.utkface_dir()))
    ap.add_argument("--fairface", default=str(_common.shared_dir() / "data" / "fairface270"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out")
    a = ap.parse_args(argv)
    est = AgeEstimator(a.model, threads=a.threads).load()
    ages = np.arange(est.card.min_age, est.card.min_age + est.card.n_bins)
    utk = [r for r in read_dataset(a.utkface, split="val").rows if r["age"] <= 25]
    ff = read_dataset(a.fairface, split="all").rows
    ru, rf = run(est, utk), run(est, ff)
    true_u = np.array([r["age"] for r in utk])
    low, high = np.array([r["age_low"] for r in ff]), np.array([r["age_high"] for r in ff])
    table, results = [], {"model": est.model.id, "machine": _common.machine(), "thresholds": {}}
    for t in THRESHOLDS:
        pu = at(ru, t, miss_age(true_u), est.card.min_age) @ ages
        mf = binned_metrics(low, high, at(rf, t, miss_age(np.array([r["age"] for r in ff])), est.card.min_age),
                            est.card.min_age, flag_threshold=DEFAULT_FLAG_THRESHOLD)
        row = {"utkface_val_mae_0_25": float(np.abs(pu - true_u).mean()),
               "utkface_val_box_share": float((ru["yaw"][ru["found"]] > t).mean()) if t < 90 else 0.0,
               "fairface_bin_accuracy": mf["bin_accuracy"],
               "fairface_children_under_18": mf["children"]["under_minor_age"],
               "fairface_children_p_minor_recall": mf["children"]["p_minor_recall"],
               "fairface_box_share": float((rf["yaw"][rf["found"]] > t).mean()) if t < 90 else 0.0}
        results["thresholds"][t] = row
        table.append([f"{t}" + (" (never)" if t >= 90 else ""), f"{row['utkface_val_box_share']:.1%}",
                      f"{row['utkface_val_mae_0_25']:.3f}", f"{row['fairface_box_share']:.1%}",
                      f"{row['fairface_bin_accuracy']:.1%}", f"{row['fairface_children_under_18']:.1%}",
                      f"{row['fairface_children_p_minor_recall']:.1%}"])
    print(f"## Pose-aware framing threshold, {est.model.id} (validation sets only)\n")
    print(_common.md_table(["profile_yaw", "UTKFace val: box-framed", "UTKFace val MAE 0-25",
                            "fairface270: box-framed", "9-bin acc.", "0-9 under 18",
                            f"0-9 P(minor) >= {DEFAULT_FLAG_THRESHOLD:g}"], table))
    print("\n" + _common.machine_line(results["machine"]))
    _common.write_json(a.out, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
