"""The ``agescan`` command line: a thin adapter over :class:`agescan.AgeEstimator`.

Exit codes (all commands):
    0  success: every input was read (with or without faces)
    1  some inputs could not be read; each is reported and the others were processed
    2  command-line usage error (bad option, missing file, output exists)
    3  model or configuration error (unknown model, weights failing their sha256 check)
    130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

EXIT_OK, EXIT_INPUT, EXIT_USAGE, EXIT_CONFIG, EXIT_INTERRUPT = 0, 1, 2, 3, 130

EPILOG = """exit codes:
  0    success: every input was read (with or without faces)
  1    some inputs could not be read; each is reported, the others were processed
  2    command-line usage error (bad option, missing input, output file exists)
  3    model or configuration error (unknown model, weights failing their sha256 check)
  130  interrupted
"""


def _condition(value: str) -> str:
    """argparse type of --condition: clean or a registered transform (older spellings accepted)."""
    from agescan.errors import ConfigError
    from agescan.eval.run import canonical_condition

    try:
        return canonical_condition(value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _transform(value: str) -> str:
    """argparse type of --method / --transform: a registered privacy transform (older spellings accepted)."""
    from agescan.errors import ModelNotFoundError
    from agescan.privacy import canonical_op, list_privacy_ops

    try:
        return canonical_op(value)
    except ModelNotFoundError:
        raise argparse.ArgumentTypeError(f"unknown transform {value!r}; choose from "
                                         f"{', '.join(list_privacy_ops())}") from None


def _profile_option(g) -> None:
    from agescan.align import PROFILE_YAW

    g.add_argument("--profile-yaw", type=float, default=PROFILE_YAW, metavar="DEG",
                   help=f"frame a face turned more than DEG degrees (yaw estimated from its landmarks) from its box "
                        f"instead of warping it onto the frontal template (default: {PROFILE_YAW:g}, chosen on val; "
                        "90 = always warp, as before pose-aware framing; 0 = always from the box)")


def _estimator_options(p: argparse.ArgumentParser, media: bool = True) -> None:
    """The pipeline's options; ``media``: also those of videos and archives (commands reading them)."""
    from agescan.detect import DEFAULT_DETECTOR
    from agescan.io import DEFAULT_MAX_PIXELS
    from agescan.models import DEFAULT_MODEL

    g = p.add_argument_group("model and decisions")
    g.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"registered model name (see `agescan models`) or an exported .onnx file (default: {DEFAULT_MODEL})")
    g.add_argument("--detector", default=DEFAULT_DETECTOR,
                   help=f"registered face detector (default: {DEFAULT_DETECTOR}; `agescan models` lists them)")
    g.add_argument("--min-face-size", type=int, default=24, metavar="PX",
                   help="smallest face side in pixels to look for (default: 24)")
    _profile_option(g)
    g.add_argument("--minor-age", type=int, default=18, metavar="AGE",
                   help="report P(age < AGE) as p_minor (default: 18)")
    g.add_argument("--interval", type=float, default=0.9, metavar="LEVEL",
                   help="level of the reported age interval (default: 0.9): split-conformal per predicted age band "
                        "when the model card carries conformal data (the shipped models do), else the central LEVEL "
                        "of the distribution")
    g.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help=f"refuse images with more pixels than this (decompression bombs; default: {DEFAULT_MAX_PIXELS})")
    g.add_argument("--threads", type=int, default=0, help="onnxruntime threads per model (default: 0 = automatic)")
    if not media:
        return
    g.add_argument("--video-every", type=float, default=1.0, metavar="SECONDS",
                   help="sample one video frame every SECONDS of video (default: 1.0; 0 = first frame and "
                        "scene changes only); each frame is one result")
    g.add_argument("--scene-change", type=float, default=0.0, metavar="T",
                   help="also sample a frame at each scene change: mean absolute difference of 32x32 grey "
                        "thumbnails, probed 5 times a second, above T of the pixel range (0..1; 0.15 catches hard "
                        "cuts; default 0 = off)")
    from agescan.io.archives import DEFAULT_ARCHIVE_DEPTH

    g.add_argument("--archive-depth", type=int, default=DEFAULT_ARCHIVE_DEPTH, metavar="N",
                   help=f"read zip/tar archives inside archives to N levels (default: {DEFAULT_ARCHIVE_DEPTH}; 1 = "
                        "only the archives themselves); a deeper archive, a video inside an archive or an unreadable "
                        "nested archive is recorded as an item that was not read, with the reason")


def _transform_options(p: argparse.ArgumentParser) -> None:
    from agescan.privacy import list_privacy_ops

    g = p.add_argument_group("privacy (what a platform that only receives anonymised pictures would see)")
    g.add_argument("--transform", type=_transform, default=None, metavar="NAME",
                   help="apply a privacy transform to each picture first (placed where the detector finds the "
                        "clean faces), then detect and estimate on the transformed picture: " +
                        ", ".join(list_privacy_ops()) + " (docs/privacy.md)")
    g.add_argument("--key-file", metavar="FILE",
                   help="the secret key of --transform keyed-permutation (default: a random key, never stored)")
    g.add_argument("--input-condition", type=_transform, default=None, metavar="NAME",
                   help="the privacy transform your pictures have already been through (e.g. eye-mosaic): flag "
                        "them with the model card's threshold and rule fitted for it, where the card has them "
                        "(`agescan models` lists them); --transform implies its own")


def _triage_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("triage (which faces go to the reviewer; decided once per face, agescan.triage)")
    from agescan.triage import DEFAULT_CHALLENGE_AGE, DEFAULT_FLAG_THRESHOLD

    g.add_argument("--flag-threshold", type=float, default=None, metavar="P",
                   help="triage: flag a face for review when its calibrated P(minor) >= P (default: the model card's, "
                        "chosen on val so that at most 1%% of minors pass, clean or with the eye band, by `agescan "
                        f"train calibrate`; {DEFAULT_FLAG_THRESHOLD} for a card without one; docs/calibration.md)")
    g.add_argument("--challenge-age", type=float, default=DEFAULT_CHALLENGE_AGE, metavar="AGE",
                   help="triage: also flag a face whose point age is under AGE (e.g. 25; default: 0 = off)")


