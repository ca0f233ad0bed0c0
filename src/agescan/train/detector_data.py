"""Training scenes for the face detector: real train-split faces pasted into backgrounds, some with hidden eyes.

Faces: UTKFace *train* chips (and, optionally, MORPH mugshots with their surroundings), each labelled once by a
teacher detector on the clean, padded image (box + five landmarks; :func:`label_faces`). The labels of a face
whose eyes are hidden later come from that clean copy: the band hides the eyes, not where they are.

Each sample is a ``size`` x ``size`` BGR image (the network's input order) with its face boxes and landmarks:

* ``scene``: a background (a crop of a face-free photo that no benchmark uses, or a procedural texture) with one to
  six faces pasted at log-uniform sizes, rotated, through a feathered ellipse or as a whole rectangle;
* ``chip``: one padded chip at a random scale and position (how tight chips reach the detector in evaluation);
* ``photo``: a crop of a MORPH mugshot (a real photo: shoulders, hair, studio background), when given;
* ``empty``: a background alone, sometimes with black bars and skin-coloured blobs (hard negatives for a
  detector that learns to fire on eye bands).

Any background may carry lines of random text (40%: letters such as o, e and a over a light ground were the
first fine-tuned detector's false faces) and soft blobs (25%: stars, lamps).

Per face, with probability ``occlusion``: an eye cover along the eye line, its height 18-35% of the box height
and length 85-110% of its width: black (the paper's band) most often, else a mosaic, a blur or a flat colour.
Per image: flip, brightness/contrast/gamma, colour cast, grey, Gaussian or motion blur, noise, JPEG.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

#: Background photos of scikit-image and matplotlib that *no* benchmark uses (benchmarks/detection.py draws its
#: backgrounds from other scikit-image samples; negatives/ and wider_val200/ are never trained on).
BACKGROUNDS_SKIMAGE = ("cell.png", "chessboard_RGB.png", "clock_motion.png", "color.png", "horse.png", "ihc.png",
                       "logo.png", "microaneurysms.png", "motorcycle_left.png", "motorcycle_right.png", "phantom.png",
                       "text.png")
BACKGROUNDS_MATPLOTLIB = ("Minduka_Present_Blue_Pack.png", "logo2.png")
PAD = 50


@dataclass
class FaceSource:
    """One labelled face image: RGB pixels with the teacher's box (x1, y1, x2, y2) and 5 x 2 landmarks."""

    image: np.ndarray
    box: np.ndarray
    kps: np.ndarray
    kind: str = "chip"  # "chip" (tight UTKFace chip) or "photo" (a face with its surroundings)


def _read_rgb(path: str | Path) -> np.ndarray | None:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if img is None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def background_photos() -> list[np.ndarray]:
    """The face-free training background photos (RGB), from the installed scikit-image and matplotlib."""
    import matplotlib
    import skimage

    out = []
    roots = [(Path(skimage.__file__).parent / "data", BACKGROUNDS_SKIMAGE),
             (Path(matplotlib.__file__).parent / "mpl-data" / "sample_data", BACKGROUNDS_MATPLOTLIB)]
    for root, names in roots:
        for name in names:
            img = cv2.imread(str(root / name), cv2.IMREAD_UNCHANGED)
            if img is None:
                continue
            if img.ndim == 2:
                img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
            elif img.shape[2] == 4:
                img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
            else:
                img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            if img.dtype != np.uint8:
                img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
            out.append(img)
    return out


def label_faces(paths: list[str], teacher, cache: Path | None = None, kind: str = "chip") -> dict[str, dict]:
    """The teacher's central face on each padded image: {path: {"box": [...], "kps": [[x, y], ...]}}, in the
    unpadded image's coordinates; images where it finds none are left out. Cached as JSON."""
    from agescan.eval.run import central_face, pad_chip

    labels = json.loads(cache.read_text()) if cache and cache.is_file() else {}
    todo = [p for p in paths if p not in labels]
    for i in range(0, len(todo), 32):
        part = todo[i:i + 32]
        imgs = [_read_rgb(p) for p in part]
        ok = [(p, im) for p, im in zip(part, imgs) if im is not None]
        by_shape: dict[tuple, list] = {}
        for p, im in ok:
            by_shape.setdefault(im.shape, []).append((p, im))
        for group in by_shape.values():
            dets = teacher.detect_batch([pad_chip(im) for _, im in group])
            for (p, im), d in zip(group, dets):
                h, w = im.shape[:2]
                face = central_face(d, w, h)
                if face is None:
                    labels[p] = None
                    continue
                labels[p] = {"box": [v - PAD for v in face.box.as_tuple()],
                             "kps": (face.landmarks.as_array() - PAD).tolist(), "kind": kind}
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(labels))
    return {p: v for p, v in labels.items() if v is not None and p in set(paths)}


