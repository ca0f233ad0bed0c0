"""Evaluate a model end to end, through the pipeline users call (:class:`~agescan.AgeEstimator`), on a labelled set.

The set is any labelled folder or CSV (:mod:`agescan.eval.datasets`; UTKFace's ``labels.csv`` holds ``path``,
``age``, ``split``, ``gender``, ``race``). Each image is padded by replicating its edge pixels (tight face chips such
as UTKFace's fill the frame and detectors need context to fire; a black border would put black bars into the
model's crop, which real photos never have), then given to ``AgeEstimator.stream`` exactly as a user's image is:
detection, alignment, model. The labelled face is the detected face nearest the centre (:func:`central_face`).

**Misses count as misses.** A face the detector does not find gets no estimate from the pipeline. The headline
metrics score it as :func:`miss_age`: a point mass at the set's median age, or at 18 if that is lower (a miss is
no better than a constant guess, and it is never flagged as a minor); ``faces_found`` says how many were found.
Two labelled secondary rows follow: ``found_only`` (the faces found) and ``template_fallback`` (misses aligned
with the UTKFace template instead, as training does for chips its detector misses; not what a user gets).

Conditions: ``clean``, or ``eyeband``: the eye band (25% of box height, 95% of box width, along the eye line) is
drawn where the reference detector (:data:`BAND_REFERENCE`, MTCNN, the paper's) finds the clean face, or where the
UTKFace template puts it when MTCNN misses, *before* the pipeline runs, as in redacted evidence; every detector is
therefore measured on the same banded pixels. Training crops are made by :func:`chip_face`.
"""

from __future__ import annotations

import csv
import hashlib
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from agescan.align import UTKFACE_TEMPLATE, align_face
from agescan.errors import ConfigError
from agescan.eval.datasets import read_dataset
from agescan.eval.metrics import age_metrics
from agescan.eval.protocols import PROTOCOLS, fold_summary, group_assign, grouped_kfold_assign, kfold_assign
from agescan.io import read_image
from agescan.privacy import eye_band

PAD = 50
#: Evaluation conditions: the images as they are, or with the paper's eye band drawn before the pipeline.
CONDITIONS = ("clean", "eyeband")


def central_face(dets, w: int, h: int):
    """The detection (or face result) nearest the centre of a padded ``w`` x ``h`` chip, at least 0.3 w wide;
    None when there is none: how evaluation picks the labelled face among a chip's detections."""
    cx, cy = w / 2 + PAD, h / 2 + PAD
    best, best_d = None, float("inf")
    for d in dets:
        if d.box.width < 0.3 * w:
            continue
        dist = np.hypot((d.box.x1 + d.box.x2) / 2 - cx, (d.box.y1 + d.box.y2) / 2 - cy)
        if dist < best_d:
            best, best_d = d, dist
    return best


def pad_chip(image: np.ndarray) -> np.ndarray:
    """A new image with a PAD-pixel replicated border around a tight face chip."""
    return cv2.copyMakeBorder(image, PAD, PAD, PAD, PAD, cv2.BORDER_REPLICATE)


#: MTCNN's median box on UTKFace val chips (fractions of the chip, made symmetric): with the template landmarks,
#: where the eye band goes when the reference detector misses a clean chip.
TEMPLATE_BOX = (0.072, -0.193, 0.928, 0.970)
#: The detector whose clean detection places the eye band in evaluation and benchmarks (the paper's, MTCNN), so
#: every detector and model is measured on the same banded pixels.
BAND_REFERENCE = "mtcnn"


def reference_face(detector, padded: np.ndarray, w: int, h: int) -> tuple[np.ndarray, tuple, bool]:
    """Where a chip's face is, for drawing a band: (5 x 2 landmarks, box xyxy, found by ``detector``); the
    UTKFace template and :data:`TEMPLATE_BOX` when ``detector`` misses the clean chip."""
    face = central_face(detector.detect(padded), w, h)
    if face is not None:
        return face.landmarks.as_array(), face.box.as_tuple(), True
    lm = np.asarray(UTKFACE_TEMPLATE) * np.array([w, h]) + PAD
    x1, y1, x2, y2 = TEMPLATE_BOX
    return lm, (x1 * w + PAD, y1 * h + PAD, x2 * w + PAD, y2 * h + PAD), False


def band_chip(reference, padded: np.ndarray, w: int, h: int) -> np.ndarray:
    """A copy of a padded ``w`` x ``h`` chip with the paper's eye band where ``reference`` (a detector, normally
    :data:`BAND_REFERENCE`'s) finds the clean face, or where the template puts it (:func:`reference_face`)."""
    from agescan.types import BBox, Landmarks5

    lm, box, _ = reference_face(reference, padded, w, h)
    return eye_band(padded, Landmarks5.from_array(lm), BBox(*box))


