"""Evaluate a model through the full inference pipeline on a labelled face folder.

The folder holds ``labels.csv`` with at least ``path`` and ``age`` (``split``, ``gender``, ``race``
optional). Each image is padded by replicating its edge pixels (tight face chips such as UTKFace's
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
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from agescan.align import UTKFACE_TEMPLATE, align_face
from agescan.eval.metrics import age_metrics
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


def read_labels(data: str | Path, split: str = "test", limit: int = 0) -> list[dict]:
    rows = list(csv.DictReader(open(Path(data) / "labels.csv", newline="", encoding="utf-8")))
    if split != "all":
        rows = [r for r in rows if r.get("split", "") == split]
    return rows[:limit] if limit else rows


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
                    minor_threshold: float | None = None, plots_dir: str | None = None) -> dict:
    """Run the pipeline on every labelled image and return a metrics report (see :func:`age_metrics`)."""
    from agescan import AgeEstimator

    est = AgeEstimator(model, detector, threads=threads).load()
    recipe = est.card.crop
    rows = read_labels(data, split, limit)
    if not rows:
        raise ValueError(f"no rows with split={split!r} in {data}/labels.csv")
    crops = np.zeros((len(rows), recipe.size, recipe.size, 3), dtype=np.uint8)
    fallback = 0
    t0 = time.time()
    for i, r in enumerate(rows):
        img = read_image(Path(data) / r["path"])
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
    true = np.array([float(r["age"]) for r in rows])
    ages = np.arange(est.card.min_age, est.card.min_age + probs.shape[1])
    pred = probs @ ages
    report = {
        "model": est.model.id, "model_sha256": est.model.sha256, "data": str(data), "split": split,
        "condition": condition, "fallback_alignment": fallback,
        "seconds": {"detect_align": round(t_detect, 1), "model": round(t_model, 2)},
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        **age_metrics(true, probs, est.card.min_age, minor_threshold=minor_threshold),
        "slices": slices(rows, true, pred),
    }
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
                wtr.writerow([r["path"], r["age"], f"{pa:.3f}", f"{pm:.4f}", r.get("gender", ""), r.get("race", "")])
    return report
