"""Evaluate a model end to end, through the pipeline users call (:class:`~agescan.AgeEstimator`), on a labelled set.

The set is any labelled folder or CSV (:mod:`agescan.eval.datasets`; UTKFace's ``labels.csv`` holds ``path``,
``age``, ``split``, ``gender``, ``race``). Each image is padded by replicating its edge pixels (tight face chips such
as UTKFace's fill the frame and detectors need context to fire; a black border would put black bars into the
model's crop, which real photos never have), then given to ``AgeEstimator.stream`` exactly as a user's image is:
detection, alignment, model. The labelled face is the detected face nearest the centre, at least 0.3 of the chip wide
(or, when none is, at least 0.15 wide with its box over the centre: a turned face; :func:`central_index`).

**Every listed image must be there.** A row whose file does not exist, is a folder or is not a picture is an error
before any image is processed (:func:`agescan.eval.datasets.check_files`: the count and the first few of each kind),
not a miss: a file that is not there says nothing about the detector.

**Misses count as misses.** A face the detector does not find gets no estimate from the pipeline. The headline
metrics score it as :func:`miss_age`: a point mass at the set's median age, or at 18 if that is lower (a miss is
no better than a constant guess, and it is never flagged as a minor); ``faces_found`` says how many were found.
Two labelled secondary rows follow: ``found_only`` (the faces found) and ``template_fallback`` (misses aligned
with the UTKFace template instead, as training does for chips its detector misses; not what a user gets).

**Binned labels** (a CSV with ``age_low``/``age_high`` instead of ``age``, FairFace's layout): the headline is
:func:`agescan.eval.metrics.binned_point_metrics` (bin accuracy, the share of each bin estimated under the minor
age, the share of the children's bins flagged by the pipeline's own flag, and their P(minor) at the model card's
triage threshold unless ``minor_threshold`` is given), misses scored the same way (at the median bin middle, at
least 18, never flagged), with ``found_only`` beside.

Conditions: ``clean``, or any registered privacy transform (:func:`agescan.privacy.list_privacy_ops`: eye band,
eye mask, eye mosaic, face blur, face only, keyed permutation, ...; ``eyeband`` is accepted for ``eye-band``). The
transform is placed where the reference detector (:data:`BAND_REFERENCE`, MTCNN, the paper's) finds the clean face,
or where the UTKFace template puts it when MTCNN misses, *before* the pipeline runs, as in redacted evidence or on a
platform that only ever receives anonymised pictures; every detector and model is therefore measured on the same
pixels. Seeded transforms (the mosaic) use the row's index as seed; the keyed permutation uses
:data:`EVALUATION_KEY`, which the pipeline never sees (it measures what a holder of the picture without the key
learns). Training crops are made by :func:`chip_face`.
"""

from __future__ import annotations

import csv
import hashlib
import math
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from agescan.align import PROFILE_YAW, UTKFACE_TEMPLATE
from agescan.errors import ConfigError, InputError, ModelNotFoundError
from agescan.eval.datasets import Dataset, check_files, read_dataset
from agescan.eval.metrics import age_metrics, calibration_metrics
from agescan.eval.protocols import PROTOCOLS, fold_summary, group_assign, grouped_kfold_assign, kfold_assign
from agescan.io import read_image
from agescan.privacy import canonical_op, get_transform, list_privacy_ops
from agescan.types import BBox, Detection, Landmarks5

PAD = 50
#: The key the keyed permutation is drawn with in evaluation (public on purpose: the pipeline is never given it).
EVALUATION_KEY = hashlib.sha256(b"agescan evaluation key: never give it to the pipeline").digest()


def conditions() -> list[str]:
    """Evaluation conditions: ``clean`` and every registered privacy transform."""
    return ["clean", *list_privacy_ops()]