def _estimator_kwargs(a: argparse.Namespace) -> dict:
    """AgeEstimator's arguments from the common options (a command without video options keeps their defaults)."""
    media = {"video_every": a.video_every, "video_scene": a.scene_change} if hasattr(a, "video_every") else {}
    return {"model": a.model, "detector": a.detector, "minor_age": a.minor_age, "interval_level": a.interval,
            "min_face_size": a.min_face_size, "max_pixels": a.max_pixels, "threads": a.threads, **media,
            "flag_threshold": a.flag_threshold, "challenge_age": a.challenge_age, "profile_yaw": a.profile_yaw,
            **_transform_kwargs(a)}


def _transform_kwargs(a: argparse.Namespace) -> dict:
    condition = {"condition": a.input_condition} if getattr(a, "input_condition", None) else {}
    if not getattr(a, "transform", None):
        if getattr(a, "key_file", None):
            raise _usage("--key-file goes with --transform keyed-permutation")
        return condition
    from agescan.anonymize import read_key_file

    return {"transform": a.transform, "transform_key": read_key_file(a.key_file) if a.key_file else None,
            **condition}


def _usage(msg: str) -> Exception:
    from agescan.errors import InputError

    return InputError(msg)


def _make_estimator(a: argparse.Namespace, **extra):
    from agescan import AgeEstimator

    return AgeEstimator(**_estimator_kwargs(a), **extra).load()