def chip_face(detector, padded: np.ndarray, w: int, h: int):
    """Landmarks of the central face of a padded chip, and its detection (None: template fallback)."""
    face = central_face(detector.detect(padded), w, h)
    if face is None:
        return np.asarray(UTKFACE_TEMPLATE) * np.array([w, h]) + PAD, None
    return face.landmarks.as_array(), face


SLICE_NAMES = {"gender": {"0": "male", "1": "female"},
               "race": {"0": "White", "1": "Black", "2": "Asian", "3": "Indian", "4": "Others"}}


def slices(rows: list[dict], true: np.ndarray, pred: np.ndarray) -> dict:
    """MAE and MAE 0-25 per value of each labels.csv column named in :data:`SLICE_NAMES`."""
    err = np.abs(pred - true)
    out: dict = {}
    for col, names in SLICE_NAMES.items():
        values = np.array([r.get(col, "") for r in rows])
        for v in sorted(set(values) - {""}):
            m = values == v
            young = m & (true <= 25)
            out[f"{col}={names.get(v, v)}"] = {"n": int(m.sum()), "mae": float(err[m].mean()),
                                               "mae_0_25": float(err[young].mean()) if young.any() else float("nan")}
    return out


def miss_age(true: np.ndarray) -> float:
    """The age a missed face is scored at: the median of the set's ages, or 18 if that is lower."""
    return float(max(np.median(true), 18.0)) if len(true) else 18.0


def _one_hot(age: float, min_age: int, n_bins: int) -> np.ndarray:
    p = np.zeros(n_bins)
    p[int(np.clip(round(age) - min_age, 0, n_bins - 1))] = 1.0
    return p


def _secondary(report: dict) -> dict:
    keys = ("n", "mae", "mae_0_25", "group_accuracy_0_25", "interval_coverage", "challenge25_teens_under_25")
    out = {k: report[k] for k in keys}
    out["minor_recall"] = report["minor_by_p_minor_0.5"]["recall"]
    out["minor_precision"] = report["minor_by_p_minor_0.5"]["precision"]
    return out