def canonical_condition(condition: str) -> str:
    """``clean`` or a transform's registry name (older spellings such as ``eyeband`` accepted); ConfigError naming
    the conditions otherwise."""
    if condition == "clean":
        return condition
    try:
        return canonical_op(condition)
    except ModelNotFoundError:  # say it in terms of conditions
        raise ConfigError(f"condition must be one of {', '.join(conditions())}. Got {condition!r}.") from None


#: The labelled face of a chip is at least this share of the chip's width (a background face is smaller) ...
CENTRAL_MIN_WIDTH = 0.3
#: ... or, when no detection is that wide, at least this share with its box over the chip's centre: a turned face's
#: box is narrower (the far cheek is hidden) and a loose crop (FairFace's) frames its face at 0.2-0.3 of the width.
CENTRAL_MIN_WIDTH_CENTRED = 0.15


def central_index(boxes, w: int, h: int) -> int | None:
    """Index of the labelled face among ``boxes`` (x1, y1, x2, y2 in the padded ``w`` x ``h`` chip), None when none
    qualifies: the box nearest the chip's centre among those at least :data:`CENTRAL_MIN_WIDTH` of ``w`` wide; when
    there is none, among those at least :data:`CENTRAL_MIN_WIDTH_CENTRED` wide whose box holds the centre."""
    cx, cy = w / 2 + PAD, h / 2 + PAD
    boxes = [tuple(float(v) for v in b) for b in boxes]
    wide = [i for i, b in enumerate(boxes) if b[2] - b[0] >= CENTRAL_MIN_WIDTH * w]
    if not wide:
        wide = [i for i, b in enumerate(boxes) if b[2] - b[0] >= CENTRAL_MIN_WIDTH_CENTRED * w
                and b[0] <= cx <= b[2] and b[1] <= cy <= b[3]]
    if not wide:
        return None
    return min(wide, key=lambda i: np.hypot((boxes[i][0] + boxes[i][2]) / 2 - cx, (boxes[i][1] + boxes[i][3]) / 2 - cy))


def central_face(dets, w: int, h: int):
    """The detection (or face result) that is a chip's labelled face (:func:`central_index`), None when there is
    none: how evaluation picks the labelled face among a chip's detections."""
    dets = list(dets)
    i = central_index([d.box.as_tuple() for d in dets], w, h)
    return None if i is None else dets[i]


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


def transform_chip(reference, padded: np.ndarray, w: int, h: int, condition: str, *, seed: int = 0,
                   key: bytes = EVALUATION_KEY) -> np.ndarray:
    """A copy of a padded ``w`` x ``h`` chip with the registered transform ``condition`` applied where ``reference``
    (a detector, normally :data:`BAND_REFERENCE`'s) finds the clean face, or where the template puts it
    (:func:`reference_face`); ``clean`` returns a copy."""
    condition = canonical_condition(condition)
    if condition == "clean":
        return padded.copy()
    transform = get_transform(condition)
    if transform.scope == "image":  # the whole picture: no face to place
        return transform.apply(padded, [], seed=seed, key=key)
    lm, box, _ = reference_face(reference, padded, w, h)
    return transform_face(padded, lm, box, condition, seed=seed, key=key)


def transform_face(padded: np.ndarray, landmarks: np.ndarray, box: tuple, condition: str, *, seed: int = 0,
                   key: bytes = EVALUATION_KEY) -> np.ndarray:
    """A copy of ``padded`` with the transform ``condition`` applied to the face at ``landmarks`` (5 x 2) and
    ``box`` (xyxy), as :func:`transform_chip` applies it."""
    condition = canonical_condition(condition)
    if condition == "clean":
        return padded.copy()
    face = Detection(BBox(*box), Landmarks5.from_array(landmarks), 1.0)
    return get_transform(condition).apply(padded, [face], seed=seed, key=key)


def band_chip(reference, padded: np.ndarray, w: int, h: int) -> np.ndarray:
    """A copy of a padded ``w`` x ``h`` chip with the paper's eye band placed as :func:`transform_chip` places it."""
    return transform_chip(reference, padded, w, h, "eye-band")


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