def build_parser() -> argparse.ArgumentParser:
    from agescan.detect import DEFAULT_DETECTOR
    from agescan.eval.datasets import add_preset_argument
    from agescan.io import DEFAULT_MAX_PIXELS
    from agescan.models import DEFAULT_MODEL
    from agescan.privacy import list_privacy_ops

    from agescan import __version__

    p = argparse.ArgumentParser(
        prog="agescan", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Estimate the age of every face in images: detection, alignment, an age distribution per face "
                    "(point age, interval, P(under 18), age group).")
    p.add_argument("--version", action="version", version=f"agescan {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    e = sub.add_parser("estimate", help="estimate ages in one or more photos and print a table or JSON",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
                       description="Estimate the age of every face in the given photos (folders and zip/tar archives "
                                   "are read as a scan reads them). Prints a table (file, face box, age, interval, "
                                   "P(under 18), group, FLAGGED for review), or with --json one JSON record per image "
                                   "in the versioned result schema (agescan.result/4); each result is printed as "
                                   "soon as it is ready.")
    e.add_argument("photos", nargs="+", metavar="PHOTO",
                   help="image files, folders (walked recursively) or zip/tar archives (read in place)")
    e.add_argument("--json", action="store_true", help="print JSON Lines (one record per image) instead of a table")
    e.add_argument("--distribution", action="store_true", help="with --json, include the full age distribution")
    e.add_argument("--batch-size", type=int, default=64, metavar="N",
                   help="faces per model call (default: 64); a result is printed when its batch is done, so 1 "
                        "prints each image as soon as it is estimated")
    _estimator_options(e)
    _transform_options(e)
    _triage_options(e)

    s = sub.add_parser("scan", help="walk folders and write one result per image to .jsonl, .csv or a resumable database",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
                       description="Walk folders (recursively, in sorted order) and write a result per image to a "
                                   "JSON Lines or CSV file (--out), or to a results database (--db: SQLite or PostgreSQL), with a "
                                   "progress bar (files/s, faces, faces flagged for review, errors, ETA). Unreadable files are "
                                   "recorded as errors and the scan carries on. With --db the scan is resumable: "
                                   "rerun the same command after an interruption (even kill -9) and it continues "
                                   "where it stopped, without losing or duplicating a record.")
    s.add_argument("sources", nargs="+", metavar="SOURCE", help="folders or image files")
    dest = s.add_mutually_exclusive_group(required=True)
    dest.add_argument("--out", help="output file: .jsonl or .csv (written whole; .partial until done)")
    dest.add_argument("--db", help="results database: a SQLite file (created if absent) or a postgresql://user@host/db "
                                   "URL for a team server (needs agescan[postgres]); resumable")
    s.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    s.add_argument("--no-recursive", action="store_true", help="do not descend into sub-folders")
    s.add_argument("--distribution", action="store_true", help="include the full age distribution (.jsonl only)")
    s.add_argument("--workers", type=int, default=2, help="threads decoding and detecting (default: 2)")
    s.add_argument("--batch-size", type=int, default=64, help="faces per model call (default: 64)")
    g = s.add_argument_group("distributed scan (with --db; needs agescan[ray]; see docs/scale.md)")
    g.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: stream on this machine (default); ray: map the pipeline over partitions of the "
                        "file list with Ray Data, one Parquet file per partition, merged into --db")
    g.add_argument("--address", metavar="ADDR", help="Ray cluster to join (e.g. auto or ray://head:10001; default: "
                                                     "start a local Ray runtime)")
    g.add_argument("--partition-size", type=int, default=1000, metavar="N",
                   help="items (files or archive members) per partition (default: 1000)")
    g.add_argument("--work-dir", metavar="DIR", help="where partition files go, on storage every node sees "
                                                     "(default: DB.parts beside a SQLite --db; required with PostgreSQL)")
    g.add_argument("--ray-actors", type=int, default=0, metavar="N",
                   help="scanning actors, one CPU each (default: the cluster's CPU count)")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    _estimator_options(s)
    _transform_options(s)
    _triage_options(s)

    an = sub.add_parser("anonymize", help="write anonymised copies of pictures (eye mask, mosaic, blur, keyed "
                                          "permutation, ...)",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
                        description="Write an anonymised copy of every picture (files, or folders walked "
                                    "recursively) into --out, keeping folders' relative paths. Faces are found by "
                                    "the pipeline's detector and the transform is placed on each; a picture with no "
                                    "face found is not written unless --keep-faceless. Inputs are never written to; "
                                    "an --out inside an input folder is refused. EXIF orientation is applied to the "
                                    "pixels and no metadata is copied. keyed-permutation needs --key-file, writes "
                                    "PNG and is undone with --decrypt and the same key. docs/privacy.md says what "
                                    "each transform hides and leaves.")
    an.add_argument("inputs", nargs="*", metavar="IN", help="picture files or folders")
    an.add_argument("--method", type=_transform, metavar="NAME",
                    help="the transform: " + ", ".join(list_privacy_ops()))
    an.add_argument("--out", metavar="DIR", help="output folder (created; outside every input folder)")
    an.add_argument("--key-file", metavar="FILE", help="secret key of keyed-permutation (raw bytes, >= 16)")
    an.add_argument("--new-key", metavar="FILE", help="create a new random 256-bit key file (mode 600) and exit; "
                                                      "it is never overwritten")
    an.add_argument("--decrypt", action="store_true", help="undo keyed-permutation with --key-file")
    an.add_argument("--seed", type=int, default=0, help="seed of the eye mosaic's drawn pixels (default: 0)")
    an.add_argument("--keep-faceless", action="store_true",
                    help="also write pictures where no face is found (face transforms leave them unchanged)")
    an.add_argument("--overwrite", action="store_true", help="replace existing output files (never an input)")
    an.add_argument("--no-progress", action="store_true", help="no progress bar")
    an.add_argument("--detector", default=DEFAULT_DETECTOR,
                    help=f"registered face detector (default: {DEFAULT_DETECTOR})")
    an.add_argument("--min-face-size", type=int, default=24, metavar="PX",
                    help="smallest face side in pixels to look for (default: 24)")

    m = sub.add_parser("models", help="list the registered models with their cards, and the detectors",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
                       description="List registered age models with their model cards (input, crop, age range, "
                                   "licence, training data, metrics, sha256) and the registered face detectors.")
    m.add_argument("--json", action="store_true", help="print the full cards as JSON")

    x = sub.add_parser("explain", help="draw what the age model looks at onto each photo (saliency maps)",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
                       description="For every face of each photo, a saliency map computed on the aligned face the "
                                   "model sees and drawn back onto the photo through the inverse of the alignment: "
                                   "occlusion (a grey square slid over the face; works without torch), sensitivity "
                                   "(APPA-REAL's gradient of the age w.r.t. the pixels, grey, Gaussian sigma 2.5) "
                                   "or gradcam (last convolutional layer); the last two need the train extra and a "
                                   "ResNet-10 model such as the default. The faces are found, framed and decided by "
                                   "the same pipeline and options as `agescan estimate` (--profile-yaw, the triage "
                                   "options, ...). Writes DIR/<photo's file name>.<method>.png, keeping the photos' "
                                   "paths relative to the folder they share (a/same.jpg and b/same.jpg give "
                                   "DIR/a/same.jpg.occlusion.png and DIR/b/same.jpg.occlusion.png; an input is never "
                                   "written over), and prints one JSON record per photo and method as its picture is "
                                   "written; a photo that cannot be read is a record with its error, the others are "
                                   "explained (exit status 1). See docs/explain.md.")
    x.add_argument("photos", nargs="+", metavar="PHOTO", help="image files")
    x.add_argument("--out", required=True, metavar="DIR", help="folder for the pictures (created if absent)")
    x.add_argument("--overwrite", action="store_true",
                   help="replace pictures an earlier run wrote (refused otherwise; an input is never replaced)")
    x.add_argument("--method", action="append", choices=["occlusion", "sensitivity", "gradcam"],
                   help="saliency method; repeat for several (default: occlusion)")
    x.add_argument("--anonymise", default="", metavar="OP",
                   help="a privacy op applied to each face before the model (e.g. eye-band): what does the model "
                        "look at when the eyes are hidden?")
    _estimator_options(x, media=False)
    _triage_options(x)

    rp = sub.add_parser("report", help="write a self-contained HTML report (and CSV exports) of a --db scan",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
                        description="Write OUT/index.html, a page that opens from disk with no server or network: "
                                    "files with a flagged face first, then by highest P(minor), with a threshold filter "
                                    "that never hides a flagged face, face thumbnails blurred "
                                    "by default (click to reveal), identical files stacked, an age histogram, errors "
                                    "and the run's provenance; plus OUT/items.csv and OUT/faces.csv with every record.")
    rp.add_argument("--db", required=True, help="results database written by `agescan scan --db` (file or "
                                                "postgresql:// URL; opened read-only)")
    rp.add_argument("--out", required=True, help="report folder (created)")
    rp.add_argument("--run", type=int, help="run id (default: the latest run)")
    rp.add_argument("--threshold", type=float, metavar="P",
                    help="the page filter's starting P(minor) (default: the run's --flag-threshold); files with a "
                         "flagged face are shown whatever it is. Which faces are "
                         "flagged for review was decided by the scan and is stored with each face")
    rp.add_argument("--max-items", type=int, default=2000, help="files listed on the page (default: 2000; CSVs hold all)")
    rp.add_argument("--no-thumbnails", action="store_true", help="do not cut face thumbnails from the evidence files")

    sv = sub.add_parser("serve", help="serve the HTTP API and the privacy-first age-check web page (agescan[serve])",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
                        description="Serve POST /v1/estimate (the result record of `estimate --json`), POST "
                                    "/v1/age-check (pass / fail / refer against a threshold), GET /v1/models, GET "
                                    "/healthz, the OpenAPI description at /docs, and at / a web page that finds the "
                                    "face and covers the eyes in the browser before anything is uploaded. Images "
                                    "stay in memory for the request only; nothing is written to disk or logged. "
                                    "API keys are required unless the server listens on loopback only. "
                                    "docs/service.md has the details and measured load.")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine "
                                                        "only; 0.0.0.0 for every interface, which needs API keys)")
    sv.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    sv.add_argument("--workers", type=int, default=1, help="server processes, each loading the model once (default: 1)")
    sv.add_argument("--compute-threads", type=int, default=0, metavar="N",
                    help="images estimated in parallel per process (default: 0 = the CPUs available)")
    sv.add_argument("--max-in-flight", type=int, default=64, metavar="N",
                    help="requests admitted at once per process, computing or waiting; past it requests are "
                         "answered 503 at once (default: 64)")
    sv.add_argument("--max-body-mb", type=float, default=10.0, metavar="MB",
                    help="largest request body in MiB (default: 10)")
    sv.add_argument("--request-timeout", type=float, default=30.0, metavar="S",
                    help="seconds a request may wait and compute before a 503 (default: 30)")
    sv.add_argument("--api-key-file", metavar="FILE",
                    help="accepted API keys, one per line, # comments allowed; keys are then required, and a "
                         "file without a key is an error (default: the comma-separated AGESCAN_API_KEYS "
                         "variable); clients send X-API-Key or Authorization: Bearer")
    sv.add_argument("--require-api-key", choices=["auto", "yes", "no"], default="auto",
                    help="auto: required unless --host is loopback (default); no: only behind a proxy that "
                         "authenticates")
    sv.add_argument("--no-page", action="store_true", help="do not serve the web page at /")
    sv.add_argument("--access-log", action="store_true",
                    help="log each request's method, path and status (never bodies; off by default: client "
                         "addresses are personal data)")
    sv.add_argument("--model", default=DEFAULT_MODEL, help=f"registered model or .onnx (default: {DEFAULT_MODEL})")
    sv.add_argument("--detector", default=DEFAULT_DETECTOR,
                    help=f"registered face detector (default: {DEFAULT_DETECTOR})")
    sv.add_argument("--min-face-size", type=int, default=24, metavar="PX",
                    help="smallest face side in pixels to look for (default: 24)")
    sv.add_argument("--max-pixels", type=int, default=40_000_000, metavar="N",
                    help=f"refuse images with more pixels than this with 413 (default: 40000000; the CLI's is "
                         f"{DEFAULT_MAX_PIXELS})")

    tr = sub.add_parser("train", help="prepare crops, train, and publish an age model (needs the train extra)",
                        add_help=False, description="agescan train {prepare,fit,publish} ...; each step's --help "
                                                    "lists its options. Needs torch: pip install 'agescan[train]'.")
    tr.add_argument("step", choices=["prepare", "fit", "publish", "calibrate", "cv", "grid", "detector",
                                     "publish-detector"],
                    help="prepare crops | fit a model | publish a run | fit a model's calibration on val into its "
                         "card | run a held-out protocol (subject-disjoint k-fold, leave-one-subject-out, ...: train "
                         "per fold, evaluate each held-out fold) | learning-rate x batch grid search on val | "
                         "fine-tune the face detector | publish a detector run with its card")
    tr.add_argument("args", nargs=argparse.REMAINDER, help="the step's own arguments (see STEP --help)")
    p.train_parser = tr  # main() shows its help for `agescan train [--help]` (it passes --help on to the steps)

    ev = sub.add_parser("evaluate", help="measure a model on a labelled face set (MAE, groups, minors)",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
                        description="Run the full pipeline users call (AgeEstimator: detect, align, model) on a "
                                    "labelled set and print metrics (MAE, 5-group accuracy, minors, Challenge-25, "
                                    "slices). A face the detector misses counts as a miss: it is scored at the "
                                    "set's median age (at least 18) and never flagged; faces found and two "
                                    "labelled secondary rows (found faces only; misses aligned by template) are "
                                    "reported beside. Every listed image is checked first: one that does not "
                                    "exist, is a folder or is not a picture stops the run before any work (exit 3, "
                                    "with the count and the first few), as does an age that is not a finite number "
                                    "of years, 0 or more (naming the row); a row without an age is left out with a "
                                    "warning (stderr, the JSON's 'warnings', the Markdown). Optionally as "
                                    "JSON, Markdown, plots and per-image predictions. DATA is a folder with "
                                    "labels.csv (columns path, age, optional split, gender, race; UTKFace's "
                                    "layout; or age bins as age_low and age_high, FairFace's layout, reported as bin "
                                    "accuracy, each bin's share under 18, the share of children the pipeline flags "
                                    "and their P(minor) at the flag threshold), any CSV given with --labels, or a "
                                    "folder whose sub-folder or file names start with the age (7/a.jpg, 25_0_1_x.jpg); --preset names the columns of "
                                    "UTKFace or MORPH. --protocol kfold|logo slices this one model's predictions "
                                    "(per-fold metrics, mean and sd); held-out training per fold is `agescan train "
                                    "cv`.")
    ev.add_argument("model", help="registered model name or .onnx path")
    ev.add_argument("data", help="folder with labels.csv, or age-named sub-folders or files")
    ev.add_argument("--split", default="test",
                    help="value of the split column to use (default: test; 'all' = every row; a set without a "
                         "split column is used whole)")
    ev.add_argument("--labels", metavar="CSV", help="labels file (default: DATA/labels.csv); paths relative to DATA")
    ev.add_argument("--path-column", default="path", help="column of image paths (default: path)")
    ev.add_argument("--age-column", default="age", help="column of true ages (default: age)")
    ev.add_argument("--split-column", default="split", help="column of split names (default: split)")
    add_preset_argument(ev)
    ev.add_argument("--protocol", "--slices", dest="protocol", default="split", choices=["split", "kfold", "logo"],
                    help="slices of THIS model's predictions, not held-out training: split: metrics of --split only; "
                         "kfold: also per fold of a seeded --folds partition, by subject (--subject-column; every "
                         "row needs an id: a set where only some rows have one is refused; a set without any is "
                         "dealt by row, with a warning), with mean and sd; logo: also per value of --group-column "
                         "(required; --preset utkface names race). To train one model per fold and score each "
                         "held-out fold, run `agescan train cv`")
    ev.add_argument("--folds", type=_at_least(2), default=5,
                    help="k of --protocol kfold, at least 2 and at most the number of subjects (rows, without "
                         "subject ids) (default: 5)")
    ev.add_argument("--group-column", default="",
                    help="column of groups for --protocol logo (e.g. race; required there, unless --preset names it)")
    ev.add_argument("--subject-column", default="",
                    help="column of subject (person) ids: --protocol kfold deals whole subjects into folds "
                         "(default: 'subject' when present)")
    ev.add_argument("--gender-column", default="",
                    help="column of gender, reported as slices (default: 'gender' when present)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the k-fold partition (default: 0)")
    ev.add_argument("--compare", metavar="BASELINE.json",
                    help="an earlier --out report on the same set: add the paper's Impv of this run over it (a "
                         "file that is not a report is refused before the run; Impv over a baseline value of 0 or "
                         "NaN is null, with a note)")
    ev.add_argument("--condition", default="clean", type=_condition, metavar="CONDITION",
                    help="clean, or a privacy transform applied before the pipeline runs (" + ", ".join(
                        list_privacy_ops()) + "), placed where MTCNN finds the clean face (the UTKFace template "
                        "where it does not), the same for every detector; the keyed permutation is drawn with a "
                        "key the pipeline never sees (default: clean; eyeband = eye-band)")
    ev.add_argument("--out", help="write metrics JSON here")
    ev.add_argument("--predictions", help="write per-image predictions CSV here")
    ev.add_argument("--overwrite", action="store_true",
                    help="replace output files (--out, --predictions, --markdown, --plots' PNGs) that exist; without "
                         "it an existing one is refused before the run. An input (the labels file, a listed image, "
                         "the --compare baseline, the model) is never written over")
    ev.add_argument("--limit", type=_at_least(1), default=0, metavar="N",
                    help="evaluate only the first N rows of the split (N >= 1; for smoke tests)")
    ev.add_argument("--markdown", metavar="FILE", help="also write a Markdown summary table here")
    ev.add_argument("--plots", metavar="DIR", help="write predicted-vs-true, MAE-by-band and 5-group confusion PNGs "
                                                   "here; for age bins, point age by true bin and the bin confusion "
                                                   "(needs matplotlib, in the train extra)")
    ev.add_argument("--minor-threshold", type=_probability, metavar="P",
                    help="also report recall, precision, F2 and adults flagged at P(minor) >= P (choose P on val); for "
                         "age bins, the threshold of the children's recall (default there: the flag threshold)")
    ev.add_argument("--detector", default=DEFAULT_DETECTOR,
                    help=f"registered face detector (default: {DEFAULT_DETECTOR}; `agescan models` lists them)")
    ev.add_argument("--threads", type=_at_least(0), default=0, help="onnxruntime threads (default: 0 = automatic)")
    _profile_option(ev)
    return p


