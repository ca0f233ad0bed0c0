"""Turn a labelled face folder (UTKFace layout) into aligned training crops.

Faces are detected and aligned with the *inference* detector and aligner, so the framing a model
learns is the framing it gets at run time. Crops are stored larger than the model input (default
96 px at margin 0.25) so training can jitter scale and position around the model's own crop.

Each face is stored twice: ``crops`` as the pipeline's pose-aware rule frames it (the five-point warp, or from the
box when it is turned past :data:`agescan.align.PROFILE_YAW`; ``framing`` says which) and ``crops_box`` framed from
its box (:func:`agescan.align.box_frame`), with its ``yaw`` and ``roll``: training can then show the model the box
framing it gets for turned faces (``agescan train fit --box-p``). A face the detector misses is aligned by the
UTKFace template (both crops the same, framing "aligned").

    python -m agescan.train.prepare ../shared/data/utkface runs/data/utkface_96.npz
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from agescan.align import CropRecipe, box_frame, frame_face
from agescan.eval.run import PAD, chip_face, pad_chip
from agescan.io import read_image

# Faces are found exactly as `agescan evaluate` finds them (eval.run.chip_face on a replicate-padded chip).


_DETECTORS: dict = {}  # one per worker process and detector name


def _detect_one(args: tuple[str, int, float, str]) -> tuple:
    from agescan.align import PROFILE_YAW, align_face, estimate_pose

    path, size, margin, detector = args
    from agescan.detect import create_detector

    if detector not in _DETECTORS:
        _DETECTORS[detector] = create_detector(detector, threads=1)  # the settings AgeEstimator uses
    det_model = _DETECTORS[detector]
    rgb = read_image(path)  # the inference decoder (PIL), not OpenCV's: JPEG decoders differ slightly
    h, w = rgb.shape[:2]
    padded = pad_chip(rgb)
    lm, det = chip_face(det_model, padded, w, h)
    recipe = CropRecipe(size=size, margin=margin)
    if det is None:
        crop = align_face(padded, lm, recipe).image
        pose = estimate_pose(lm)
        return crop, crop, (lm - PAD).astype(np.float32), 0.0, pose.yaw, pose.roll, "aligned"
    framed = frame_face(padded, lm, det.box, recipe, PROFILE_YAW)
    boxed = framed.crop.image if framed.framing == "box" else box_frame(padded, lm, det.box, recipe).image
    return (framed.crop.image, boxed, (lm - PAD).astype(np.float32), det.score, framed.pose.yaw, framed.pose.roll,
            framed.framing)


def select_rows(rows: list[dict], splits: str = "", older: int = 0, seed: int = 0) -> list[dict]:
    """The rows to prepare: those of ``splits`` (comma-separated; "" = all), and with ``older`` > 0 every face aged
    25 or less but only a seeded sample of ``older`` faces over 25 per split (a short fine-tune's subset)."""
    keep = set(splits.split(",")) if splits else None
    rows = [r for r in rows if keep is None or r.get("split", "") in keep]
    if older <= 0:
        return rows
    rng = np.random.default_rng(seed)
    picked: set[int] = set()
    for sp in sorted({r.get("split", "") for r in rows}):
        old = [i for i, r in enumerate(rows) if r.get("split", "") == sp and float(r["age"]) > 25]
        picked.update(rng.permutation(old)[:older].tolist())
    return [r for i, r in enumerate(rows) if float(r["age"]) <= 25 or i in picked]


def prepare(data_dir: str | Path, out: str | Path, size: int = 96, margin: float = 0.25, workers: int = 2,
            limit: int = 0, detector: str | None = None, splits: str = "", older: int = 0) -> Path:
    """Detect, frame and store every labelled face of ``data_dir/labels.csv`` into one .npz file.

    ``detector``: a registered detector (None: the pipeline's default, so a model learns the framing it gets).
    ``splits``/``older``: a subset (:func:`select_rows`)."""
    from agescan.detect import DEFAULT_DETECTOR

    detector = detector or DEFAULT_DETECTOR
    data_dir = Path(data_dir)
    rows = select_rows(list(csv.DictReader(open(data_dir / "labels.csv", newline=""))), splits, older)
    if limit:
        rows = rows[:limit]
    jobs = [(str(data_dir / r["path"]), size, margin, detector) for r in rows]
    crops = np.zeros((len(rows), size, size, 3), dtype=np.uint8)
    crops_box = np.zeros_like(crops)
    lms = np.zeros((len(rows), 5, 2), dtype=np.float32)
    scores = np.zeros(len(rows), dtype=np.float32)
    pose = np.zeros((len(rows), 2), dtype=np.float32)
    framing = np.empty(len(rows), dtype="<U7")
    t0 = time.time()
    with ProcessPoolExecutor(max_workers=workers) as ex:
        for i, (c, cb, lm, s, yaw, roll, fr) in enumerate(ex.map(_detect_one, jobs, chunksize=64)):
            crops[i], crops_box[i], lms[i], scores[i], pose[i], framing[i] = c, cb, lm, s, (yaw, roll), fr
            if i % 2000 == 0:
                print(f"{i}/{len(rows)} {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    race = np.array([int(r["race"]) if r["race"] != "" else -1 for r in rows], dtype=np.int16)
    np.savez(out, crops=crops, crops_box=crops_box, yaw=pose[:, 0], roll=pose[:, 1], framing=framing,
             landmarks=lms, det_score=scores,
             age=np.array([int(r["age"]) for r in rows], dtype=np.int16),
             gender=np.array([int(r["gender"]) for r in rows], dtype=np.int8), race=race,
             split=np.array([r["split"] for r in rows]), path=np.array([r["path"] for r in rows]),
             crop_size=size, crop_margin=margin, detector=detector)
    found = float((scores > 0).mean())
    print(f"wrote {out}: {len(rows)} faces, {detector} found {found:.1%} (others use the chip's alignment), "
          f"{time.time() - t0:.0f}s", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="agescan train prepare", description=__doc__.splitlines()[0])
    p.add_argument("data_dir")
    p.add_argument("out")
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--margin", type=float, default=0.25)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--splits", default="", help="prepare only these splits, comma-separated (default: all)")
    p.add_argument("--older", type=int, default=0, metavar="N",
                   help="keep every face aged 0-25 but only a seeded sample of N older faces per split (default: 0 "
                        "= all; for short fine-tunes)")
    p.add_argument("--detector", default=None, help="registered face detector (default: the pipeline's default; "
                                                    "the shipped age models were prepared with mtcnn)")
    a = p.parse_args(argv)
    prepare(a.data_dir, a.out, a.size, a.margin, a.workers, a.limit, a.detector, a.splits, a.older)


if __name__ == "__main__":
    main()