def _triage(minor: np.ndarray, flagged: np.ndarray, est) -> dict:
    """The flag each face got from the pipeline (``FaceResult.flagged``, the rule users get; a miss is never
    flagged): shares of minors and adults flagged."""
    return {"flag_threshold": est.flag_threshold, "challenge_age": est.challenge_age,
            "refer_interval": est.decider.calibration.refer_interval,
            "minors": int(minor.sum()), "minors_flagged": float(flagged[minor].mean()) if minor.any() else float("nan"),
            "minors_passed": int((~flagged[minor]).sum()),
            "adults": int((~minor).sum()),
            "adults_flagged": float(flagged[~minor].mean()) if (~minor).any() else float("nan")}


def _secondary(report: dict) -> dict:
    keys = ("n", "mae", "mae_0_25", "group_accuracy_0_25", "interval_coverage", "challenge25_teens_under_25")
    out = {k: report[k] for k in keys}
    out["minor_recall"] = report["minor_by_p_minor_0.5"]["recall"]
    out["minor_precision"] = report["minor_by_p_minor_0.5"]["precision"]
    return out


class Labelled(NamedTuple):
    """What the pipeline returned for each labelled chip (row i = chip i)."""

    probs: np.ndarray  # N x bins: the central face's distribution as reported (calibrated); zeros for misses
    found: np.ndarray  # N bools: the detector found the labelled face
    age: np.ndarray  # N point ages as reported; NaN for misses
    flagged: np.ndarray  # N bools: the face's triage flag (FaceResult.flagged); misses are never flagged
    fallback_probs: np.ndarray  # probs, with misses aligned by the UTKFace template instead (zeros without fallback)
    fallback_age: np.ndarray  # age, the same way
    boxed: np.ndarray  # N bools: the face was framed from its box (a profile; agescan.align.pose)


class _NoFace:
    """A detector that finds nothing: :func:`reference_face` then returns the template's face."""

    def detect(self, image):
        return ()


def predict_labelled(est, rows: list[dict], condition: str = "clean", *, threads: int = 0,
                     fallback: bool = True) -> Labelled:
    """Each labelled chip through ``est`` (an :class:`~agescan.AgeEstimator`) as a user's image goes: padded, with
    the transform ``condition`` applied first where the reference detector finds the clean face
    (:func:`transform_chip`), then detected, aligned and estimated, decided by the pipeline (misses decided as the
    pipeline decides a face when ``fallback`` aligns them by template)."""
    from agescan.detect import create_detector

    condition = canonical_condition(condition)
    reference = create_detector(BAND_REFERENCE, threads=threads or 1) if condition != "clean" else None
    sizes: list[tuple[int, int]] = []
    templates: dict[int, np.ndarray] = {}

    def inputs():
        for r in rows:
            img = read_image(r["file"])
            h, w = img.shape[:2]
            sizes.append((w, h))
            padded = pad_chip(img)
            if condition != "clean":
                padded = transform_chip(reference, padded, w, h, condition, seed=len(sizes) - 1)
            templates[len(sizes) - 1] = padded  # kept only until its result arrives (template fallback)
            yield padded

    probs = np.zeros((len(rows), est.card.n_bins))
    boxed = np.zeros(len(rows), dtype=bool)
    found = np.zeros(len(rows), dtype=bool)
    point = np.full(len(rows), np.nan)
    flagged = np.zeros(len(rows), dtype=bool)
    fallback_crops, fallback_rows = [], []
    for i, result in enumerate(est.stream(inputs())):
        w, h = sizes[i]
        padded = templates.pop(i)
        face = central_face(result.faces, w, h)
        if face is not None:
            probs[i] = face.distribution.probs
            point[i] = face.age
            flagged[i] = face.flagged
            boxed[i] = face.profile
            found[i] = True
        elif fallback:
            lm, box, _ = reference_face(_NoFace(), padded, w, h)  # the template's landmarks and box
            template = Detection(BBox(*box), Landmarks5.from_array(lm), 0.0)
            fallback_crops.append(est.align(padded, [template])[0].crop.image)  # the pipeline's alignment stage
            fallback_rows.append(i)
    with_fallback, fallback_point = probs.copy(), point.copy()
    if fallback_crops:  # decided as the pipeline decides a face (agescan.decisions)
        d = est.decider.decide(np.stack([x.probs for x in est.predict_crops(np.stack(fallback_crops))]))
        with_fallback[fallback_rows], fallback_point[fallback_rows] = d.probs, d.age
    return Labelled(probs, found, point, flagged, with_fallback, fallback_point, boxed)