def _at_least(lo: int):
    """argparse type of an evaluate option: an integer >= ``lo`` (a usage error, exit 2, before any work)."""
    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
        if n < lo:
            raise argparse.ArgumentTypeError(f"{value} is less than {lo}")
        return n

    return parse


def _probability(value: str) -> float:
    """argparse type of --minor-threshold: a number in [0, 1]."""
    try:
        p = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0.0 <= p <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not a probability in [0, 1]")
    return p


class _Table:
    """The estimate command's table, printed row by row as results arrive."""

    def __init__(self, out, minor_age: int):
        self.out = out
        head = (f"{'file':<32} {'face':>4} {'box (x1,y1,x2,y2)':<22} {'age':>5} {'interval':>13} "
                f"{f'P(<{minor_age})':>7}  {'group':<6} review")
        print(head, file=out)
        print("-" * len(head), file=out)

    def row(self, r) -> None:
        out = self.out
        p = r.provenance
        label = (r.source if p.frame_index < 0 else f"{r.source}@{p.timestamp:.1f}s" if p.timestamp >= 0
                 else f"{r.source}#{p.frame_index}")  # a video's or animation's time, a page's frame number
        name = label if len(label) <= 32 else "..." + label[-29:]
        if r.error:
            print(f"{name:<32} {'':>4} ERROR {r.error_type}: {r.error}", file=out, flush=True)
            return
        if not r.faces:
            print(f"{name:<32} {'-':>4} no face found", file=out, flush=True)
            return
        for i, f in enumerate(r.faces):
            box = ",".join(str(int(round(v))) for v in f.box.as_tuple())
            iv = f"{f.interval[0]:.0f}-{f.interval[1]:.0f}"
            print(f"{name:<32} {i:>4} {box:<22} {f.age:>5.1f} {iv:>13} {f.p_minor:>7.2f}  {f.age_group:<6} "
                  f"{'FLAGGED' if f.flagged else ''}{' (profile)' if f.profile else ''}".rstrip(), file=out,
                  flush=True)
            name = ""