def evaluate_folder(model: str, data: str | Path, *, split: str = "test", condition: str = "clean", limit: int = 0,
                    predictions: str | None = None, threads: int = 0, detector: str | None = None,
                    minor_threshold: float | None = None, plots_dir: str | None = None,
                    labels: str | None = None, path_column: str = "path", age_column: str = "age",
                    split_column: str = "split", protocol: str = "split", folds: int = 5, group_column: str = "",
                    seed: int = 0) -> dict:
    """Run the pipeline on every labelled image and return a metrics report (see :func:`age_metrics`).

    ``detector``: a registered detector (None: the pipeline's default). ``data``/``labels``/``*_column``: any
    labelled set (see :func:`agescan.eval.datasets.read_dataset`). ``protocol``: ``split`` (metrics of the chosen
    split), ``kfold`` (also per fold of a seeded ``folds``-way partition, with mean and sd) or ``logo`` (also per
    value of ``group_column``, leave-one-group-out). Misses are scored as the module docstring says.
    """
    from agescan import AgeEstimator
    from agescan.detect import DEFAULT_DETECTOR, create_detector

    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol must be one of {PROTOCOLS}. Got {protocol!r}.")
    if protocol == "logo" and not group_column:
        raise ConfigError("--protocol logo needs --group-column COLUMN (e.g. race, or a subject id).")
    if condition not in CONDITIONS:
        raise ConfigError(f"condition must be one of {CONDITIONS}. Got {condition!r}.")
    ds = read_dataset(data, labels=labels, split=split, limit=limit, path_column=path_column,
                      age_column=age_column, split_column=split_column)
    rows = ds.rows
    if group_column and group_column not in ds.columns:
        raise ConfigError(f"{ds.source}: no column {group_column!r} for --group-column (columns: {ds.columns}).")
    detector = detector or DEFAULT_DETECTOR
    est = AgeEstimator(model, detector, threads=threads).load()
    reference = create_detector(BAND_REFERENCE, threads=threads or 1) if condition == "eyeband" else None
    sizes: list[tuple[int, int]] = []
    templates: dict[int, np.ndarray] = {}

    def inputs():
        for r in rows:
            img = read_image(r["file"])
            h, w = img.shape[:2]
            sizes.append((w, h))
            padded = pad_chip(img)
            if reference is not None:
                padded = band_chip(reference, padded, w, h)
            templates[len(sizes) - 1] = padded  # kept only until its result arrives (template fallback)
            yield padded

    n_bins = est.card.n_bins
    probs = np.zeros((len(rows), n_bins))
    found = np.zeros(len(rows), dtype=bool)
    fallback_crops, fallback_rows = [], []
    t0 = time.time()
    for i, result in enumerate(est.stream(inputs())):
        w, h = sizes[i]
        padded = templates.pop(i)
        face = central_face(result.faces, w, h)
        if face is not None:
            probs[i] = face.distribution.probs
            found[i] = True
        else:
            lm = np.asarray(UTKFACE_TEMPLATE) * np.array([w, h]) + PAD
            fallback_crops.append(align_face(padded, lm, est.card.crop).image)
            fallback_rows.append(i)
    seconds = time.time() - t0
    true = np.array([r["age"] for r in rows], dtype=np.float64)
    missed_at = miss_age(true)
    e2e = probs.copy()
    e2e[~found] = _one_hot(missed_at, est.card.min_age, n_bins)
    with_fallback = probs.copy()
    if fallback_crops:
        dists = est.predict_crops(np.stack(fallback_crops))
        with_fallback[fallback_rows] = [d.probs for d in dists]
    ages = np.arange(est.card.min_age, est.card.min_age + n_bins)
    pred = e2e @ ages
    report = {
        "model": est.model.id, "model_sha256": est.model.sha256, "data": ds.source, "split": ds.split,
        "rows_sha256": hashlib.sha256("\n".join(f"{r['path']}\t{r['age']:g}" for r in rows).encode()).hexdigest(),
        "unlabelled_files": ds.unlabelled,
        "condition": condition, "detector": detector,
        "band_reference": BAND_REFERENCE if condition == "eyeband" else "",
        "faces_found": int(found.sum()), "faces_missed": int((~found).sum()),
        "miss_rule": f"a missed face is scored as age {missed_at:g} (the set's median age, at least 18) and is "
                     "never flagged as a minor",
        "seconds": {"pipeline": round(seconds, 1)},
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        **age_metrics(true, e2e, est.card.min_age, minor_threshold=minor_threshold),
        "slices": slices(rows, true, pred),
        "found_only": (_secondary(age_metrics(true[found], probs[found], est.card.min_age)) if found.any() else {}),
        "template_fallback": _secondary(age_metrics(true, with_fallback, est.card.min_age)),
    }
    if protocol == "kfold":  # slices of this model's predictions; by subject when the set has subject ids
        subjects = [r.get("subject", "") for r in rows]
        by_subject = all(subjects)
        assign = grouped_kfold_assign(subjects, folds, seed) if by_subject else kfold_assign(len(rows), folds, seed)
        report["protocol"] = {"name": "kfold", "k": folds, "seed": seed, "by_subject": by_subject,
                              "note": "slices of one model's predictions; no fold was held out of its training "
                                      "(agescan train cv trains per fold)",
                              **fold_summary(true, e2e, est.card.min_age, assign)}
    elif protocol == "logo":
        assign, names = group_assign([r.get(group_column, "") for r in rows])
        names = [SLICE_NAMES.get(group_column, {}).get(v, v) for v in names]  # UTKFace's race codes by name
        report["protocol"] = {"name": "logo", "group_column": group_column, "left_out_without_group":
                              int((assign < 0).sum()), **fold_summary(true, e2e, est.card.min_age, assign, names)}
    if plots_dir:
        from agescan.eval.report import plots

        report["plots"] = [str(p) for p in plots(true, pred, plots_dir, f"{est.model.id}, {split}, {condition}")]
    if predictions:
        p_minor = e2e[:, ages < 18].sum(1)
        Path(predictions).parent.mkdir(parents=True, exist_ok=True)
        with open(predictions, "w", newline="", encoding="utf-8") as fh:
            wtr = csv.writer(fh)
            wtr.writerow(["path", "age", "found", "pred", "p_minor", "gender", "race"])
            for r, f, pa, pm in zip(rows, found, pred, p_minor):
                wtr.writerow([r["path"], f"{r['age']:g}", int(f), f"{pa:.3f}", f"{pm:.4f}", r.get("gender", ""),
                              r.get("race", "")])
    return report


#: The metrics :func:`compare` puts side by side (all in every :func:`evaluate_folder` report).
COMPARED = ("mae", "mae_0_25", "group_accuracy_0_25", "cs5", "challenge25_teens_under_25")


def compare(baseline: dict, report: dict) -> dict:
    """The paper's Impv (Eq. 2, :func:`agescan.eval.metrics.impv`) of ``report`` over ``baseline``, per metric.

    For MAE a positive Impv means the new run is better; for accuracies a negative one does (the paper's sign).
    Refuses reports of other rows (paths and ages, however the set was named) or another condition: an Impv
    between different test sets means nothing.
    """
    from agescan.eval.metrics import impv

    for key in ("rows_sha256", "condition", "n"):
        if baseline.get(key) != report.get(key):
            raise ConfigError(f"cannot compare: baseline {key} {baseline.get(key)!r} but this run has "
                              f"{report.get(key)!r}. Evaluate both on the same set, split and condition.")
    return {"baseline_model": baseline["model"], "baseline_sha256": baseline.get("model_sha256", ""),
            "metrics": {k: {"baseline": baseline[k], "this": report[k], "impv": impv(baseline[k], report[k])}
                        for k in COMPARED}}