def read_evaluation_set(data: str | Path, *, labels: str | None = None, split: str = "test", limit: int = 0,
                        path_column: str = "path", age_column: str = "age", split_column: str = "split",
                        protocol: str = "split", group_column: str = "", folds: int = 5,
                        subject_column: str = "", gender_column: str = "") -> Dataset:
    """The labelled set :func:`evaluate_folder` evaluates, checked against the protocol and on disk before any
    image is processed: ConfigError for a set the protocol cannot use or a listed image that cannot be read
    (:func:`agescan.eval.datasets.check_files`), InputError for protocol options the set cannot meet (``folds``
    under 2 or over the number of subjects or rows, fewer than two groups, a k-fold over a set where only some rows
    have a subject id). ``subject_column``/``gender_column``: as :func:`agescan.eval.datasets.read_dataset`
    (default: ``subject`` and ``gender`` when present)."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol must be one of {PROTOCOLS}. Got {protocol!r}.")
    if protocol == "logo" and not group_column:
        raise InputError("--protocol logo needs --group-column COLUMN, the column whose values are left out one at a "
                         "time (e.g. race; --preset utkface names it).")
    ds = read_dataset(data, labels=labels, split=split, limit=limit, path_column=path_column,
                      age_column=age_column, split_column=split_column, subject_column=subject_column,
                      gender_column=gender_column)
    if ds.binned and protocol != "split":
        raise ConfigError(f"{ds.source} has age bins (age_low/age_high), not ages: --protocol {protocol} needs exact "
                          "ages. Use --protocol split.")
    if group_column and group_column not in ds.columns:
        raise ConfigError(f"{ds.source}: no column {group_column!r} for --group-column (columns: {ds.columns}).")
    _check_protocol(ds, protocol, group_column, folds)
    check_files(ds)  # every listed image, before the first is processed
    return ds


def _check_protocol(ds: Dataset, protocol: str, group_column: str, folds: int) -> None:
    """InputError when the rows of ``ds`` cannot be sliced as ``protocol`` asks (see :func:`read_evaluation_set`)."""
    which = f"{ds.source} ({len(ds.rows)} row(s) of split {ds.split})"
    if protocol == "kfold":
        if folds < 2:
            raise InputError(f"--folds {folds}: k-fold needs at least 2 folds.")
        subjects = ds.subjects()
        without = [r["path"] for r, sub in zip(ds.rows, subjects) if not sub]
        if without and len(without) < len(subjects):  # a row k-fold would put people on both sides of a fold
            raise InputError(f"--protocol kfold: {len(without)} of {len(subjects)} row(s) of {ds.source} have no "
                             f"subject id in column {ds.subject_column!r} (first: {', '.join(map(repr, without[:3]))})"
                             "; folds are dealt by subject, so every row needs one. Fill them in (a person with one "
                             "image may take any id of its own), or leave those rows out.")
        units = (len(set(subjects)), "subject(s)") if all(subjects) else (len(ds.rows), "row(s)")
        if folds > units[0]:
            raise InputError(f"--folds {folds}: {which} has only {units[0]} {units[1]} to deal into folds. Use "
                             f"--folds {units[0]} or fewer" + (" (at least 2)" if units[0] < 2 else "")
                             + ", or more rows (--split, --limit).")
    elif protocol == "logo":
        groups = sorted({r.get(group_column, "") for r in ds.rows} - {""})
        if len(groups) < 2:
            raise InputError(f"--protocol logo --group-column {group_column}: {which} has {len(groups)} group(s) "
                             f"({', '.join(map(repr, groups)) or 'none'}); leave-one-group-out needs at least two. "
                             "Choose another column or more rows.")


def evaluation_inputs(ds: Dataset, model: str = "", baseline: str | None = None) -> list[tuple[str, str]]:
    """(what it is, file) of each input of an evaluation of ``ds``: the labels file, every listed image, the
    ``--compare`` baseline and the model file, where they are files (:func:`agescan.eval.outputs.check_outputs`
    never writes over them)."""
    inputs = [("the labels file", ds.source)] if Path(ds.source).is_file() else []
    inputs += [("a listed image", str(r["file"])) for r in ds.rows]
    if baseline:
        inputs.append(("the --compare baseline", baseline))
    if model and Path(model).is_file():
        inputs.append(("the model file", model))
    return inputs


def plot_files(plots_dir: str | Path, binned: bool = False) -> list[Path]:
    """The files ``plots_dir`` receives: :func:`agescan.eval.report.plots`', or for a set with age bins
    :func:`agescan.eval.report.binned_plots`'."""
    from agescan.eval.report import BINNED_PLOT_FILES, PLOT_FILES

    return [Path(plots_dir) / name for name in (BINNED_PLOT_FILES if binned else PLOT_FILES)]


