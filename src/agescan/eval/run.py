"""Evaluate a model through the full inference pipeline on a labelled face folder.

The set is any labelled folder or CSV (:mod:`agescan.eval.datasets`; UTKFace's ``labels.csv`` holds
``path``, ``age``, ``split``, ``gender``, ``race``). Each image is padded by replicating its edge pixels (tight face chips such as UTKFace's
fill the frame and MTCNN needs context to fire; a black border instead would put black bars into the
model's crop, which real photos never have: it cost 1.1 years of MAE 0-25 on val), the detector runs,
the face nearest the centre is aligned with the model card's crop recipe and the model predicts a
distribution. When no face is detected the chip is aligned with the canonical template (the same
fallback as training) and counted in ``fallback_alignment``. Training crops are made by the same
:func:`chip_face`, so a model is evaluated on the framing it was trained on.

Conditions: ``clean``, or ``eyeband``: the eye band (25% of box height, 95% of box width, along the
eye line) is drawn from a detection on the clean image *before* the pipeline runs, as in redacted
evidence; the detector then runs on the banded image.
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
from agescan.eval.protocols import PROTOCOLS, fold_summary, group_assign, kfold_assign
from agescan.io import read_image
from agescan.privacy import eye_band

PAD = 50


def _central_face(dets, w: int, h: int):
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


def chip_face(detector, padded: np.ndarray, w: int, h: int):
    """Landmarks of the central face of a padded chip, and its detection (None: template fallback)."""
    face = _central_face(detector.detect(padded), w, h)
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


def evaluate_folder(model: str, data: str | Path, *, split: str = "test", condition: str = "clean", limit: int = 0,
                    predictions: str | None = None, threads: int = 0, detector: str = "mtcnn",
                    minor_threshold: float | None = None, plots_dir: str | None = None,
                    labels: str | None = None, path_column: str = "path", age_column: str = "age",
                    split_column: str = "split", protocol: str = "split", folds: int = 5, group_column: str = "",
                    seed: int = 0) -> dict:
    """Run the pipeline on every labelled image and return a metrics report (see :func:`age_metrics`).

    ``data``/``labels``/``*_column``: any labelled set (see :func:`agescan.eval.datasets.read_dataset`).
    ``protocol``: ``split`` (metrics of the chosen split), ``kfold`` (also per fold of a seeded ``folds``-way
    partition, with mean and sd) or ``logo`` (also per value of ``group_column``, leave-one-group-out).
    """
    from agescan import AgeEstimator

    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol must be one of {PROTOCOLS}. Got {protocol!r}.")
    if protocol == "logo" and not group_column:
        raise ConfigError("--protocol logo needs --group-column COLUMN (e.g. race, or a subject id).")
    ds = read_dataset(data, labels=labels, split=split, limit=limit, path_column=path_column,
                      age_column=age_column, split_column=split_column)
    rows = ds.rows
    if group_column and group_column not in ds.columns:
        raise ConfigError(f"{ds.source}: no column {group_column!r} for --group-column (columns: {ds.columns}).")
    est = AgeEstimator(model, detector, threads=threads).load()
    recipe = est.card.crop
    crops = np.zeros((len(rows), recipe.size, recipe.size, 3), dtype=np.uint8)
    fallback = 0
    t0 = time.time()
    for i, r in enumerate(rows):
        img = read_image(r["file"])
        h, w = img.shape[:2]
        padded = pad_chip(img)
        if condition == "eyeband":
            clean = _central_face(est.detector.detect(padded), w, h)
            if clean is not None:
                padded = eye_band(padded, clean.landmarks, clean.box)
        lm, face = chip_face(est.detector, padded, w, h)
        fallback += face is None
        crops[i] = align_face(padded, lm, recipe).image
    t_detect = time.time() - t0
    t1 = time.time()
    probs = est.model.predict_probs(crops)
    t_model = time.time() - t1
    true = np.array([r["age"] for r in rows], dtype=np.float64)
    ages = np.arange(est.card.min_age, est.card.min_age + probs.shape[1])
    pred = probs @ ages
    report = {
        "model": est.model.id, "model_sha256": est.model.sha256, "data": ds.source, "split": ds.split,
        "rows_sha256": hashlib.sha256("\n".join(f"{r['path']}\t{r['age']:g}" for r in rows).encode()).hexdigest(),
        "unlabelled_files": ds.unlabelled,
        "condition": condition, "detector": detector, "fallback_alignment": fallback,
        "seconds": {"detect_align": round(t_detect, 1), "model": round(t_model, 2)},
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        **age_metrics(true, probs, est.card.min_age, minor_threshold=minor_threshold),
        "slices": slices(rows, true, pred),
    }
    if protocol == "kfold":
        report["protocol"] = {"name": "kfold", "k": folds, "seed": seed,
                              **fold_summary(true, probs, est.card.min_age, kfold_assign(len(rows), folds, seed))}
    elif protocol == "logo":
        assign, names = group_assign([r.get(group_column, "") for r in rows])
        names = [SLICE_NAMES.get(group_column, {}).get(v, v) for v in names]  # UTKFace's race codes by name
        report["protocol"] = {"name": "logo", "group_column": group_column, "left_out_without_group":
                              int((assign < 0).sum()), **fold_summary(true, probs, est.card.min_age, assign, names)}
    if plots_dir:
        from agescan.eval.report import plots

        report["plots"] = [str(p) for p in plots(true, pred, plots_dir, f"{est.model.id}, {split}, {condition}")]
    if predictions:
        p_minor = probs[:, ages < 18].sum(1)
        Path(predictions).parent.mkdir(parents=True, exist_ok=True)
        with open(predictions, "w", newline="", encoding="utf-8") as fh:
            wtr = csv.writer(fh)
            wtr.writerow(["path", "age", "pred", "p_minor", "gender", "race"])
            for r, pa, pm in zip(rows, pred, p_minor):
                wtr.writerow([r["path"], f"{r['age']:g}", f"{pa:.3f}", f"{pm:.4f}", r.get("gender", ""), r.get("race", "")])
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
