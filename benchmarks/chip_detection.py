"""Detector recall on UTKFace chips, clean and with the paper's eye band, by age band (hand-run, not a test).

Every chip of a split is padded as ``agescan evaluate`` pads it (:func:`agescan.eval.run.pad_chip`), and
the eye band is drawn where the *reference* says the eyes are: MTCNN's clean detection (the paper's detector; the
band hides the eyes, not where they are), or the UTKFace template when MTCNN misses the clean chip
(:func:`agescan.eval.run.reference_face`). So every detector sees the same banded pixels. A face is found
when the detector returns a central face (:func:`agescan.eval.run.central_face`), exactly as evaluation picks it.

Landmark error: mean distance of the detected eye centres from the reference's, in % of the reference eye
distance (chips whose clean face MTCNN found); it measures agreement with MTCNN, whose landmarks every shipped
age model was trained on, not with a human annotation.

    .venv/bin/python benchmarks/chip_detection.py --split val --detector mtcnn --detector yunet-s.wider \\
        --detector yunet-s.wider:0.5 --out runs/bench/chip_detection_val.json

``NAME:T`` overrides the card's score threshold (YuNet-family detectors). Choose settings on ``val``; report
``test`` once.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

import _common
from agescan.detect import create_detector
from agescan.eval.run import central_face, pad_chip, reference_face
from agescan.io import read_image
from agescan.privacy import eye_band

BANDS = ((0, 5), (6, 10), (11, 15), (16, 17), (18, 25), (26, 200))


def band_name(age: int) -> str:
    for lo, hi in BANDS:
        if lo <= age <= hi:
            return f"{lo}-{hi}" if hi < 200 else f"{lo}+"
    return "?"


def make_detector(spec: str):
    name, _, thr = spec.partition(":")
    kwargs = {"threads": 1}
    if thr:
        kwargs["score_threshold"] = float(thr)
    return create_detector(name, **kwargs)


def load_chips(split: str, n: int, cache: Path | None) -> list[dict]:
    """The split's padded chips with the reference landmarks and box (cached: MTCNN over every chip is slow)."""
    data = _common.utkface_dir()
    with open(data / "labels.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == split]
    rows = rows[:n] if n else rows
    refs = json.loads(cache.read_text()) if cache and cache.is_file() else {}
    ref_det = None
    chips = []
    for r in rows:
        img = read_image(data / r["path"])
        h, w = img.shape[:2]
        padded = pad_chip(img)
        if r["path"] not in refs:
            ref_det = ref_det or create_detector("mtcnn", threads=1)
            lm, box, found = reference_face(ref_det, padded, w, h)
            refs[r["path"]] = {"landmarks": lm.tolist(), "box": list(box), "found": found}
        ref = refs[r["path"]]
        chips.append({"path": r["path"], "age": int(r["age"]), "w": w, "h": h, "padded": padded,
                      "ref_lm": np.asarray(ref["landmarks"]), "ref_box": ref["box"], "ref_found": ref["found"]})
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(refs))
    return chips


def banded(chip: dict) -> np.ndarray:
    from agescan.types import BBox, Landmarks5

    return eye_band(chip["padded"], Landmarks5.from_array(chip["ref_lm"]), BBox(*chip["ref_box"]))


def run_detector(det, images: list[np.ndarray], batch: int = 16) -> tuple[list, float]:
    t0 = time.perf_counter()
    out = []
    many = getattr(det, "detect_batch", None)
    for i in range(0, len(images), batch):
        part = images[i:i + batch]
        out.extend(many(part) if many else [det.detect(x) for x in part])
    return out, time.perf_counter() - t0


def measure(spec: str, chips: list[dict]) -> dict:
    det = make_detector(spec)
    res: dict = {"detector": spec}
    for cond in ("clean", "eyeband"):
        imgs = [c["padded"] if cond == "clean" else banded(c) for c in chips]
        dets, secs = run_detector(det, imgs)
        found, errs, by_band = [], [], {}
        for c, d in zip(chips, dets):
            face = central_face(d, c["w"], c["h"])
            ok = face is not None
            found.append(ok)
            b = by_band.setdefault(band_name(c["age"]), [0, 0])
            b[0] += ok
            b[1] += 1
            if ok and c["ref_found"]:
                ref_eyes = c["ref_lm"][:2]
                got = face.landmarks.as_array()[:2]
                errs.append(100 * np.linalg.norm(got - ref_eyes, axis=1).mean() / np.linalg.norm(ref_eyes[0] - ref_eyes[1]))
        res[cond] = {"found": int(sum(found)), "of": len(chips), "rate": float(np.mean(found)),
                     "by_band": {k: {"found": v[0], "of": v[1], "rate": v[0] / v[1]} for k, v in by_band.items()},
                     "eye_error_median_pct": float(np.median(errs)) if errs else None,
                     "ms_per_chip": 1000 * secs / len(chips),
                     "missed": [c["path"] for c, ok in zip(chips, found) if not ok]}
    return res


def markdown(results: list[dict], split: str, n: int, info: dict) -> str:
    bands = [band_name(lo) for lo, _ in BANDS]
    lines = [f"UTKFace `{split}` chips ({n}), padded by 50 px; band drawn from MTCNN's clean detection "
             f"(template where MTCNN misses). " + _common.machine_line(info), ""]
    head = ["detector", "condition", "found", *bands, "eye error (median, % of eye distance)", "ms/chip"]
    rows = []
    for r in results:
        for cond in ("clean", "eyeband"):
            c = r[cond]
            rows.append([r["detector"], cond, f"{c['rate']:.1%}",
                         *[f"{c['by_band'][b]['rate']:.1%}" if b in c["by_band"] else "-" for b in bands],
                         _common.fmt(c["eye_error_median_pct"], 1), f"{c['ms_per_chip']:.1f}"])
    lines.append(_common.md_table(head, rows))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", default="val", help="labels.csv split (default: val; choose settings there)")
    p.add_argument("--n", type=int, default=0, help="first N chips of the split (default: all)")
    p.add_argument("--detector", action="append", default=[], help="registered detector, optionally NAME:THRESHOLD")
    p.add_argument("--cache", default="runs/bench/chip_reference.json", help="reference landmarks cache (JSON)")
    p.add_argument("--out", help="write every number (and the missed files) as JSON here")
    a = p.parse_args(argv)
    chips = load_chips(a.split, a.n, Path(a.cache) if a.cache else None)
    results = [measure(spec, chips) for spec in (a.detector or ["mtcnn"])]
    info = _common.machine()
    print(markdown(results, a.split, len(chips), info))
    _common.write_json(a.out, {"machine": info, "split": a.split, "chips": len(chips), "results": results})


if __name__ == "__main__":
    main()