def evaluate_folder(model: str, data: str | Path, *, split: str = "test", condition: str = "clean", limit: int = 0,
                    predictions: str | None = None, threads: int = 0, detector: str | None = None,
                    minor_threshold: float | None = None, plots_dir: str | None = None,
                    labels: str | None = None, path_column: str = "path", age_column: str = "age",
                    split_column: str = "split", protocol: str = "split", folds: int = 5, group_column: str = "",
                    seed: int = 0, profile_yaw: float | None = None, dataset: Dataset | None = None,
                    overwrite: bool = True, subject_column: str = "", gender_column: str = "") -> dict:
    """Run the pipeline on every labelled image and return a metrics report (see :func:`age_metrics`).

    ``detector``: a registered detector (None: the pipeline's default). ``data``/``labels``/``*_column``: any
    labelled set (see :func:`agescan.eval.datasets.read_dataset`), read and checked by :func:`read_evaluation_set`
    before any image is processed (``dataset``: one it returned, not read again). ``protocol``: ``split`` (metrics
    of the chosen split), ``kfold`` (also per fold of a seeded ``folds``-way partition, with mean and sd) or ``logo``
    (also per value of ``group_column``, leave-one-group-out). ``profile_yaw``: the pipeline's pose-aware framing
    threshold (None: its default, :data:`agescan.align.PROFILE_YAW`; 90: never frame from the box). ``predictions``
    and ``plots_dir`` are written never over an input (InputError before any work) and over an existing file only
    with ``overwrite``. Misses are scored as the module docstring says.
    """
    from agescan import AgeEstimator
    from agescan.detect import DEFAULT_DETECTOR
    from agescan.eval.outputs import check_outputs

    condition = canonical_condition(condition)
    ds = dataset or read_evaluation_set(data, labels=labels, split=split, limit=limit, path_column=path_column,
                                        age_column=age_column, split_column=split_column, protocol=protocol,
                                        group_column=group_column, folds=folds, subject_column=subject_column,
                                        gender_column=gender_column)
    written = {"predictions": predictions} if predictions else {}
    if plots_dir:
        written.update({f"plots {p.name}": p for p in plot_files(plots_dir, ds.binned)})
    check_outputs(written, evaluation_inputs(ds, model), overwrite=overwrite)
    rows = ds.rows
    detector = detector or DEFAULT_DETECTOR
    profile_yaw = PROFILE_YAW if profile_yaw is None else float(profile_yaw)
    # the pipeline a platform receiving pictures in this condition runs: the card's thresholds for it, if any
    est = AgeEstimator(model, detector, threads=threads, profile_yaw=profile_yaw,
                       condition="" if condition == "clean" else condition).load()
    t0 = time.time()
    lab = predict_labelled(est, rows, condition, threads=threads)
    probs, found, point, boxed = lab.probs, lab.found, lab.age, lab.boxed
    seconds = time.time() - t0
    true = np.array([r["age"] for r in rows], dtype=np.float64)
    missed_at = miss_age(true)
    n_bins, min_age = est.card.n_bins, est.card.min_age
    e2e = probs.copy()
    e2e[~found] = _one_hot(missed_at, min_age, n_bins)
    pred = np.where(found, point, float(round(missed_at)))
    decider = est.decider
    metric_args = {"decider": decider, "level": est.interval_level, "minor_age": est.minor_age}
    fb_probs, fb_point = lab.fallback_probs, lab.fallback_age
    head = {
        "model": est.model.id, "model_sha256": est.model.sha256, "data": ds.source, "split": ds.split,
        "rows_sha256": hashlib.sha256("\n".join(f"{r['path']}\t{r['age']:g}" for r in rows).encode()).hexdigest(),
        "unlabelled_files": ds.unlabelled,
        # what the reader of these numbers must know (also on stderr and in the Markdown)
        "warnings": [f"{ds.unlabelled} row(s) or file(s) of {ds.source} have no age and were left out (first: "
                     f"{', '.join(ds.unlabelled_examples)})"] if ds.unlabelled else [],
        "condition": condition, "detector": detector,
        "band_reference": BAND_REFERENCE if condition != "clean" else "",
        "faces_found": int(found.sum()), "faces_missed": int((~found).sum()),
        "profile_yaw": profile_yaw, "faces_framed_from_box": int(boxed.sum()),
        "miss_rule": f"a missed face is scored as age {missed_at:g} (the set's median age, at least 18), is "
                     "never flagged as a minor and has no interval (not covered)",
        "calibration": {"temperature": decider.calibration.temperature,
                        "conformal": decider.calibration.conformal is not None,
                        "flag_threshold": est.flag_threshold, "max_error": est.max_error,
                        "refer_interval": decider.calibration.refer_interval},
        "seconds": {"pipeline": round(seconds, 1)},
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
    }
    from agescan.decisions import p_below

    p_minor = p_below(e2e, est.minor_age, min_age)
    if ds.binned:
        report = _binned_report(head, rows, p_minor, found, est, minor_threshold, pred, lab.flagged)
        if plots_dir:
            from agescan.eval.report import binned_plots

            low, high = (np.array([r[k] for r in rows]) for k in ("age_low", "age_high"))
            report["plots"] = [str(p) for p in binned_plots(low, high, pred, report, plots_dir,
                                                            f"{est.model.id}, {ds.split}, {condition}")]
        if predictions:
            _write_predictions(predictions, rows, found, pred, p_minor, ("age_low", "age_high"))
        return report
    report = {
        **head,
        **age_metrics(true, e2e, min_age, minor_threshold=minor_threshold, pred=pred, found=found, **metric_args),
        "slices": slices(rows, true, pred),
        "found_only": (_secondary(age_metrics(true[found], probs[found], min_age, pred=point[found],
                                              **metric_args)) if found.any() else {}),
        "template_fallback": (_secondary(age_metrics(true, fb_probs, min_age, pred=fb_point, **metric_args))
                              if not np.isnan(fb_point).any() else {}),
        "reliability_and_coverage": calibration_metrics(true, e2e, pred, found, decider, min_age),
        "triage": _triage(true < est.minor_age, lab.flagged, est),
    }
    if protocol == "kfold":  # slices of this model's predictions; by subject when the set has subject ids
        subjects = [r.get("subject", "") for r in rows]
        by_subject = all(subjects)  # every row or none (read_evaluation_set refuses a set in between)
        assign = grouped_kfold_assign(subjects, folds, seed) if by_subject else kfold_assign(len(rows), folds, seed)
        if not by_subject:
            report["warnings"].append(
                f"--protocol kfold: {ds.source} has no subject ids, so rows were dealt into folds: one person's "
                "images may sit in several folds. Give a subject column (--subject-column) for subject-disjoint "
                "folds.")
        report["protocol"] = {"name": "kfold", "k": folds, "seed": seed, "by_subject": by_subject,
                              "note": "slices of one model's predictions; no fold was held out of its training "
                                      "(agescan train cv trains per fold)",
                              **fold_summary(true, e2e, min_age, assign, pred=pred)}
    elif protocol == "logo":
        assign, names = group_assign([r.get(group_column, "") for r in rows])
        names = [SLICE_NAMES.get(group_column, {}).get(v, v) for v in names]  # UTKFace's race codes by name
        report["protocol"] = {"name": "logo", "group_column": group_column, "left_out_without_group":
                              int((assign < 0).sum()), **fold_summary(true, e2e, min_age, assign, names, pred=pred)}
    if plots_dir:
        from agescan.eval.report import plots

        report["plots"] = [str(p) for p in plots(true, pred, plots_dir, f"{est.model.id}, {ds.split}, {condition}")]
    if predictions:
        _write_predictions(predictions, rows, found, pred, p_minor, ("gender", "race"))
    return report


