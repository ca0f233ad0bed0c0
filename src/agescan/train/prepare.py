"""Turn a labelled face folder (UTKFace layout) into aligned training crops.

Faces are detected and aligned with the *inference* detector and aligner, so the framing a model
learns is the framing it gets at run time. Crops are stored larger than the model input (default
96 px at margin 0.25) so training can jitter scale and position around the model's own crop.

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

from agescan.align import CropRecipe, align_face
from agescan.eval.run import PAD, chip_face, pad_chip
from agescan.io import read_image

# Faces are found exactly as `agescan evaluate` finds them (eval.run.chip_face on a replicate-padded chip).


_DETECTORS: dict = {}  # one per worker process and detector name


def _detect_one(args: tuple[str, int, float, str]) -> tuple[np.ndarray, np.ndarray, float]:
    path, size, margin, detector = args
    from agescan.detect import create_detector

    if detector not in _DETECTORS:
        _DETECTORS[detector] = create_detector(detector, threads=1)  # the settings AgeEstimator uses
    det_model = _DETECTORS[detector]
    rgb = read_image(path)  # the inference decoder (PIL), not OpenCV's: JPEG decoders differ slightly
    h, w = rgb.shape[:2]
    padded = pad_chip(rgb)
    lm, det = chip_face(det_model, padded, w, h)
    score = 0.0 if det is None else det.score
    crop = align_face(padded, lm, CropRecipe(size=size, margin=margin)).image
    return crop, (lm - PAD).astype(np.float32), score


def prepare(data_dir: str | Path, out: str | Path, size: int = 96, margin: float = 0.25, workers: int = 2,
            limit: int = 0, detector: str | None = None) -> Path:
    """Detect, align and store every labelled face of ``data_dir/labels.csv`` into one .npz file.

    ``detector``: a registered detector (None: the pipeline's default, so a model learns the framing it gets)."""
    from agescan.detect import DEFAULT_DETECTOR

    detector = detector or DEFAULT_DETECTOR
    data_dir = Path(data_dir)
    rows = list(csv.DictReader(open(data_dir / "labels.csv", newline="")))
    if limit:
        rows = rows[:limit]
    jobs = [(str(data_dir / r["path"]), size, margin, detector) for r in rows]
    crops = np.zeros((len(rows), size, size, 3), dtype=np.uint8)
    lms = np.zeros((len(rows), 5, 2), dtype=np.float32)
    scores = np.zeros(len(rows), dtype=np.float32)
    t0 = time.time()
    with ProcessPoolExecutor(max_workers=workers) as ex:
        for i, (c, lm, s) in enumerate(ex.map(_detect_one, jobs, chunksize=64)):
            crops[i], lms[i], scores[i] = c, lm, s
            if i % 2000 == 0:
                print(f"{i}/{len(rows)} {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    race = np.array([int(r["race"]) if r["race"] != "" else -1 for r in rows], dtype=np.int16)
    np.savez(out, crops=crops, landmarks=lms, det_score=scores,
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
    p.add_argument("--detector", default=None, help="registered face detector (default: the pipeline's default; "
                                                    "the shipped age models were prepared with mtcnn)")
    a = p.parse_args(argv)
    prepare(a.data_dir, a.out, a.size, a.margin, a.workers, a.limit, a.detector)


if __name__ == "__main__":
    main()
