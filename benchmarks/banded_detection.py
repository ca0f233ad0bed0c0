"""How many faces carrying the paper's eye band each MTCNN threshold setting finds (hand-run, not a test).

For the first ``--n`` chips of a UTKFace split whose clean face the default detector finds (padded as
``agescan evaluate`` pads them), the band is drawn from that detection (``agescan.privacy.eye_band``) and
each setting runs on the banded chip; found = a central face again (``agescan.eval.run.central_face``).
Eye error: mean distance of the two eye centres from the clean detection's, in % of its eye distance.
False detections on face-free backgrounds come from ``benchmarks/detection.py --thresholds``.

    .venv/bin/python benchmarks/banded_detection.py --split val --n 300 --out runs/bench/banded_detection.json
"""

from __future__ import annotations

import argparse
import csv
import time

import numpy as np

import _common
from agescan.detect import create_detector
from agescan.eval.run import central_face, pad_chip
from agescan.io import read_image
from agescan.privacy import eye_band

SETTINGS = ((0.6, 0.7, 0.8), (0.6, 0.7, 0.5), (0.6, 0.5, 0.5), (0.5, 0.5, 0.3), (0.4, 0.4, 0.2), (0.3, 0.3, 0.1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", default="val", help="labels.csv split (default: val; choose settings there)")
    p.add_argument("--n", type=int, default=300, help="chips to read (default: 300)")
    p.add_argument("--out", help="write the numbers as JSON here")
    a = p.parse_args()
    data = _common.utkface_dir()
    rows = [r for r in csv.DictReader(open(data / "labels.csv", newline="")) if r["split"] == a.split][:a.n]
    base = create_detector("mtcnn", threads=1)
    chips = []
    for r in rows:
        img = read_image(data / r["path"])
        h, w = img.shape[:2]
        padded = pad_chip(img)
        face = central_face(base.detect(padded), w, h)
        if face is not None:
            chips.append((eye_band(padded, face.landmarks, face.box), w, h, face.landmarks.as_array()[:2]))
    results = []
    for th in SETTINGS:
        det = create_detector("mtcnn", thresholds=th, threads=1)
        found, errs, t0 = 0, [], time.time()
        for banded, w, h, eyes in chips:
            g = central_face(det.detect(banded), w, h)
            if g is not None:
                found += 1
                errs.append(100 * np.linalg.norm(g.landmarks.as_array()[:2] - eyes, axis=1).mean()
                            / np.linalg.norm(eyes[0] - eyes[1]))
        results.append({"thresholds": th, "found": found, "of": len(chips), "rate": found / len(chips),
                        "eye_error_median_pct": float(np.median(errs)) if errs else float("nan"),
                        "seconds": time.time() - t0})
    info = _common.machine()
    print(f"Banded {a.split} chips: {len(chips)} of the first {len(rows)} (clean face found). "
          + _common.machine_line(info) + "\n")
    print(_common.md_table(["thresholds (P, R, O)", "banded faces found", "median eye error (% of eye distance)"],
                           [[", ".join(f"{t:g}" for t in r["thresholds"]), f"{r['rate']:.1%} ({r['found']})",
                             f"{r['eye_error_median_pct']:.1f}"] for r in results]))
    _common.write_json(a.out, {"machine": info, "split": a.split, "chips": len(chips), "results": results})


if __name__ == "__main__":
    main()