def _binned_report(head: dict, rows: list[dict], p_minor: np.ndarray, found: np.ndarray, est,
                   minor_threshold: float | None, pred: np.ndarray, flagged: np.ndarray) -> dict:
    """The report of a set with age bins: :func:`binned_point_metrics` of the point ages the pipeline reported
    (``pred``), its P(minor) end to end (``p_minor``) and the flag each face got (``flagged``, the pipeline's rule,
    as :func:`_triage` reports it for exact ages), end to end and over the faces found. The P(minor) shares are at
    the model card's threshold unless ``minor_threshold`` is given (a found face's end-to-end P(minor) is its own)."""
    from agescan.eval.metrics import binned_point_metrics

    threshold = est.flag_threshold if minor_threshold is None else float(minor_threshold)
    low = np.array([r["age_low"] for r in rows])
    high = np.array([r["age_high"] for r in rows])
    minor_age = est.minor_age
    metrics = binned_point_metrics(low, high, pred, p_minor, flag_threshold=threshold, minor_age=minor_age,
                                   flagged=flagged)
    found_only = {}
    if found.any():
        f = binned_point_metrics(low[found], high[found], pred[found], p_minor[found], flag_threshold=threshold,
                                 minor_age=minor_age, flagged=flagged[found])
        found_only = {k: f[k] for k in ("n", "bin_accuracy", "bin_1off", "mae_to_bin")}
        found_only["children_under_minor_age"] = f["children"]["under_minor_age"]
        found_only["children_flagged"] = f["children"]["flagged"]
        found_only["children_p_minor_recall"] = f["children"]["p_minor_recall"]
    return {**head, "labels": "age bins", **metrics, "found_only": found_only}