def cmd_estimate(a: argparse.Namespace) -> int:
    from agescan.results import to_json

    for p in a.photos:
        if not os.path.exists(p):
            print(f"agescan estimate: {p}: no such file or folder", file=sys.stderr)
            return EXIT_USAGE
    est = _make_estimator(a, batch_size=a.batch_size)
    table = None if a.json else _Table(sys.stdout, a.minor_age)
    n_images = n_faces = n_flagged = n_failed = 0
    for r in est.stream(a.photos, archive_depth=a.archive_depth):  # printed as each result arrives
        if table is None:
            print(to_json(r, include_distribution=a.distribution), flush=True)
        else:
            table.row(r)
        if r.error:
            n_failed += 1
            said = r.error if r.error.startswith(r.source) else f"{r.source}: {r.error}"  # named once
            print(f"agescan estimate: {said}", file=sys.stderr)
        n_images += 1
        n_faces += len(r.faces)
        n_flagged += sum(f.flagged for f in r.faces)
    if table is not None:
        level = int(round(a.interval * 100))
        print(f"\n{n_images} image(s), {n_faces} face(s), {n_flagged} flagged for review ({_flag_rule(a, est)}); "
              f"interval = {level}% {'conformal' if est.decider.calibration.conformal else 'central'} interval; "
              f"model {est.model.id}" + (f"; estimated on the pictures after {a.transform}" if a.transform else "")
              + (f"; thresholds for {est.input_condition}"
                 if est.input_condition in est.decider.calibration.conditions else ""),
              file=sys.stdout)
    return EXIT_INPUT if n_failed else EXIT_OK


