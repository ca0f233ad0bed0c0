"""The pictures and numbers of docs/explain.md (run by hand; writes small PNGs into docs/explain/).

1. Public-domain photos (scikit-image's astronaut, Eileen Collins, NASA): every method, clean and with the eye band
   drawn by the pipeline (``anonymise="eye-band"``), the face region of the photo with the map drawn back on it.
2. UTKFace (non-commercial research licence: no face is committed): mean maps over test-split children (ages 1-12)
   and adults (26-60), clean and banded, on the aligned crop, drawn over a grey silhouette of the UTKFace template
   (eyes, nose, mouth corners), and the share of each map's mass in the eye, nose-mouth and rest regions.

    python benchmarks/explain_figures.py [--data ../shared/data/utkface] [--n 40] [--out docs/explain]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from agescan import AgeEstimator, read_image
from agescan.explain import METHODS, overlay

PANEL = 220


def face_panel(image: np.ndarray, heat: np.ndarray, box, text: str) -> np.ndarray:
    x1, y1, x2, y2 = box
    cx, cy, side = (x1 + x2) / 2, (y1 + y2) / 2, 1.5 * max(x2 - x1, y2 - y1)
    a, b = int(max(cx - side / 2, 0)), int(max(cy - side / 2, 0))
    c, d = int(min(cx + side / 2, image.shape[1])), int(min(cy + side / 2, image.shape[0]))
    panel = cv2.resize(overlay(image, heat)[b:d, a:c], (PANEL, PANEL), interpolation=cv2.INTER_AREA)
    cv2.rectangle(panel, (0, PANEL - 22), (PANEL, PANEL), (0, 0, 0), -1)
    cv2.putText(panel, text, (4, PANEL - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return panel


def photos(out: Path) -> dict:
    from skimage import data

    img = data.astronaut()
    rows, record = [], {}
    for band in ("", "eye-band"):
        est = AgeEstimator(anonymise=band).load()
        row = []
        shown = img
        for method in METHODS:
            result, maps = est.explain(img, method)
            m = maps[0]
            if band:
                from agescan.privacy import anonymise

                shown = anonymise(img, (m.aligned.detection,), band)
            f = m.face
            row.append(face_panel(shown, m.image_map, m.face.box.as_tuple(),
                                  f"{method}: {f.age:.0f} y, P(<18) {f.p_minor:.2f}"))
            record[f"{band or 'clean'} {method}"] = {"age": round(f.age, 1), "interval": [round(v, 1) for v in
                                                     f.interval], "p_minor": round(f.p_minor, 3)}
        rows.append(np.concatenate(row, axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(out / "astronaut.jpg", quality=85)
    return record


def template_canvas(size: int) -> np.ndarray:
    from agescan.align import UTKFACE_TEMPLATE

    canvas = np.full((size, size, 3), 150, np.uint8)
    cv2.ellipse(canvas, (size // 2, int(size * 0.52)), (int(size * 0.40), int(size * 0.50)), 0, 0, 360,
                (185, 185, 185), -1)
    for x, y in UTKFACE_TEMPLATE:
        cv2.circle(canvas, (int(x * size), int(y * size)), max(2, size // 40), (60, 60, 60), -1)
    return canvas


def regions(size: int) -> dict[str, np.ndarray]:
    """Masks on the crop: the eye band's rows (template eye line +-12.5% of the crop), nose and mouth below it."""
    from agescan.align import UTKFACE_TEMPLATE

    y = np.arange(size)[:, None] / size * np.ones((1, size))
    eye = UTKFACE_TEMPLATE[0][1]
    eyes = np.abs(y - eye) <= 0.125
    lower = (y > eye + 0.125) & (y <= UTKFACE_TEMPLATE[3][1] + 0.1)
    return {"eyes": eyes, "nose_mouth": lower, "rest": ~(eyes | lower)}


def utkface(data: Path, n: int, out: Path) -> dict:
    import csv

    from agescan.eval.run import BAND_REFERENCE, band_chip, central_face, pad_chip
    from agescan.detect import create_detector

    rows = [r for r in csv.DictReader(open(data / "labels.csv", newline="")) if r["split"] == "test"]
    rng = np.random.default_rng(0)
    groups = {"children 1-12": [r for r in rows if 1 <= int(r["age"]) <= 12],
              "adults 26-60": [r for r in rows if 26 <= int(r["age"]) <= 60]}
    est = AgeEstimator().load()
    ref = create_detector(BAND_REFERENCE, threads=1)
    size = est.card.crop.size
    masks = regions(size)
    record, tiles = {}, []
    for name, members in groups.items():
        pick = [members[i] for i in rng.choice(len(members), min(n, len(members)), replace=False)]
        for cond in ("clean", "eyeband"):
            sums = {m: np.zeros((size, size)) for m in METHODS}
            err, used = [], 0
            for r in pick:
                img = read_image(data / r["path"])
                h, w = img.shape[:2]
                padded = pad_chip(img)
                if cond == "eyeband":
                    padded = band_chip(ref, padded, w, h)
                face = central_face(est.detector.detect(padded), w, h)
                if face is None:
                    continue
                used += 1
                for method in METHODS:
                    result, maps = est.explain(padded, method, faces=[face])
                    sums[method] += maps[0].crop_map
                err.append(abs(result.faces[0].age - float(r["age"])))
            key = f"{name}, {cond}"
            record[key] = {"faces": used, "mae": round(float(np.mean(err)), 2), "mass_share": {}}
            row = []
            for method in METHODS:
                mean = sums[method] / max(used, 1)
                share = {k: round(float(mean[v].sum() / max(mean.sum(), 1e-12)), 3) for k, v in masks.items()}
                record[key]["mass_share"][method] = share
                heat = mean / max(mean.max(), 1e-12)
                tile = cv2.resize(overlay(template_canvas(size), heat), (PANEL // 2 + 40, PANEL // 2 + 40),
                                  interpolation=cv2.INTER_NEAREST)
                row.append(tile)
            tiles.append((key, np.concatenate(row, axis=1)))
    labelled = []
    for key, row in tiles:
        bar = np.zeros((18, row.shape[1], 3), np.uint8)
        cv2.putText(bar, key + ": " + ", ".join(METHODS), (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1,
                    cv2.LINE_AA)
        labelled.append(np.concatenate([bar, row], axis=0))
    Image.fromarray(np.concatenate(labelled, axis=0)).save(out / "utkface_mean_maps.png", optimize=True)
    return record


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/utkface")
    ap.add_argument("--n", type=int, default=40, help="faces per group (default: 40)")
    ap.add_argument("--out", default="docs/explain")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t = time.time()
    rec = {"astronaut": photos(out)}
    if Path(a.data, "labels.csv").is_file():
        rec["utkface"] = utkface(Path(a.data), a.n, out)
    rec["seconds"] = round(time.time() - t, 1)
    json.dump(rec, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