def _write_predictions(path: str, rows: list[dict], found: np.ndarray, pred: np.ndarray, p_minor: np.ndarray,
                       extra: tuple[str, ...]) -> None:
    """Per-image predictions CSV: path, true age (bin middle for binned sets), found, point age, P(minor), and the
    rows' ``extra`` columns."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        wtr = csv.writer(fh)
        wtr.writerow(["path", "age", "found", "pred", "p_minor", *extra])
        for r, f, pa, pm in zip(rows, found, pred, p_minor):
            wtr.writerow([r["path"], f"{r['age']:g}", int(f), f"{pa:.3f}", f"{pm:.4f}",
                          *(f"{r[c]:g}" if isinstance(r.get(c), float) else r.get(c, "") for c in extra)])


#: The metrics :func:`compare` puts side by side (all in every :func:`evaluate_folder` report; the second tuple for
#: sets with age bins).
COMPARED = ("mae", "mae_0_25", "group_accuracy_0_25", "cs5", "challenge25_teens_under_25")
COMPARED_BINNED = ("bin_accuracy", "bin_1off", "mae_to_bin")


def _measured(v) -> bool:
    """A metric value a report may hold: a number, NaN or None (not measured: no face of that kind)."""
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def check_baseline(baseline, source: str = "baseline") -> dict:
    """``baseline`` (the parsed ``--compare`` file) if it is an evaluation report :func:`compare` can read: a JSON
    object with ``model``, ``rows_sha256``, ``condition``, ``n`` and the compared metrics as numbers (NaN or null
    allowed); InputError naming ``source`` otherwise. Checked before the evaluation runs."""
    again = "Give the --out file of an earlier `agescan evaluate` of the same set."
    if not isinstance(baseline, dict):
        raise InputError(f"{source}: not an agescan evaluate report (a JSON {type(baseline).__name__}, not an "
                         f"object). {again}")
    metrics = COMPARED_BINNED if "bin_accuracy" in baseline else COMPARED
    missing = [k for k in ("model", "rows_sha256", "condition", "n", *metrics) if k not in baseline]
    if missing:
        raise InputError(f"{source}: not an agescan evaluate report: no {', '.join(map(repr, missing))}. {again}")
    bad = [k for k in metrics if not _measured(baseline[k])]
    if bad:
        raise InputError(f"{source}: {', '.join(f'{k} {baseline[k]!r}' for k in bad)}: not a number. {again}")
    return baseline


def compare(baseline: dict, report: dict) -> dict:
    """The paper's Impv (Eq. 2, :func:`agescan.eval.metrics.impv`) of ``report`` over ``baseline``, per metric.

    For MAE a positive Impv means the new run is better; for accuracies a negative one does (the paper's sign).
    Impv is a change relative to the baseline: where the baseline is 0 or was not measured (NaN, null), or this
    run's value was not, it is None (JSON null) with a ``note`` saying why. Refuses a ``baseline`` that is no report
    (:func:`check_baseline`, InputError), and reports of other rows (paths and ages, however the set was named) or
    another condition (ConfigError): an Impv between different test sets means nothing.
    """
    check_baseline(baseline)

    def same(key: str) -> tuple:
        a, b = baseline.get(key), report.get(key)
        if key == "condition":  # stored reports may use an older spelling (eyeband)
            a, b = (canonical_condition(c) if isinstance(c, str) else c for c in (a, b))
        return a, b

    if ("bin_accuracy" in baseline) != ("bin_accuracy" in report):
        kind = lambda r: "age bins" if "bin_accuracy" in r else "exact ages"  # noqa: E731
        raise ConfigError(f"cannot compare: the baseline was scored on {kind(baseline)}, this run on "
                          f"{kind(report)}. Evaluate both on the same set, split and condition.")
    for key in ("rows_sha256", "condition", "n"):
        a, b = same(key)
        if a != b:
            raise ConfigError(f"cannot compare: baseline {key} {baseline.get(key)!r} but this run has "
                              f"{report.get(key)!r}. Evaluate both on the same set, split and condition.")
    return {"baseline_model": baseline["model"], "baseline_sha256": baseline.get("model_sha256", ""),
            "metrics": {k: _impv_entry(baseline[k], report[k])
                        for k in (COMPARED_BINNED if "bin_accuracy" in report else COMPARED)}}


def _impv_entry(a, b) -> dict:
    """One metric of :func:`compare`: baseline, this run, Impv (None with a note where it is undefined)."""
    from agescan.eval.metrics import impv

    finite = lambda v: v is not None and math.isfinite(v)  # noqa: E731
    if not finite(a) or not finite(b):
        return {"baseline": a, "this": b, "impv": None,
                "note": f"{'the baseline' if not finite(a) else 'this run'} has no value (no face of that kind)"}
    if a == 0:
        return {"baseline": a, "this": b, "impv": None,
                "note": "the baseline is 0: Impv, a change relative to it, is undefined; compare the values"}
    return {"baseline": a, "this": b, "impv": impv(a, b)}