class _ProgressBar:
    """The scan's progress bar on stderr (files/s, faces, flagged, errors, ETA); a ScanProgress."""

    def __init__(self, a: argparse.Namespace):
        self.a = a
        self.bar = None

    def start(self, config, done) -> None:
        from tqdm import tqdm

        from agescan.store import redact

        if self.a.engine != "local":  # the Ray engine reports per partition
            return
        total = sum(1 for _ in config.items())
        done_files = sum(1 for _, frame in done if frame <= 0)  # a video counts once
        if done:
            frames = f" ({len(done)} items with video frames)" if len(done) != done_files else ""
            print(f"resuming: {done_files} of {total} file(s) already in {redact(self.a.db)}{frames}; they are "
                  "skipped (items stored with an error are tried again)", file=sys.stderr)
        self.bar = tqdm(total=total, initial=min(done_files, total), unit="file", disable=self.a.no_progress,
                        file=sys.stderr, dynamic_ncols=True)

    def update(self, r, summary) -> None:
        if self.bar is not None:
            self.bar.update(int(r.provenance.frame_index <= 0))
            self.bar.set_postfix(faces=summary.faces, flagged=summary.flagged, errors=summary.errors, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _flag_rule(a: argparse.Namespace, est) -> str:
    rule = f"P(under {a.minor_age}) >= {est.flag_threshold:g}"
    if est.decider.calibration.refer_interval:
        rule += f" or its {1 - 2 * est.flag_threshold:.1%} interval reaches below {a.minor_age}"
    return rule + (f" or age < {a.challenge_age:g}" if a.challenge_age else "")


def cmd_scan(a: argparse.Namespace) -> int:
    from agescan.scan import FileSink, RayEngine, StoreSink, run_scan
    from agescan.store import is_postgres, redact

    for src in a.sources:
        if not os.path.exists(src):
            print(f"agescan scan: {src}: no such file or folder", file=sys.stderr)
            return EXIT_USAGE
    if a.engine == "ray" and not a.db:
        print("agescan scan: --engine ray writes to a results database: add --db", file=sys.stderr)
        return EXIT_USAGE
    sink = StoreSink(a.db) if a.db else FileSink(a.out, include_distribution=a.distribution, overwrite=a.overwrite)
    engine = None
    if a.engine == "ray":
        if not a.work_dir and is_postgres(a.db):
            print("agescan scan: --engine ray with a PostgreSQL --db needs --work-dir DIR on storage every node sees",
                  file=sys.stderr)
            return EXIT_USAGE
        work = Path(a.work_dir or a.db + ".parts")
        engine = RayEngine(work, partition_size=a.partition_size, address=a.address, actors=a.ray_actors)
        print(f"ray: partitions of up to {a.partition_size} item(s); partition files in {work}", file=sys.stderr)
    est = _make_estimator(a, workers=max(1, a.workers), batch_size=max(1, a.batch_size))
    progress = _ProgressBar(a)
    try:
        s = run_scan(est, a.sources, sink, recursive=not a.no_recursive, archive_depth=a.archive_depth,
                     engine=engine, progress=progress)
    finally:
        progress.close()
    rate = f"{s.files / max(s.seconds, 1e-9):.1f} files/s"
    held = s.held
    if a.db:
        frames = f" ({held['items']} items with their frames)" if held["items"] != held["files"] else ""
        where = f"run {s.run_id} now holds {held['files']} file(s){frames}, {held['faces']} face(s), " \
                f"{held['errors']} error(s), {held['flagged']} face(s) flagged -> {redact(a.db)}"
        if engine is not None:
            p = s.partitions
            print(f"ray: {p['items']} item(s) in {p['partitions']} partition(s): {p['scanned']} partition(s) "
                  f"scanned, {p['merged']} merged, {p['skipped']} already done; {p['new_items']} new item(s) in "
                  f"{s.seconds:.1f}s; {where}", file=sys.stderr)
        else:
            dropped = (f"; {sink.dropped} error record(s) of sources no longer listed dropped" if sink.dropped
                       else "")
            print(f"scanned {s.files} new or retried file(s) in {s.seconds:.1f}s ({rate}), {s.flagged} new face(s) "
                  f"flagged ({_flag_rule(a, est)}){dropped}; {where}", file=sys.stderr)
    else:
        print(f"scanned {s.files} file(s) in {s.seconds:.1f}s ({rate}): {s.faces} face(s), {s.flagged} flagged "
              f"({_flag_rule(a, est)}), {s.errors} error(s) -> {a.out}", file=sys.stderr)
    return EXIT_INPUT if held["errors"] else EXIT_OK


def cmd_models(a: argparse.Namespace) -> int:
    from agescan.detect import DEFAULT_DETECTOR, create_detector, list_detectors
    from agescan.models import DEFAULT_MODEL, create_model, list_models

    loaded = [create_model(n) for n in list_models()]
    detectors = [{**create_detector(n).info(), "default": n == DEFAULT_DETECTOR} for n in list_detectors()]
    if a.json:
        out = {"models": [{**m.card.to_dict(), "sha256": m.sha256, "default": m.id == DEFAULT_MODEL} for m in loaded],
               "detectors": detectors}
        print(json.dumps(out, indent=2))
        return EXIT_OK
    for m in loaded:
        c = m.card
        star = " (default)" if c.id == DEFAULT_MODEL else ""
        print(f"{c.id}{star}")
        print(f"  architecture : {c.architecture}")
        print(f"  input        : {c.crop.size}x{c.crop.size} {c.colour_order}, crop margin {c.crop.margin}, "
              f"scale {c.scale:.5g}, mean {list(c.mean)}, std {list(c.std)}")
        print(f"  output       : age distribution over {c.min_age}..{c.max_age} years")
        cal = c.decisions().calibration
        if c.calibration:
            conf = (f"conformal intervals in {len(cal.conformal.bands)} age bands" if cal.conformal
                    else "nominal intervals")
            print(f"  calibration  : temperature {cal.temperature:g}, {conf}, triage threshold {cal.flag_threshold:g}, "
                  f"age-check max_error {cal.max_error:g}, refer interval {'on' if cal.refer_interval else 'off'} "
                  f"(fitted on {cal.fitted_on.get('split', '?')} {cal.fitted_on.get('date', '')}); point age: the "
                  f"{cal.point} of the distribution")
            for name, t in cal.conditions.items():
                print(f"  after {name:<7}: triage threshold {t['flag_threshold']:g}, age-check max_error "
                      f"{t['max_error']:g}, refer interval {'on' if t['refer_interval'] else 'off'} "
                      f"(--input-condition {name}, or --transform {name})")
        else:
            print("  calibration  : none (the model's own probabilities, nominal intervals, agescan's thresholds)")
        print(f"  licence      : {c.licence}")
        print(f"  training data: {c.training_data}")
        for split, vals in c.metrics.items():
            shown = ", ".join(f"{k} {v}" for k, v in vals.items()) if isinstance(vals, dict) else vals
            print(f"  metrics      : {split}: {shown}")
        print(f"  sha256       : {m.sha256}")
    print("\ndetectors:")
    for d in detectors:
        print(f"{d['name']}{' (default)' if d['default'] else ''}")
        print(f"  architecture : {d['architecture']}")
        print(f"  licence      : {d['licence']}")
        print(f"  training data: {d['training_data']}")
        print(f"  threshold    : {d['score_threshold']}")
        if d.get("metrics"):
            print(f"  metrics      : {json.dumps(d['metrics'])}")
        if d.get("sha256"):
            print(f"  sha256       : {d['sha256']}")
    return EXIT_OK


def cmd_evaluate(a: argparse.Namespace) -> int:
    from agescan.eval.run import evaluate_folder

    if not Path(a.data).exists():
        print(f"agescan evaluate: {a.data}: no such file or folder", file=sys.stderr)
        return EXIT_USAGE
    baseline = None
    if a.compare:  # read and checked before the evaluation runs
        from agescan.eval.run import check_baseline

        try:
            baseline = json.loads(Path(a.compare).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            print(f"agescan evaluate: --compare {a.compare}: cannot read a report ({exc})", file=sys.stderr)
            return EXIT_USAGE
        check_baseline(baseline, f"--compare {a.compare}")
    from agescan.eval.datasets import DatasetSpec
    from agescan.eval.outputs import check_outputs
    from agescan.eval.run import evaluation_inputs, plot_files, read_evaluation_set

    spec = DatasetSpec(data=a.data, path_column=a.path_column, age_column=a.age_column, split_column=a.split_column,
                       subject_column=a.subject_column, gender_column=a.gender_column, group_column=a.group_column,
                       preset=a.preset).resolved()
    group_column = spec.group_column if a.protocol == "logo" else a.group_column
    # everything that can be refused is refused before any image is processed: the set, its files, the outputs
    ds = read_evaluation_set(a.data, labels=a.labels, split=a.split, limit=a.limit, path_column=spec.path_column,
                             age_column=spec.age_column, split_column=spec.split_column, protocol=a.protocol,
                             group_column=group_column, folds=a.folds, subject_column=spec.subject_column,
                             gender_column=spec.gender_column)
    outputs = {f"--{k}": getattr(a, k) for k in ("out", "predictions", "markdown") if getattr(a, k)}
    if a.plots:
        outputs.update({f"--plots {p.name}": p for p in plot_files(a.plots, ds.binned)})
    check_outputs(outputs, evaluation_inputs(ds, a.model, a.compare), overwrite=a.overwrite)
    report = evaluate_folder(a.model, a.data, condition=a.condition, predictions=a.predictions, threads=a.threads,
                             minor_threshold=a.minor_threshold, plots_dir=a.plots, protocol=a.protocol,
                             folds=a.folds, group_column=group_column, seed=a.seed, detector=a.detector,
                             profile_yaw=a.profile_yaw, dataset=ds, overwrite=a.overwrite)
    refused = ""
    if baseline is not None:
        from agescan.errors import ConfigError
        from agescan.eval.run import compare

        try:
            report["impv"] = compare(baseline, report)
        except ConfigError as exc:  # keep this run's report; say why no Impv
            refused = f"agescan evaluate: --compare {a.compare}: {exc}"
    if a.markdown:
        from agescan.eval.report import markdown

        Path(a.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(a.markdown).write_text(markdown(report), encoding="utf-8")
    for warning in report.get("warnings", []):
        print(f"agescan evaluate: warning: {warning}", file=sys.stderr)
    text = json.dumps(report, indent=2)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text + "\n")
    print(text)
    if refused:
        print(refused, file=sys.stderr)
        return EXIT_CONFIG
    return EXIT_OK


def cmd_explain(a: argparse.Namespace) -> int:
    from agescan import AgeEstimator
    from agescan.explain import iter_explanations

    for p in a.photos:
        if not os.path.isfile(p):
            print(f"agescan explain: {p}: no such file", file=sys.stderr)
            return EXIT_USAGE
    est = AgeEstimator(**_estimator_kwargs(a), anonymise=a.anonymise)  # estimate's pipeline, options and all
    failed = 0
    for record in iter_explanations(est, a.photos, a.out, a.method or ["occlusion"], overwrite=a.overwrite):
        print(json.dumps(record), flush=True)
        if "error" in record:
            failed += 1
            said = record["error"] if record["error"].startswith(record["source"]) else \
                f"{record['source']}: {record['error']}"  # named once
            print(f"agescan explain: {said}", file=sys.stderr)
    return EXIT_INPUT if failed else EXIT_OK


def cmd_anonymize(a: argparse.Namespace) -> int:
    from agescan.anonymize import anonymize_files, new_key_file, read_key_file

    if a.new_key:
        path = new_key_file(a.new_key)
        print(f"wrote a new 256-bit key to {path} (readable by you only). Keep it: without it pictures permuted "
              "with it cannot be restored; anyone holding it can restore them.", file=sys.stderr)
        if not a.inputs:
            return EXIT_OK
    if not a.inputs or not a.method or not a.out:
        print("agescan anonymize: needs IN..., --method NAME and --out DIR (or only --new-key FILE)", file=sys.stderr)
        return EXIT_USAGE
    key = read_key_file(a.key_file) if a.key_file else None
    estimator = None
    from agescan.privacy import get_transform

    if get_transform(a.method).scope != "image" and not a.decrypt:
        from agescan import AgeEstimator

        estimator = AgeEstimator(detector=a.detector, min_face_size=a.min_face_size)

    def progress(plan):
        from tqdm import tqdm

        return tqdm(plan, unit="file", disable=a.no_progress, file=sys.stderr, dynamic_ncols=True)

    s = anonymize_files(a.inputs, a.out, a.method, key=key, decrypt=a.decrypt, seed=a.seed, estimator=estimator,
                        keep_faceless=a.keep_faceless, overwrite=a.overwrite, progress=progress)
    for line in s.skipped:
        print(f"agescan anonymize: {line}", file=sys.stderr)
    verb = "restored" if a.decrypt else f"anonymised with {s.method}"
    faces = "" if a.decrypt or get_transform(a.method).scope == "image" else \
        f" ({s.faces} face(s); {s.no_face} picture(s) with no face found)"
    if s.unchecked:
        print(f"agescan anonymize: {len(s.unchecked)} picture(s) restored without a check of the key (no agescan tag: "
              f"permuted by an older agescan, or their metadata was stripped), e.g. {s.unchecked[0]}; look at them",
              file=sys.stderr)
    mismatched = f", {s.mismatched} not restored (another key)" if a.decrypt else ""
    print(f"{verb}: {s.written} of {s.files} file(s) written to {a.out}{faces}; {s.errors} unreadable{mismatched}",
          file=sys.stderr)
    return EXIT_INPUT if s.errors or s.mismatched else EXIT_OK


def cmd_report(a: argparse.Namespace) -> int:
    from agescan.report import write_report

    path = write_report(a.db, a.out, run_id=a.run, threshold=a.threshold, max_items=a.max_items,
                        thumbnails=not a.no_thumbnails)
    print(f"wrote {path} (open it in a browser; it needs no server or network)", file=sys.stderr)
    return EXIT_OK


def cmd_serve(a: argparse.Namespace) -> int:
    from agescan.service import ServiceConfig, read_api_keys, serve

    config = ServiceConfig(host=a.host, port=a.port, model=a.model, detector=a.detector,
                           min_face_size=a.min_face_size, api_keys=read_api_keys(a.api_key_file),
                           require_api_key=a.require_api_key, max_body_bytes=int(a.max_body_mb * 1024 * 1024),
                           max_pixels=a.max_pixels, max_in_flight=a.max_in_flight, compute_threads=a.compute_threads,
                           request_timeout=a.request_timeout, workers=a.workers, page=not a.no_page,
                           access_log=a.access_log)
    shown = f"[{a.host}]" if ":" in a.host else a.host
    banner = (f"agescan serve: http://{shown}:{a.port}/ (API at /v1, description at /docs); model {a.model}, detector "
              f"{a.detector}; API key "
              f"{'required' if config.keys_required or config.api_keys else 'not required (loopback)'}"
              f"; {config.workers} process(es) x {config.threads} compute thread(s). Ctrl-C stops it.")
    serve(config, on_ready=lambda: print(banner, file=sys.stderr))  # once the model is loaded: errors come first
    return EXIT_OK


def cmd_train(a: argparse.Namespace) -> int:
    import importlib

    try:
        import torch  # noqa: F401
    except ImportError:
        print("agescan train: needs PyTorch: pip install 'agescan[train]' (a CPU build is enough)", file=sys.stderr)
        return EXIT_CONFIG
    module = {"prepare": "agescan.train.prepare", "fit": "agescan.train.loop", "publish": "agescan.train.publish",
              "calibrate": "agescan.train.calibrate",
              "cv": "agescan.train.cv", "grid": "agescan.train.grid", "detector": "agescan.train.detector",
              "publish-detector": "agescan.train.detector"}
    mod = importlib.import_module(module[a.step])
    (mod.publish_main if a.step == "publish-detector" else mod.main)(a.args)
    return EXIT_OK


COMMANDS = {"estimate": cmd_estimate, "anonymize": cmd_anonymize, "train": cmd_train, "scan": cmd_scan,
            "report": cmd_report, "models": cmd_models, "evaluate": cmd_evaluate, "serve": cmd_serve,
            "explain": cmd_explain}


def main(argv: Sequence[str] | None = None) -> int:
    from agescan.errors import AgescanError, ConfigError, InputError, ModelIntegrityError, ModelNotFoundError

    from agescan.scan import quiet_decoder_logs

    quiet_decoder_logs()  # an application may change process-wide settings; the library never does
    parser = build_parser()
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["train"] and (len(args) == 1 or args[1] in ("-h", "--help")):
        # the train parser passes --help on to its steps (add_help=False): with no step, show its own help
        parser.train_parser.print_help()
        return EXIT_OK if len(args) > 1 else EXIT_USAGE
    a = parser.parse_args(args)
    if not a.command:
        parser.print_help()
        return EXIT_USAGE
    try:
        return COMMANDS[a.command](a)
    except (ModelNotFoundError, ModelIntegrityError, ConfigError) as exc:
        print(f"agescan {a.command}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except InputError as exc:
        print(f"agescan {a.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AgescanError as exc:
        print(f"agescan {a.command}: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("agescan: interrupted", file=sys.stderr)
        return EXIT_INTERRUPT


if __name__ == "__main__":
    sys.exit(main())
