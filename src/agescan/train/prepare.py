"""Turn a labelled face set (any CSV with path and age, age-named folders, or a preset) into aligned training crops.

Faces are detected and aligned with the *inference* detector and aligner, so the framing a model
learns is the framing it gets at run time. Crops are stored larger than the model input (default
96 px at margin 0.25) so training can jitter scale and position around the model's own crop.

    agescan train prepare ../shared/data/utkface runs/data/utkface_96.npz
    agescan train prepare ../shared/data/morph_small runs/data/morph_96.npz --preset morph
    agescan train prepare my_faces.csv runs/data/mine.npz --age-column years --subject-column person
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from agescan.align import CropRecipe, align_face
from agescan.errors import ConfigError
from agescan.eval.datasets import DatasetSpec, add_dataset_arguments, spec_from_args
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


#: Keys of a prepared file that are not label columns (a CSV column of one of these names is not copied).
RESERVED = ("crops", "landmarks", "det_score", "age", "path", "image_path", "crop_size", "crop_margin", "detector",
            "source", "unlabelled")


def prepare(data_dir: str | Path, out: str | Path, size: int = 96, margin: float = 0.25, workers: int = 2,
            limit: int = 0, detector: str | None = None, spec: DatasetSpec | None = None) -> Path:
    """Detect, align and store every labelled face of a set into one .npz file.

    The set is read as :class:`agescan.eval.datasets.DatasetSpec` describes (``spec``; default: ``data_dir`` with
    its ``labels.csv``, UTKFace's layout or any other CSV with path and age, or age-named folders and files).
    Besides crops, landmarks and detector scores the file keeps ``age`` (whole years), ``path``, ``split`` (''
    without a split column), ``subject``, ``gender`` and ``group`` ('' where the set has none) and every other
    CSV column as text, so ``agescan train fit`` and ``train cv`` can split by split, subject or group.

    ``detector``: a registered detector (None: the pipeline's default, so a model learns the framing it gets)."""
    from agescan.detect import DEFAULT_DETECTOR

    detector = detector or DEFAULT_DETECTOR
    spec = spec or DatasetSpec(data=str(data_dir))
    ds = spec.read(split="all", limit=limit)
    rows = ds.rows
    missing = [r["path"] for r in rows if not Path(r["file"]).is_file()]
    if missing:
        raise ConfigError(f"{ds.source}: {len(missing)} of {len(rows)} listed images do not exist (first: "
                          f"{missing[:3]}). Fix the paths (relative to {spec.data}) or remove those rows.")
    if ds.unlabelled:
        print(f"{ds.source}: {ds.unlabelled} file(s) or row(s) without an age left out (first: "
              f"{ds.unlabelled_examples})", file=sys.stderr)
    jobs = [(str(r["file"]), size, margin, detector) for r in rows]
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
    text = lambda key: np.array([str(r.get(key, "")) for r in rows])  # noqa: E731
    columns = {c: text(c) for c in ds.columns if c not in RESERVED and c.isidentifier()}
    split_col = spec.resolved().split_column
    columns["split"] = text(split_col) if split_col in ds.columns else np.array([""] * len(rows))
    for role in ("subject", "gender", "group"):
        columns[role] = text(role)
    np.savez(out, crops=crops, landmarks=lms, det_score=scores,
             age=np.array([int(round(r["age"])) for r in rows], dtype=np.int16),
             path=np.array([r["path"] for r in rows]), image_path=np.array([str(Path(r["file"]).resolve()) for r in rows]),
             **columns,
             crop_size=size, crop_margin=margin, detector=detector, source=ds.source, unlabelled=ds.unlabelled)
    found = float((scores > 0).mean())
    print(f"wrote {out}: {len(rows)} faces, {detector} found {found:.1%} (others use the chip's alignment), "
          f"{ds.unlabelled} without an age left out, {time.time() - t0:.0f}s", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="agescan train prepare", description=__doc__.splitlines()[0])
    add_dataset_arguments(p)
    p.add_argument("out", help="prepared crops (.npz) to write")
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--margin", type=float, default=0.25)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--detector", default=None, help="registered face detector (default: the pipeline's default; "
                                                    "the shipped age models were prepared with mtcnn)")
    a = p.parse_args(argv)
    try:
        prepare(a.data, a.out, a.size, a.margin, a.workers, a.limit, a.detector, spec=spec_from_args(a))
    except ConfigError as exc:
        raise SystemExit(f"agescan train prepare: {exc}") from None


if __name__ == "__main__":
    main()
