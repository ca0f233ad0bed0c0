"""Build the scan benchmark's folder: N real-size JPEG photos with 0-3 real faces each.

    python benchmarks/make_scan_corpus.py /tmp/scan-corpus --n 10000

How: each photo is a crop of one of scikit-image's public-domain scenes (coffee, chelsea, rocket, hubble,
coins, brick, grass, gravel, page, ... ; never the astronaut, which has a face), scaled to a common photo size
(1280x960, 1280x720, 1024x768 or 960x1280), with 0-3 UTKFace *test* faces pasted at 60-260 px with a
feathered edge, saved as JPEG quality 88. Faces per photo are drawn 0/1/2/3 with probability 0.25 each.
``manifest.csv`` lists each photo's faces (source chip, age, box). UTKFace is non-commercial research data:
keep the folder out of the repository.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import numpy as np

from _common import utkface_dir

SIZES = ((1280, 960), (1280, 720), (1024, 768), (960, 1280))
SCENES = ("coffee", "chelsea", "rocket", "hubble_deep_field", "coins", "brick", "grass", "gravel", "page",
          "camera", "moon", "text", "logo", "immunohistochemistry", "retina", "horse", "cell", "motorcycle_left")


def scenes() -> list[np.ndarray]:
    from skimage import data

    out = []
    for name in SCENES:
        try:
            img = np.asarray(getattr(data, name)())
        except Exception:  # noqa: BLE001 - a scene missing from this scikit-image build
            continue
        if img.dtype != np.uint8:
            img = (img.astype(np.float64) / max(1, img.max()) * 255).astype(np.uint8)
        if img.ndim == 2:
            img = np.stack([img] * 3, -1)
        out.append(img[:, :, :3])
    return out


def paste(dst: np.ndarray, face: np.ndarray, x: int, y: int) -> None:
    side = face.shape[0]
    yy, xx = np.mgrid[0:side, 0:side]
    edge = np.minimum.reduce([xx, yy, side - 1 - xx, side - 1 - yy]).astype(np.float32)
    alpha = np.clip(edge / max(2.0, side * 0.08), 0, 1)[..., None]
    roi = dst[y:y + side, x:x + side].astype(np.float32)
    dst[y:y + side, x:x + side] = (alpha * face + (1 - alpha) * roi).astype(np.uint8)


def make_photo(rng: np.random.Generator, bgs: list[np.ndarray], faces: list[dict], root: Path
               ) -> tuple[np.ndarray, list[tuple], tuple[int, float, int, int]]:
    """One RGB photo: a crop of a scene with 0-3 faces pasted.

    Returns the photo, its faces as (chip path, age, x1, y1, x2, y2) and its framing (scene index, scale, x0, y0:
    the crop's corner in the scaled scene).
    """
    wd, ht = SIZES[int(rng.integers(0, len(SIZES)))]
    k = int(rng.integers(0, len(bgs)))
    bg = bgs[k]
    scale = max(wd / bg.shape[1], ht / bg.shape[0]) * (1 + rng.random())
    big = cv2.resize(bg, (int(bg.shape[1] * scale) + 1, int(bg.shape[0] * scale) + 1),
                     interpolation=cv2.INTER_LINEAR)
    x0, y0 = int(rng.integers(0, big.shape[1] - wd + 1)), int(rng.integers(0, big.shape[0] - ht + 1))
    photo = np.ascontiguousarray(big[y0:y0 + ht, x0:x0 + wd])
    placed: list[tuple] = []
    for _ in range(int(rng.integers(0, 4))):
        r = faces[int(rng.integers(0, len(faces)))]
        side = int(rng.integers(60, 261))
        for _try in range(20):
            x, y = int(rng.integers(0, wd - side)), int(rng.integers(0, ht - side))
            if all(x + side < a1 or x > a2 or y + side < b1 or y > b2 for _, _, a1, b1, a2, b2 in placed):
                break
        else:
            continue
        chip = cv2.imread(str(root / r["path"]))[:, :, ::-1]
        paste(photo, cv2.resize(chip, (side, side), interpolation=cv2.INTER_AREA), x, y)
        placed.append((r["path"], r["age"], x, y, x + side, y + side))
    return photo, placed, (k, scale, x0, y0)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--videos", type=int, default=0, metavar="K",
                   help="instead: write K one-minute 1280x720 25-fps MPEG-4 clips to OUT/, each a slideshow of "
                        "photos already in OUT (2 s per photo, so a cut every 2 s)")
    a = p.parse_args(argv)
    if a.videos:
        return make_videos(Path(a.out), a.videos)
    rng = np.random.default_rng(a.seed)
    root = utkface_dir()
    with open(root / "labels.csv", newline="") as fh:
        faces = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    bgs = scenes()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "manifest.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["photo", "face_chip", "age", "x1", "y1", "x2", "y2"])
        for i in range(a.n):
            photo, placed, _ = make_photo(rng, bgs, faces, root)
            name = f"{i // 1000:02d}/photo_{i:05d}.jpg"
            (out / name).parent.mkdir(exist_ok=True)
            w.writerows([name, *p] for p in placed)
            cv2.imwrite(str(out / name), np.ascontiguousarray(photo[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"{a.n} photos in {out}")


def make_videos(out: Path, k: int, seconds: int = 60, fps: int = 25) -> None:
    photos = sorted(out.glob("*/photo_*.jpg"))
    if len(photos) < k * seconds // 2:
        raise SystemExit(f"{out} holds {len(photos)} photos; build the photo corpus first")
    vdir = out.parent / (out.name + "-videos")
    vdir.mkdir(exist_ok=True)
    for v in range(k):
        w = cv2.VideoWriter(str(vdir / f"clip_{v:02d}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps, (1280, 720))
        for s in range(seconds // 2):
            img = cv2.imread(str(photos[v * seconds // 2 + s]))
            frame = cv2.resize(img, (1280, 720), interpolation=cv2.INTER_AREA)
            for _ in range(2 * fps):
                w.write(frame)
        w.release()
    print(f"{k} clips in {vdir}")


if __name__ == "__main__":
    main()
