"""Turn a labelled face set (any CSV with path and age, age-named folders, or a preset) into aligned training crops.

Faces are detected and aligned with the *inference* detector and aligner, so the framing a model
learns is the framing it gets at run time. Crops are stored larger than the model input (default
96 px at margin 0.25) so training can jitter scale and position around the model's own crop.

    agescan train prepare ../shared/data/utkface runs/data/utkface_96.npz
    agescan train prepare ../shared/data/morph_small runs/data/morph_96.npz --preset morph
    agescan train prepare my_faces.csv runs/data/mine.npz --age-column years --subject-column person

Each face is stored twice: ``crops`` as the pipeline's pose-aware rule frames it (the five-point warp, or from the
box when it is turned past :data:`agescan.align.PROFILE_YAW`; ``framing`` says which) and ``crops_box`` framed from
its box (:func:`agescan.align.box_frame`), with its ``yaw`` and ``roll``: training can then show the model the box
framing it gets for turned faces (``agescan train fit --box-p``). A face the detector misses is aligned by the
UTKFace template (both crops the same, framing "aligned").
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from agescan.align import CropRecipe, box_frame, frame_face
from agescan.errors import ConfigError, InputError
from agescan.eval.datasets import DatasetSpec, add_dataset_arguments, spec_from_args
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


#: Ages a prepared file can hold (``age`` is int16, rounded to whole years): low inclusive, high exclusive.
AGE_LIMITS = (-32768.5, 32767.5)


def output_path(out: str | Path, overwrite: bool = False) -> Path:
    """The file ``prepare`` writes for ``out`` (numpy adds ``.npz`` to a name without it), refused with an
    :class:`InputError` when it exists (unless ``overwrite``) or is a folder."""
    path = Path(out)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    if path.is_dir():
        raise InputError(f"{path} is a folder: name the .npz file to write.")
    if path.exists() and not overwrite:
        raise InputError(f"{path} exists: add --overwrite to replace it, or name another file.")
    return path


#: Keys of a prepared file that are not label columns (a CSV column of one of these names is not copied).
RESERVED = ("crops", "crops_box", "yaw", "roll", "framing", "landmarks", "det_score", "age", "path", "image_path",
            "crop_size", "crop_margin", "detector", "source", "unlabelled")


def prepare(data_dir: str | Path, out: str | Path, size: int = 96, margin: float = 0.25, workers: int = 2,
            limit: int = 0, detector: str | None = None, spec: DatasetSpec | None = None, splits: str = "",
            older: int = 0, command: str = "", overwrite: bool = False) -> Path:
    """Detect, align and store every labelled face of a set into one .npz file.

    The set is read as :class:`agescan.eval.datasets.DatasetSpec` describes (``spec``; default: ``data_dir`` with
    its ``labels.csv``, UTKFace's layout or any other CSV with path and age, or age-named folders and files).
    Besides crops, landmarks and detector scores the file keeps ``age`` (whole years), ``path``, ``split`` (''
    without a split column), ``subject``, ``gender`` and ``group`` ('' where the set has none) and every other
    CSV column as text, so ``agescan train fit`` and ``train cv`` can split by split, subject or group.

    ``detector``: a registered detector (None: the pipeline's default, so a model learns the framing it gets).
    ``splits``/``older``: a subset (:func:`select_rows`). ``command``: the command line that made the file, stored in
    it for the cards of the models trained on it (default: one rebuilt from these arguments). ``out`` gets the
    ``.npz`` suffix numpy gives it; an existing file is an :class:`InputError` unless ``overwrite``, and so is an
    age 16-bit storage cannot hold (:data:`AGE_LIMITS`), both before any face is detected."""
    from agescan.detect import DEFAULT_DETECTOR

    out = output_path(out, overwrite)
    detector = detector or DEFAULT_DETECTOR
    spec = spec or DatasetSpec(data=str(data_dir))
    ds = spec.read(split="all")
    rows = select_rows(ds.rows, splits, older)
    if limit:
        rows = rows[:limit]
    unstorable = [(r["path"], r["age"]) for r in rows if not AGE_LIMITS[0] <= r["age"] < AGE_LIMITS[1]]
    if unstorable:
        raise ConfigError(f"{ds.source}: {len(unstorable)} age(s) cannot be stored (prepared ages are whole years in "
                          f"16 bits, {AGE_LIMITS[0]:g} to {AGE_LIMITS[1] - 0.5:g}; first: {unstorable[:3]}). Fix "
                          "those labels: ages are in years.")
    missing = [r["path"] for r in rows if not Path(r["file"]).is_file()]
    if missing:
        raise ConfigError(f"{ds.source}: {len(missing)} of {len(rows)} listed images do not exist (first: "
                          f"{missing[:3]}). Fix the paths (relative to {spec.data}) or remove those rows.")
    if ds.unlabelled:
        print(f"{ds.source}: {ds.unlabelled} file(s) or row(s) without an age left out (first: "
              f"{ds.unlabelled_examples})", file=sys.stderr)
    jobs = [(str(r["file"]), size, margin, detector) for r in rows]
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
    out.parent.mkdir(parents=True, exist_ok=True)
    text = lambda key: np.array([str(r.get(key, "")) for r in rows])  # noqa: E731
    columns = {c: text(c) for c in ds.columns if c not in RESERVED and c.isidentifier()}
    split_col = spec.resolved().split_column
    columns["split"] = text(split_col) if split_col in ds.columns else np.array([""] * len(rows))
    for role in ("subject", "gender", "group"):
        columns[role] = text(role)
    np.savez(out, crops=crops, crops_box=crops_box, yaw=pose[:, 0], roll=pose[:, 1], framing=framing,
             landmarks=lms, det_score=scores,
             age=np.array([int(round(r["age"])) for r in rows], dtype=np.int16),
             path=np.array([r["path"] for r in rows]), image_path=np.array([str(Path(r["file"]).resolve()) for r in rows]),
             **columns,
             crop_size=size, crop_margin=margin, detector=detector, source=ds.source, unlabelled=ds.unlabelled,
             command=command or prepare_command([str(spec.data), str(out), "--size", str(size), "--margin", str(margin),
                                                 "--detector", detector, *(["--splits", splits] if splits else []),
                                                 *(["--older", str(older)] if older else []),
                                                 *(["--limit", str(limit)] if limit else [])]))
    found = float((scores > 0).mean())
    print(f"wrote {out}: {len(rows)} faces, {detector} found {found:.1%} (others use the chip's alignment), "
          f"{ds.unlabelled} without an age left out, {time.time() - t0:.0f}s", file=sys.stderr)
    return out


def prepare_command(args: list[str]) -> str:
    """The ``python -m agescan.train.prepare`` command line with these arguments (shell-quoted)."""
    return " ".join(["python -m agescan.train.prepare", *(shlex.quote(str(x)) for x in args)])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="agescan train prepare", description=__doc__.splitlines()[0])
    add_dataset_arguments(p)
    p.add_argument("out", help="prepared crops (.npz) to write")
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
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists (refused otherwise)")
    a = p.parse_args(argv)
    args = list(sys.argv[1:] if argv is None else argv)
    if a.detector is None:  # record the detector the file was made with, not "the default" of the day
        from agescan.detect import DEFAULT_DETECTOR

        args += ["--detector", DEFAULT_DETECTOR]
    from agescan.train.exits import step_errors

    args = [x for x in args if x != "--overwrite"]  # the command recorded makes the same file, not a replacement
    with step_errors("agescan train prepare"):
        prepare(a.data, a.out, a.size, a.margin, a.workers, a.limit, a.detector, spec=spec_from_args(a),
                splits=a.splits, older=a.older, command=prepare_command(args), overwrite=a.overwrite)


if __name__ == "__main__":
    main()