def utkface_paths(data: str | Path, split: str = "train") -> list[str]:
    data = Path(data)
    with open(data / "labels.csv", newline="") as fh:
        return [str(data / r["path"]) for r in csv.DictReader(fh) if r.get("split") == split]


def morph_paths(data: str | Path) -> list[str]:
    data = Path(data)
    with open(data / "labels.csv", newline="") as fh:
        return [str(data / r["path"]) for r in csv.DictReader(fh)]


# -- augmentation helpers ----------------------------------------------------------------------------
def _pebbles(rng: np.random.Generator, size: int) -> np.ndarray:
    """Many small shaded ellipses (gravel, coins, pebbles, bubbles): round blobs with a light and a dark side."""
    img = np.full((size, size, 3), rng.integers(20, 200, 3), np.uint8)
    light = rng.uniform(0, 2 * np.pi)
    for _ in range(int(rng.integers(20, 200))):
        cx, cy = (int(v) for v in rng.integers(0, size, 2))
        r = int(np.exp(rng.uniform(np.log(3), np.log(max(4, size // 5)))))
        base = rng.integers(30, 230, 3).astype(np.float32)
        tile = np.zeros((2 * r + 1, 2 * r + 1, 3), np.float32)
        yy, xx = np.mgrid[-r:r + 1, -r:r + 1].astype(np.float32) / max(r, 1)
        inside = xx ** 2 + yy ** 2 <= 1
        shade = 1 + 0.5 * (xx * np.cos(light) + yy * np.sin(light))
        tile[inside] = np.clip(base * shade[inside, None], 0, 255)
        y0, x0 = cy - r, cx - r
        ys, xs = slice(max(0, y0), min(size, cy + r + 1)), slice(max(0, x0), min(size, cx + r + 1))
        sub = tile[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
        m = inside[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
        img[ys, xs][m] = sub[m].astype(np.uint8)
    return cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.3, 1.5)))


@dataclass(frozen=True)
class Negatives:
    """How often backgrounds carry the hard negatives (training options ``--text``, ``--blobs``, ...)."""

    text: float = 0.4  # share of backgrounds with lines of random text
    blobs: float = 0.25  # share with soft blobs
    text_scale_max: float = 6.0  # largest OpenCV font scale of the text
    pebbles: bool = True  # procedural backgrounds may be pebbles (shaded discs)
    scene_bars: float = 0.3  # share of scene backgrounds (under the faces) with bars, as in empty samples
    bar_text: bool = True  # half the bars carry light text or an emblem (name tags, badges, captions)


def _procedural(rng: np.random.Generator, size: int, neg: Negatives = Negatives()) -> np.ndarray:
    kind = rng.integers(5 if neg.pebbles else 4)
    if kind == 4:
        return _pebbles(rng, size)
    if kind == 0:  # blurred colour noise
        small = rng.integers(0, 256, (max(2, size // int(rng.integers(4, 40))),) * 2 + (3,), dtype=np.uint8)
        return cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    if kind == 1:  # gradient
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = np.linspace(0, 1, size)[None, :, None]
        img = (a * (1 - t) + b * t).repeat(size, 0)
        return np.ascontiguousarray(np.rot90(img, int(rng.integers(4)))).astype(np.uint8)
    img = np.full((size, size, 3), rng.integers(0, 256, 3), np.uint8)
    for _ in range(int(rng.integers(5, 40))):  # dead-leaves shapes / lines
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = (int(v) for v in rng.integers(0, size, 2))
        r = int(rng.integers(3, max(4, size // 3)))
        if kind == 2:
            cv2.circle(img, (x, y), r, colour, -1)
        else:
            cv2.rectangle(img, (x, y), (x + r, y + int(rng.integers(2, r + 3))), colour, -1)
    return img


_FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_PLAIN, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
          cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_COMPLEX_SMALL, cv2.FONT_HERSHEY_SCRIPT_SIMPLEX)
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:-@#%&()"


def _text(rng: np.random.Generator, img: np.ndarray, scale_max: float = 6.0) -> None:
    """Lines of random text in place (dark on light or light on dark): letters such as o, e, a, 8 are what a
    detector trained on eye bands mistakes for banded faces; documents and screenshots are full of them."""
    size = img.shape[0]
    dark = rng.random() < 0.7
    colour = tuple(int(c) for c in (rng.integers(0, 90, 3) if dark else rng.integers(170, 256, 3)))
    scale = float(np.exp(rng.uniform(np.log(0.4), np.log(scale_max))))
    font = _FONTS[int(rng.integers(len(_FONTS)))]
    thick = int(rng.integers(1, 4))
    y = int(rng.integers(5, max(6, size // 4)))
    step = int(28 * scale) + 4
    while y < size:
        line = "".join(rng.choice(list(_LETTERS), int(rng.integers(3, 30))))
        cv2.putText(img, line, (int(rng.integers(-20, size // 3)), y), font, scale, colour, thick, cv2.LINE_AA)
        y += int(step * rng.uniform(1.0, 2.5))
        if rng.random() < 0.25:
            break


def _blobs(rng: np.random.Generator, img: np.ndarray) -> None:
    """Soft bright or dark blobs in place (stars, galaxies, lamps, spots)."""
    size = img.shape[0]
    layer = np.zeros(img.shape[:2], np.float32)
    for _ in range(int(rng.integers(2, 12))):
        cx, cy = (int(v) for v in rng.integers(0, size, 2))
        axes = tuple(int(v) for v in rng.integers(2, size // 6, 2))
        cv2.ellipse(layer, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, float(rng.uniform(0.3, 1.0)), -1)
    layer = cv2.GaussianBlur(layer, (0, 0), float(rng.uniform(1.5, 6.0)))[..., None]
    colour = rng.integers(0, 256, 3).astype(np.float32)
    img[:] = np.clip(img * (1 - layer) + colour * layer, 0, 255).astype(np.uint8)


def _background(rng: np.random.Generator, photos: list[np.ndarray], size: int,
                neg: Negatives = Negatives()) -> np.ndarray:
    img = _base_background(rng, photos, size, neg)
    if rng.random() < neg.text:
        _text(rng, img, neg.text_scale_max)
    if rng.random() < neg.blobs:
        _blobs(rng, img)
    return img


def _base_background(rng: np.random.Generator, photos: list[np.ndarray], size: int,
                     neg: Negatives = Negatives()) -> np.ndarray:
    if photos and rng.random() < 0.65:
        src = photos[int(rng.integers(len(photos)))]
        sh, sw = src.shape[:2]
        side = int(min(sh, sw) * rng.uniform(0.25, 1.0))
        y, x = int(rng.integers(0, sh - side + 1)), int(rng.integers(0, sw - side + 1))
        img = cv2.resize(src[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            img = img[:, ::-1]
        img = np.clip(img.astype(np.float32) * rng.uniform(0.6, 1.3, 3), 0, 255).astype(np.uint8)
    else:
        img = _procedural(rng, size, neg)
    return np.ascontiguousarray(img)


def _hard_negatives(rng: np.random.Generator, img: np.ndarray, neg: Negatives = Negatives()) -> None:
    """Black bars (what an eye band looks like without a face around it), some holding light text or an emblem
    (name tags, badges, captions), and a skin-coloured blob, drawn in place."""
    size = img.shape[0]
    for _ in range(int(rng.integers(1, 4))):
        w, h = int(rng.uniform(0.05, 0.5) * size), int(rng.uniform(0.02, 0.12) * size)
        cx, cy = rng.uniform(0, size, 2)
        box = ((float(cx), float(cy)), (float(w), float(h)), float(rng.uniform(-30, 30)))
        cv2.fillConvexPoly(img, cv2.boxPoints(box).astype(np.int32), (0, 0, 0))
        if neg.bar_text and rng.random() < 0.5:
            light = tuple(int(c) for c in rng.integers(150, 256, 3))
            x0, y0 = int(cx - w / 2 + 2), int(cy + h / 4)
            if rng.random() < 0.6:
                word = "".join(rng.choice(list(_LETTERS[:62]), int(rng.integers(3, 12))))
                cv2.putText(img, word, (x0, y0), _FONTS[int(rng.integers(len(_FONTS)))], max(0.3, h / 40), light,
                            1, cv2.LINE_AA)
            else:  # an emblem: a star or wings
                c = (int(cx), int(cy))
                r = max(2, h // 3)
                cv2.circle(img, c, r, light, -1)
                cv2.ellipse(img, (c[0] - 2 * r, c[1]), (2 * r, max(1, r // 2)), 0, 0, 360, light, -1)
                cv2.ellipse(img, (c[0] + 2 * r, c[1]), (2 * r, max(1, r // 2)), 0, 0, 360, light, -1)
    if rng.random() < 0.5:  # skin-coloured blob
        colour = tuple(int(c) for c in np.clip(np.array([200, 150, 120]) * rng.uniform(0.5, 1.2), 0, 255))
        cx, cy = (int(v) for v in rng.integers(0, size, 2))
        axes = tuple(int(v) for v in rng.integers(5, size // 4, 2))
        cv2.ellipse(img, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)


def _eye_cover(rng: np.random.Generator, img: np.ndarray, box: np.ndarray, kps: np.ndarray) -> None:
    """Hide the eyes of one face in place (on the training canvas): band, mosaic, blur or flat colour."""
    (lx, ly), (rx, ry) = kps[0], kps[1]
    cx, cy = (lx + rx) / 2, (ly + ry) / 2
    ang = math.degrees(math.atan2(ry - ly, rx - lx))
    bw, bh = box[2] - box[0], box[3] - box[1]
    length, height = bw * rng.uniform(0.85, 1.1), bh * rng.uniform(0.18, 0.35)
    poly = cv2.boxPoints(((float(cx), float(cy)), (float(length), float(height)), ang))
    mask = np.zeros(img.shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, np.round(poly * 16).astype(np.int32), 255, lineType=cv2.LINE_8, shift=4)
    sel = mask > 0
    if not sel.any():
        return
    kind = rng.random()
    if kind < 0.65:
        img[sel] = 0
    elif kind < 0.78:  # mosaic
        cell = max(2, int(bh * rng.uniform(0.06, 0.15)))
        h, w = img.shape[:2]
        small = cv2.resize(img, (max(1, w // cell), max(1, h // cell)), interpolation=cv2.INTER_AREA)
        img[sel] = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)[sel]
    elif kind < 0.9:  # heavy blur
        k = max(3, int(bh * 0.3) | 1)
        img[sel] = cv2.GaussianBlur(img, (k, k), 0)[sel]
    else:
        img[sel] = rng.integers(0, 256, 3).astype(np.uint8)


def _photometric(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    x = img.astype(np.float32)
    x = (x - 128) * rng.uniform(0.6, 1.4) + 128 + rng.uniform(-40, 40)
    x *= rng.uniform(0.85, 1.15, 3).astype(np.float32)
    if rng.random() < 0.3:
        x = 255 * np.power(np.clip(x, 0, 255) / 255, rng.uniform(0.6, 1.6))
    if rng.random() < 0.1:
        x[:] = x.mean(axis=2, keepdims=True)
    if rng.random() < 0.2:
        x += rng.normal(0, rng.uniform(2, 10), x.shape).astype(np.float32)
    img = np.clip(x, 0, 255).astype(np.uint8)
    r = rng.random()
    if r < 0.15:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.5, 2.0)))
    elif r < 0.25:
        k = int(rng.integers(3, 9))
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2] = 1.0 / k
        m = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
        kernel = cv2.warpAffine(kernel, m, (k, k))
        img = cv2.filter2D(img, -1, kernel / max(kernel.sum(), 1e-6))
    if rng.random() < 0.3:
        ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 95))])
        img = cv2.imdecode(enc, cv2.IMREAD_UNCHANGED)
    return img


class SceneSampler:
    """Draws training samples; ``sample(rng)`` -> (size x size x 3 BGR uint8, boxes N x 4, landmarks N x 5 x 2)."""

    def __init__(self, faces: list[FaceSource], photos: list[np.ndarray], size: int = 320, occlusion: float = 0.5,
                 min_face: float = 10.0, max_face: float = 280.0,
                 mix: tuple[float, float, float, float] = (0.5, 0.22, 0.12, 0.16),
                 negatives: Negatives = Negatives()):
        self.chips = [f for f in faces if f.kind == "chip"]
        self.photos_with_faces = [f for f in faces if f.kind == "photo"]
        self.backgrounds = photos
        self.negatives = negatives
        self.size, self.occlusion = size, occlusion
        self.min_face, self.max_face = min_face, max_face
        mix = list(mix)
        if not self.photos_with_faces:
            mix[2] = 0.0
        self.mix = np.asarray(mix) / sum(mix)

    def _face_height(self, rng: np.random.Generator) -> float:
        return float(np.exp(rng.uniform(np.log(self.min_face), np.log(self.max_face))))

    def sample(self, rng: np.random.Generator):
        kind = rng.choice(4, p=self.mix)
        size = self.size
        img = _background(rng, self.backgrounds, size, self.negatives)
        boxes, kps = [], []
        if kind == 0:
            if self.negatives.scene_bars and rng.random() < self.negatives.scene_bars:
                _hard_negatives(rng, img, self.negatives)  # under the faces pasted next
            self._paste_many(rng, img, boxes, kps)
        elif kind == 1:
            self._paste_chip(rng, img, boxes, kps)
        elif kind == 2:
            img = self._photo(rng, boxes, kps)
        else:
            _hard_negatives(rng, img, self.negatives)
        for b, k in zip(boxes, kps):
            if rng.random() < self.occlusion:
                _eye_cover(rng, img, b, k)
        img = _photometric(rng, img)
        boxes_a = np.asarray(boxes, np.float32).reshape(-1, 4)
        kps_a = np.asarray(kps, np.float32).reshape(-1, 5, 2)
        if rng.random() < 0.5:  # mirror: image-left and image-right landmarks swap roles
            img = np.ascontiguousarray(img[:, ::-1])
            boxes_a[:, [0, 2]] = size - boxes_a[:, [2, 0]]
            kps_a[..., 0] = size - kps_a[..., 0]
            kps_a = kps_a[:, [1, 0, 2, 4, 3]]
        return np.ascontiguousarray(img[..., ::-1]), boxes_a, kps_a

    # -- face placement ------------------------------------------------------------------------------------
    def _transform(self, rng, src: FaceSource, target_h: float, angle: float, centre: tuple[float, float]):
        bh = src.box[3] - src.box[1]
        s = target_h / bh
        bc = ((src.box[0] + src.box[2]) / 2, (src.box[1] + src.box[3]) / 2)
        m = cv2.getRotationMatrix2D(bc, angle, s)
        m[:, 2] += np.asarray(centre) - np.asarray(bc)
        return m

    def _place(self, rng, img, src: FaceSource, m: np.ndarray, shape: str, boxes, kps) -> None:
        size = self.size
        h, w = src.image.shape[:2]
        warped = cv2.warpAffine(src.image, m, (size, size), flags=cv2.INTER_AREA if m[0, 0] ** 2 + m[0, 1] ** 2 < 1
                                else cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        alpha = np.zeros((h, w), np.float32)
        if shape == "ellipse":
            cx, cy = (src.box[0] + src.box[2]) / 2, (src.box[1] + src.box[3]) / 2
            ax = (src.box[2] - src.box[0]) * rng.uniform(0.6, 0.9)
            ay = (src.box[3] - src.box[1]) * rng.uniform(0.6, 0.85)
            cv2.ellipse(alpha, (int(cx), int(cy)), (max(1, int(ax)), max(1, int(ay))), 0, 0, 360, 1.0, -1)
            k = max(3, int(min(ax, ay) * 0.3) | 1)
            alpha = cv2.GaussianBlur(alpha, (k, k), 0)
        else:
            alpha[:] = 1.0
        a = cv2.warpAffine(alpha, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)[..., None]
        img[:] = (warped * a + img * (1 - a)).astype(np.uint8)
        pts = np.concatenate([src.kps, [[src.box[0], src.box[1]], [src.box[2], src.box[1]],
                                        [src.box[2], src.box[3]], [src.box[0], src.box[3]]]])
        pts = pts @ m[:, :2].T + m[:, 2]
        corners = pts[5:]
        # The rotated box's axis-aligned hull, shrunk towards the centre so a rotated face keeps a face-sized box.
        c = corners.mean(0)
        half = (corners.max(0) - corners.min(0)) / 2
        theta = abs(math.atan2(m[1, 0], m[0, 0]))
        shrink = 1.0 / (abs(math.cos(theta)) + abs(math.sin(theta)))
        half = half * (0.5 + 0.5 * shrink)
        boxes.append([c[0] - half[0], c[1] - half[1], c[0] + half[0], c[1] + half[1]])
        kps.append(pts[:5])

    def _paste_many(self, rng, img, boxes, kps) -> None:
        taken: list[tuple[float, float, float, float]] = []
        for _ in range(int(rng.integers(1, 7))):
            src = self.chips[int(rng.integers(len(self.chips)))]
            th = self._face_height(rng) * (0.6 if taken else 1.0)
            th = max(th, self.min_face)
            angle = float(rng.uniform(-30, 30)) if rng.random() < 0.6 else 0.0
            for _try in range(20):
                cx, cy = rng.uniform(0, self.size, 2)
                fp = (cx - th * 0.6, cy - th * 0.6, cx + th * 0.6, cy + th * 0.6)
                if all(fp[2] < t[0] or fp[0] > t[2] or fp[3] < t[1] or fp[1] > t[3] for t in taken):
                    break
            else:
                continue
            inside = 0 <= cx - th / 2 and cx + th / 2 <= self.size and 0 <= cy - th / 2 and cy + th / 2 <= self.size
            if not inside and rng.random() < 0.7:
                continue
            taken.append(fp)
            m = self._transform(rng, src, th, angle, (cx, cy))
            self._place(rng, img, src, m, "ellipse" if rng.random() < 0.6 else "rect", boxes, kps)

    def _paste_chip(self, rng, img, boxes, kps) -> None:
        from agescan.eval.run import pad_chip

        src = self.chips[int(rng.integers(len(self.chips)))]
        pad = int(rng.integers(10, 80))
        padded = pad_chip(src.image) if pad == PAD else cv2.copyMakeBorder(src.image, pad, pad, pad, pad,
                                                                            cv2.BORDER_REPLICATE)
        shifted = FaceSource(padded, src.box + pad, src.kps + pad, "chip")
        th = self._face_height(rng)
        cx, cy = rng.uniform(th * 0.4, self.size - th * 0.4, 2) if th < self.size * 0.8 else (self.size / 2,) * 2
        angle = float(rng.uniform(-15, 15)) if rng.random() < 0.3 else 0.0
        self._place(rng, img, shifted, self._transform(rng, shifted, th, angle, (cx, cy)), "rect", boxes, kps)

    def _photo(self, rng, boxes, kps) -> np.ndarray:
        src = self.photos_with_faces[int(rng.integers(len(self.photos_with_faces)))]
        img = _background(rng, self.backgrounds, self.size, self.negatives)
        th = self._face_height(rng)
        cx, cy = rng.uniform(th * 0.3, self.size - th * 0.3, 2)
        angle = float(rng.uniform(-20, 20)) if rng.random() < 0.3 else 0.0
        self._place(rng, img, src, self._transform(rng, src, th, angle, (cx, cy)), "rect", boxes, kps)
        return img


def load_faces(labels: dict[str, dict], limit: int = 0) -> list[FaceSource]:
    out = []
    for path, lab in list(labels.items())[: limit or None]:
        img = _read_rgb(path)
        if img is None:
            continue
        out.append(FaceSource(img, np.asarray(lab["box"], np.float32), np.asarray(lab["kps"], np.float32),
                              lab.get("kind", "chip")))
    return out


def worker_seed(base: int) -> int:
    return (base * 1_000_003 + os.getpid()) % (2 ** 31)
