"""Face-detector benchmark: recall (clean and with the eye band), false faces, landmark error and speed.

A hand-run benchmark, not a test. Every configuration (``--detector NAME[:THRESHOLD]``, repeatable; default MTCNN
and the pipeline's default detector) runs on the same four sets, and a Markdown section for docs/benchmarks.md is
printed (``--out`` also writes every number, per face and per scene, as JSON):

1. **Synthetic scenes** of UTKFace *test-split* faces, built deterministically from ``--seed``:

   * Faces: UTKFace test chips (200x200, aligned and cropped) listed in
     ``$AGESCAN_SHARED/data/utkface/labels.csv`` (default ``AGESCAN_SHARED`` is ``<repo>/../shared``), shuffled once
     and used in order, so no face appears twice.
   * Scenes: ``--scenes`` images, each size drawn uniformly from 640x480, 1280x720 and 1920x1080. The background
     is a grid of 1-2 x 1-3 tiles; each tile is a random crop of a face-free scikit-image sample photo (coffee,
     chelsea, rocket, brick, grass, gravel, hubble_deep_field, coins, page, moon, retina; agescan's detector
     training never uses these) or blurred noise, flipped and colour-tinted at random. A random linear brightness
     gradient (+-30 %) and Gaussian noise (sigma 3) cover the whole scene.
   * Pasting: 1-4 faces per scene. Each chip is resized to a side drawn log-uniformly in [12, 400] px (redrawn, up
     to 20 times, until its rotated footprint fits the scene), rotated by an angle drawn uniformly in [-30, 30]
     degrees, and alpha-blended through a feathered ellipse (centre of the chip, semi-axes 0.42 x 0.48 of the
     side, fully opaque inside 85 %). Positions are random with non-overlapping footprints.
   * Ground truth: the five ``agescan.align.UTKFACE_TEMPLATE`` landmarks mapped through the same resize +
     rotation + translation, and the face's age. **Face size** = the pasted chip's side (UTKFace's aligned chip
     spans about forehead to chin).
   * **Banded** copy of every scene: the paper's eye band (25 % of the face-box height, 95 % of its width, along
     the eye line) drawn on each face from the ground-truth eyes, with the box of
     ``agescan.eval.run.TEMPLATE_BOX`` scaled to the chip (MTCNN's median box on UTKFace chips).

2. **Empty backgrounds**: ``--empty`` scenes built the same way without faces; every detection is false.
3. **negatives/**: 303 ImageNet photos of classes chosen to be mostly without people (research use). Some do show
   a person; ``--save-examples`` writes each detection's crop so it can be inspected before calling it false.
4. **wider_val200/**: 200 WIDER FACE val photos (crowds, 416x416, 4,370 boxes; research use), real scenes no
   training step saw. A box is found when a detection overlaps it with IoU >= 0.3 (box conventions differ
   between detectors and annotators), one-to-one, greedy by IoU; recall by box height.

Matching on synthetic scenes: a face counts as found when a detection's box contains its ground-truth nose point and
the detection's eye distance is 0.5x-2x the ground-truth eye distance. Faces and detections are paired one-to-one,
greedily by nose-point distance. Detections paired with no face are false positives. Landmark error is the mean
distance of the two detected eye centres from the ground-truth ones, in % of the ground-truth eye distance; since
the ground truth is the *mean* template, it includes the per-chip scatter of UTKFace's own alignment.

Speed is the wall time of ``detect()`` alone on the clean scenes, after one warm-up call, with one pass per
configuration (two detectors interleaved on the same cores slow each other down: their idle onnxruntime thread
pools spin). Known artefact: the elliptical cut-out removes the head's outline, so faces pasted onto
skin-coloured backgrounds are harder to find than in a real photo.

Usage (from the repository root; run on an idle machine for the speed columns):

    .venv/bin/python benchmarks/detection.py --scenes 300 --seed 0 --out runs/bench/detection.json
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from agescan.align import UTKFACE_TEMPLATE
from agescan.detect import DEFAULT_DETECTOR, create_detector
from agescan.eval.run import TEMPLATE_BOX
from agescan.privacy import eye_band
from agescan.types import AGE_GROUPS, BBox, Detection, Landmarks5, age_group

REPO = Path(__file__).resolve().parents[1]
SCENE_SIZES = ((640, 480), (1280, 720), (1920, 1080))  # (width, height)
FACE_SIDE = (12, 400)
MAX_ANGLE = 30.0
FACES_PER_SCENE = (1, 4)
#: Face-free scikit-image samples (not astronaut, camera or lfw_subset: they show people).
TEXTURES = ("coffee", "chelsea", "rocket", "brick", "grass", "gravel", "hubble_deep_field", "coins",
            "page", "moon", "retina")
ELLIPSE = (0.5, 0.5, 0.42, 0.48)  # centre x, centre y, semi-axes, as fractions of the chip side
FEATHER = 0.15  # alpha ramps from 1 to 0 over the outer 15 % of the ellipse radius
FACE_REGION = (0.2, 0.15, 0.8, 0.9)  # where the face sits in a chip (x1, y1, x2, y2); drawing only
EYE_RATIO = (0.5, 2.0)
SIZE_BUCKETS = ((12, 24), (24, 32), (32, 64), (64, 400))
ROTATION_BUCKETS = (("0-15", 0.0, 15.0), ("15-30", 15.0, 30.0))  # |angle| in degrees, upper exclusive
N_EXAMPLES = 8


@dataclass
class Face:
    """One pasted face and its ground truth in scene pixels."""

    file: str  # UTKFace image file name
    age: int
    side: int
    angle: float
    landmarks: np.ndarray  # (5, 2): eyes, nose, mouth corners
    region: np.ndarray  # (4, 2) polygon of the chip's face region, for drawing

    @property
    def eye_distance(self) -> float:
        return float(np.linalg.norm(self.landmarks[1] - self.landmarks[0]))


@dataclass
class Scene:
    """A synthetic scene: an RGB image and the faces pasted into it."""

    index: int
    image: np.ndarray
    faces: list[Face] = field(default_factory=list)


# -- data ---------------------------------------------------------------------------------------
def utkface_dir() -> Path:
    """The UTKFace folder under the shared data, or exit with a message saying how to provide it."""
    shared = Path(os.environ.get("AGESCAN_SHARED", REPO.parent / "shared"))
    folder = shared / "data" / "utkface"
    if not (folder / "labels.csv").is_file():
        sys.exit(f"detection benchmark: {folder / 'labels.csv'} not found. Set AGESCAN_SHARED to the shared/ "
                 f"folder holding data/utkface (labels.csv and images/).")
    return folder


def utkface_test_faces(folder: Path, rng: np.random.Generator, split: str = "test") -> list[tuple[Path, int]]:
    """UTKFace faces of ``split`` (default test) as (path, age), shuffled by ``rng``."""
    with open(folder / "labels.csv", newline="") as fh:
        rows = [(folder / r["path"], int(r["age"])) for r in csv.DictReader(fh) if r["split"] == split]
    order = rng.permutation(len(rows))
    return [rows[i] for i in order]


def load_textures() -> list[np.ndarray]:
    """The background photos as RGB uint8 arrays."""
    import skimage.data

    out = []
    for name in TEXTURES:
        img = getattr(skimage.data, name)()
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        out.append(np.ascontiguousarray(img[..., :3]))
    return out


def read_rgb(path: Path) -> np.ndarray:
    """Read an image file as RGB uint8."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        sys.exit(f"detection benchmark: cannot read {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# -- scene synthesis ----------------------------------------------------------------------------
def texture_tile(rng: np.random.Generator, textures: list[np.ndarray], w: int, h: int) -> np.ndarray:
    """A w x h float32 tile: a random crop of a random texture (or blurred noise), flipped and tinted."""
    k = int(rng.integers(len(textures) + 1))
    if k == len(textures):
        noise = rng.integers(40, 220, (h, w, 3), dtype=np.uint8)
        tile = cv2.GaussianBlur(noise, (0, 0), float(rng.uniform(3, 12))).astype(np.float32)
    else:
        src = textures[k]
        sh, sw = src.shape[:2]
        scale = min(sw / w, sh / h) * rng.uniform(0.3, 1.0)
        cw, ch = max(8, int(w * scale)), max(8, int(h * scale))
        x, y = int(rng.integers(0, sw - cw + 1)), int(rng.integers(0, sh - ch + 1))
        crop = src[y:y + ch, x:x + cw]
        interp = cv2.INTER_AREA if cw > w else cv2.INTER_LINEAR
        tile = cv2.resize(crop, (w, h), interpolation=interp).astype(np.float32)
    if rng.random() < 0.5:
        tile = tile[:, ::-1]
    return tile * rng.uniform(0.7, 1.2, 3).astype(np.float32)


def make_background(rng: np.random.Generator, textures: list[np.ndarray], w: int, h: int) -> np.ndarray:
    """A w x h RGB uint8 background: a grid of texture tiles under a brightness gradient and noise."""
    rows, cols = int(rng.integers(1, 3)), int(rng.integers(1, 4))
    ys = np.linspace(0, h, rows + 1).astype(int)
    xs = np.linspace(0, w, cols + 1).astype(int)
    bg = np.empty((h, w, 3), dtype=np.float32)
    for r in range(rows):
        for c in range(cols):
            bg[ys[r]:ys[r + 1], xs[c]:xs[c + 1]] = texture_tile(rng, textures, xs[c + 1] - xs[c], ys[r + 1] - ys[r])
    theta = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (xx / w - 0.5) * np.cos(theta) + (yy / h - 0.5) * np.sin(theta)
    bg *= (1.0 + rng.uniform(-0.3, 0.3) * 2 * ramp)[..., None]
    bg += rng.normal(0.0, 3.0, bg.shape).astype(np.float32)
    return np.clip(bg, 0, 255).round().astype(np.uint8)


def footprint(side: int, angle: float) -> int:
    """Side of the square canvas that holds a chip of ``side`` px rotated by ``angle`` degrees."""
    a = math.radians(angle)
    return int(math.ceil(side * (abs(math.cos(a)) + abs(math.sin(a))))) + 2


def draw_side(rng: np.random.Generator, angle: float, w: int, h: int) -> int | None:
    """A log-uniform chip side in FACE_SIDE whose rotated footprint fits a w x h scene (None if none does)."""
    lo, hi = np.log(FACE_SIDE[0]), np.log(FACE_SIDE[1])
    for _ in range(20):
        side = int(round(np.exp(rng.uniform(lo, hi))))
        if footprint(side, angle) <= min(w, h):
            return side
    return None


def overlaps(a: tuple[int, int, int, int], b: tuple[int, int, int, int], gap: int = 4) -> bool:
    """Whether boxes (x1, y1, x2, y2) ``a`` and ``b`` come closer than ``gap`` pixels."""
    return not (a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1])


def place(rng: np.random.Generator, size: int, w: int, h: int,
          taken: list[tuple[int, int, int, int]]) -> tuple[int, int] | None:
    """A random top-left corner for a size x size square inside w x h clear of ``taken`` (None after 100 tries)."""
    for _ in range(100):
        x, y = int(rng.integers(0, w - size + 1)), int(rng.integers(0, h - size + 1))
        if not any(overlaps((x, y, x + size, y + size), t) for t in taken):
            return x, y
    return None


def ellipse_alpha(side: int) -> np.ndarray:
    """Feathered elliptical opacity mask (side x side, float32 in [0, 1]) for a face chip."""
    cx, cy, ax, ay = ELLIPSE
    u = (np.arange(side, dtype=np.float32) + 0.5) / side
    r = np.sqrt(((u[None, :] - cx) / ax) ** 2 + ((u[:, None] - cy) / ay) ** 2)
    return np.clip((1.0 - r) / FEATHER, 0.0, 1.0)


def chip_points(frac: np.ndarray, chip_side: int, side: int) -> np.ndarray:
    """Map chip fractions (pixel-index convention of a chip_side chip) into a chip resized to ``side``."""
    return (np.asarray(frac, dtype=np.float64) * chip_side + 0.5) * side / chip_side - 0.5


def paste_face(scene: np.ndarray, chip: np.ndarray, side: int, angle: float, x0: int, y0: int) -> tuple[np.ndarray, np.ndarray]:
    """Blend ``chip`` resized to ``side`` and rotated by ``angle`` into ``scene`` at (x0, y0), in place.

    Returns:
        The ground-truth landmarks (5, 2) and the face-region polygon (4, 2), in scene pixels.
    """
    interp = cv2.INTER_AREA if side < chip.shape[0] else cv2.INTER_CUBIC
    small = cv2.resize(chip, (side, side), interpolation=interp)
    size = footprint(side, angle)
    m = cv2.getRotationMatrix2D(((side - 1) / 2, (side - 1) / 2), angle, 1.0)
    m[:, 2] += (size - 1) / 2 - (side - 1) / 2
    face = cv2.warpAffine(small, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(ellipse_alpha(side), m, (size, size), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)[..., None]
    roi = scene[y0:y0 + size, x0:x0 + size].astype(np.float32)
    scene[y0:y0 + size, x0:x0 + size] = np.clip(alpha * face + (1 - alpha) * roi, 0, 255).round().astype(np.uint8)

    def to_scene(frac: np.ndarray) -> np.ndarray:
        return chip_points(frac, chip.shape[0], side) @ m[:, :2].T + m[:, 2] + (x0, y0)

    x1, y1, x2, y2 = FACE_REGION
    region = to_scene(np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]]))
    return to_scene(np.asarray(UTKFACE_TEMPLATE)), region


def make_scene(index: int, rng: np.random.Generator, textures: list[np.ndarray],
               faces: Iterator[tuple[Path, int]]) -> Scene:
    """Build one scene, taking its face chips from ``faces``."""
    w, h = SCENE_SIZES[int(rng.integers(len(SCENE_SIZES)))]
    scene = Scene(index, make_background(rng, textures, w, h))
    n = int(rng.integers(FACES_PER_SCENE[0], FACES_PER_SCENE[1] + 1))
    draws = []
    for _ in range(n):
        angle = float(rng.uniform(-MAX_ANGLE, MAX_ANGLE))
        side = draw_side(rng, angle, w, h)
        if side is not None:
            draws.append((side, angle))
    taken: list[tuple[int, int, int, int]] = []
    for side, angle in sorted(draws, reverse=True):  # largest first: they are the hardest to place
        size = footprint(side, angle)
        spot = place(rng, size, w, h, taken)
        nxt = next(faces, None) if spot is not None else None
        if nxt is None:
            continue
        path, age = nxt
        landmarks, region = paste_face(scene.image, read_rgb(path), side, angle, *spot)
        taken.append((spot[0], spot[1], spot[0] + size, spot[1] + size))
        scene.faces.append(Face(path.name, age, side, angle, landmarks, region))
    return scene


def banded(scene: Scene) -> np.ndarray:
    """A copy of the scene's image with the paper's eye band over every face, placed from the ground truth."""
    img = scene.image
    bw, bh = TEMPLATE_BOX[2] - TEMPLATE_BOX[0], TEMPLATE_BOX[3] - TEMPLATE_BOX[1]
    for face in scene.faces:
        box = BBox(0.0, 0.0, bw * face.side, bh * face.side)  # the band's size; it is centred on the eyes
        img = eye_band(img, Landmarks5.from_array(face.landmarks), box)
    return img


# -- matching -----------------------------------------------------------------------------------
def match(faces: list[Face], detections: tuple[Detection, ...]) -> list[tuple[int, int]]:
    """Pair faces with detections one-to-one (see the module docstring); returns (face, detection) indices."""
    candidates = []
    for fi, face in enumerate(faces):
        nose = face.landmarks[2]
        for di, det in enumerate(detections):
            b = det.box
            if not (b.x1 <= nose[0] <= b.x2 and b.y1 <= nose[1] <= b.y2):
                continue
            lm = det.landmarks.as_array()
            ratio = float(np.linalg.norm(lm[1] - lm[0])) / face.eye_distance
            if EYE_RATIO[0] <= ratio <= EYE_RATIO[1]:
                candidates.append((float(np.linalg.norm(lm[2] - nose)), fi, di))
    pairs, used_f, used_d = [], set(), set()
    for _, fi, di in sorted(candidates):
        if fi not in used_f and di not in used_d:
            pairs.append((fi, di))
            used_f.add(fi)
            used_d.add(di)
    return pairs


def eye_error_pct(face: Face, det: Detection) -> float:
    """Mean distance of the detected eye centres from the ground truth, in % of the true eye distance."""
    lm = det.landmarks.as_array().astype(np.float64)
    err = np.linalg.norm(lm[:2] - face.landmarks[:2], axis=1).mean()
    return float(100.0 * err / face.eye_distance)


# -- running ------------------------------------------------------------------------------------
CONDITIONS = ("clean", "eyeband")


def detector_configs(args: argparse.Namespace) -> list[tuple[str, str, dict]]:
    """(label, registered name, create_detector keyword arguments) for every configuration to measure."""
    out = []
    for spec in args.detector or ["mtcnn", DEFAULT_DETECTOR]:
        name, _, thr = spec.partition(":")
        kwargs = {"min_face_size": args.min_face_size, "threads": args.threads}
        if thr:
            kwargs["score_threshold"] = float(thr)
        out.append((spec, name, kwargs))
    return out


def face_record(scene: Scene, face: Face) -> dict:
    """The JSON-ready ground truth of one face (detector results are added under "results")."""
    return {"scene": scene.index, "file": face.file, "age": face.age, "age_group": age_group(face.age),
            "side": face.side, "angle": round(face.angle, 2), "eye_distance": round(face.eye_distance, 2),
            "results": {}}


def evaluate_scene(scene: Scene, image: np.ndarray, label: str, detector, face_records: list[dict],
                   scene_record: dict) -> tuple[tuple[Detection, ...], set[int]]:
    """Time one detector on one version of a scene and record its matches under ``label``; returns the
    detections and the matched indices."""
    t0 = time.perf_counter()
    dets = detector.detect(image)
    ms = (time.perf_counter() - t0) * 1000.0
    pairs = dict(match(scene.faces, dets))
    for fi, (face, rec) in enumerate(zip(scene.faces, face_records)):
        d = dets[pairs[fi]] if fi in pairs else None
        rec["results"][label] = {
            "found": d is not None,
            "eye_error_pct": round(eye_error_pct(face, d), 2) if d else None,
            "box_to_chip": round(max(d.box.width, d.box.height) / face.side, 3) if d else None,
        }
    scene_record["results"][label] = {"ms": round(ms, 2), "detections": len(dets),
                                      "false_positives": len(dets) - len(pairs)}
    return dets, set(pairs.values())


def build_scenes(n: int, seed: int, folder: Path, textures: list[np.ndarray], split: str = "test") -> Iterator[Scene]:
    """The benchmark's scenes, one at a time; the same seed always yields the same scenes."""
    rng = np.random.default_rng(seed)
    faces = iter(utkface_test_faces(folder, rng, split))
    for i in range(n):
        yield make_scene(i, rng, textures, faces)


def empty_scenes(n: int, seed: int, textures: list[np.ndarray]) -> Iterator[np.ndarray]:
    """Face-free backgrounds drawn as the scenes' (another seed stream)."""
    rng = np.random.default_rng([seed, 1])
    for _ in range(n):
        w, h = SCENE_SIZES[int(rng.integers(len(SCENE_SIZES)))]
        yield make_background(rng, textures, w, h)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter + 1e-9)


def wider_photos(folder: Path) -> list[tuple[Path, np.ndarray]]:
    with open(folder / "labels.csv", newline="") as fh:
        return [(folder / r["path"], np.asarray(json.loads(r["boxes"]), dtype=np.float64).reshape(-1, 4))
                for r in csv.DictReader(fh)]


def run_wider(detector, photos: list[tuple[Path, np.ndarray]]) -> dict:
    """Per annotated box: its height and whether a detection matched it; unmatched detections per photo."""
    heights, found, unmatched = [], [], []
    for path, gt in photos:
        dets = detector.detect(read_rgb(path))
        pred = np.asarray([d.box.as_tuple() for d in dets]).reshape(-1, 4)
        hit = np.zeros(len(gt), bool)
        used = set()
        if len(gt) and len(pred):
            iou = iou_matrix(gt, pred)
            for gi, di in sorted(np.argwhere(iou >= 0.3), key=lambda t: -iou[t[0], t[1]]):
                if not hit[gi] and di not in used:
                    hit[gi] = True
                    used.add(di)
        heights += [float(v) for v in gt[:, 3] - gt[:, 1]]
        found += [bool(v) for v in hit]
        unmatched.append(len(pred) - len(used))
    return {"heights": heights, "found": found, "unmatched_per_photo": unmatched}


def run_negatives(detector, folder: Path, examples: Path | None, label: str) -> dict:
    """Detections per face-free (mostly) photo; with ``examples`` each detection's crop is written for inspection."""
    counts, files = [], sorted(p for p in (folder / "images").iterdir() if p.is_file())
    for path in files:
        img = read_rgb(path)
        dets = detector.detect(img)
        counts.append(len(dets))
        if examples and dets:
            for k, d in enumerate(dets):
                x1, y1, x2, y2 = (int(v) for v in d.box.as_tuple())
                pad = max(4, (x2 - x1) // 2)
                crop = img[max(0, y1 - pad):y2 + pad, max(0, x1 - pad):x2 + pad]
                out = examples / f"negatives_{label.replace(':', '_')}"
                out.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(out / f"{path.stem}_{k}_{d.score:.2f}.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    return {"photos": len(files), "detections": counts,
            "with_detection": [p.name for p, c in zip(files, counts) if c]}


def run(args: argparse.Namespace) -> tuple[list[dict], list[dict], dict]:
    """Every configuration over every set, one pass per configuration; returns (face records, scene records,
    {label: {"empty": [...], "negatives": {...}, "wider": {...}}}).

    Each configuration gets its own pass over freshly rebuilt (identical) scenes with only its own
    detector alive: interleaving two detectors' onnxruntime sessions on the same cores slows both
    (their idle thread pools spin), which would bias the timings.
    """
    folder = utkface_dir()
    textures = load_textures()
    examples = Path(args.save_examples) if args.save_examples else None
    if examples:
        examples.mkdir(parents=True, exist_ok=True)
    shared = folder.parent
    wider = wider_photos(shared / "wider_val200") if args.wider and (shared / "wider_val200").is_dir() else []
    per_scene: list[list[dict]] = []
    scene_records: list[dict] = []
    extra: dict = {}
    for n, (label, name, kwargs) in enumerate(detector_configs(args)):
        detector = create_detector(name, **kwargs)
        detector.detect(np.full((480, 640, 3), 128, dtype=np.uint8))  # session creation stays out of timings
        for i, scene in enumerate(build_scenes(args.scenes, args.seed, folder, textures, args.split)):
            if n == 0:
                h, w = scene.image.shape[:2]
                per_scene.append([face_record(scene, f) for f in scene.faces])
                scene_records.append({"scene": i, "width": w, "height": h, "faces": len(scene.faces), "results": {}})
            for cond in CONDITIONS:
                image = scene.image if cond == "clean" else banded(scene)
                dets, matched = evaluate_scene(scene, image, f"{label}|{cond}", detector, per_scene[i],
                                               scene_records[i])
                if examples and i < N_EXAMPLES:
                    save_example(examples, scene, image, per_scene[i], f"{label}|{cond}", dets, matched)
            if (i + 1) % 25 == 0 or i + 1 == args.scenes:
                print(f"[{label}] scene {i + 1}/{args.scenes}", file=sys.stderr, flush=True)
        extra[label] = {"empty": [len(detector.detect(bg)) for bg in empty_scenes(args.empty, args.seed, textures)]}
        if args.negatives and (shared / "negatives" / "images").is_dir():
            extra[label]["negatives"] = run_negatives(detector, shared / "negatives", examples, label)
        if wider:
            extra[label]["wider"] = run_wider(detector, wider)
        print(f"[{label}] backgrounds, negatives and WIDER done", file=sys.stderr, flush=True)
        del detector
    return [r for recs in per_scene for r in recs], scene_records, extra


def save_example(folder: Path, scene: Scene, image: np.ndarray, recs: list[dict], label: str,
                 dets: tuple[Detection, ...], matched: set) -> None:
    """Write a scene PNG: faces green (found) or magenta (missed), detections yellow (matched) or red (false)."""
    img = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    for face, rec in zip(scene.faces, recs):
        ok = rec["results"][label]["found"]
        colour = (0, 200, 0) if ok else (255, 0, 255)
        cv2.polylines(img, [face.region.round().astype(np.int32)], True, colour, 1, cv2.LINE_AA)
        for x, y in face.landmarks:
            cv2.circle(img, (int(round(x)), int(round(y))), 2, colour, -1, cv2.LINE_AA)
        x, y = face.region.min(axis=0)
        cv2.putText(img, f"{face.age}y {face.side}px {face.angle:+.0f}deg", (int(x), max(10, int(y) - 4)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
    for di, det in enumerate(dets):
        colour = (0, 220, 255) if di in matched else (0, 0, 255)
        b = det.box
        cv2.rectangle(img, (int(b.x1), int(b.y1)), (int(b.x2), int(b.y2)), colour, 1, cv2.LINE_AA)
        for x, y in det.landmarks.points:
            cv2.circle(img, (int(round(x)), int(round(y))), 1, colour, -1, cv2.LINE_AA)
    h, w = scene.image.shape[:2]
    tag = label.replace(":", "_").replace("|", "_")
    cv2.imwrite(str(folder / f"scene_{scene.index:03d}_{w}x{h}_{tag}.png"), img)


# -- summary ------------------------------------------------------------------------------------
def size_bucket(side: int) -> str:
    """Label of the chip-side bucket holding ``side`` (lower bound inclusive, the last also its upper)."""
    for lo, hi in SIZE_BUCKETS:
        if lo <= side < hi or side == hi == SIZE_BUCKETS[-1][1]:
            return f"{lo}-{hi}"
    return "other"


def rotation_bucket(angle: float) -> str:
    """Label of the |angle| bucket holding ``angle``."""
    for name, lo, hi in ROTATION_BUCKETS:
        if lo <= abs(angle) < hi or abs(angle) == hi == ROTATION_BUCKETS[-1][2]:
            return name
    return "other"


def recall_by(face_records: list[dict], label: str, key, keys: list[str]) -> dict:
    """{bucket: {"faces", "found", "recall"}} for one configuration; recall is None for empty buckets."""
    out = {}
    for k in keys:
        hits = [r["results"][label]["found"] for r in face_records if key(r) == k]
        out[k] = {"faces": len(hits), "found": int(sum(hits)), "recall": sum(hits) / len(hits) if hits else None}
    return out


def speed_by_size(scene_records: list[dict], label: str) -> dict:
    """{"WxH": {"scenes", "median_ms", "mean_ms", "images_per_s"}} for one configuration."""
    out = {}
    for w, h in SCENE_SIZES:
        ms = [s["results"][label]["ms"] for s in scene_records if (s["width"], s["height"]) == (w, h)]
        if ms:
            out[f"{w}x{h}"] = {"scenes": len(ms), "median_ms": statistics.median(ms), "mean_ms": statistics.fmean(ms),
                               "images_per_s": 1000.0 * len(ms) / sum(ms)}
    return out


WIDER_BUCKETS = ((0, 12), (12, 24), (24, 32), (32, 64), (64, 10_000))


def summarise(face_records: list[dict], scene_records: list[dict], extra: dict, labels: list[str]) -> dict:
    """Every aggregate number, per configuration label (scene numbers per condition)."""
    out = {}
    for label in labels:
        out[label] = {}
        for cond in CONDITIONS:
            key = f"{label}|{cond}"
            found = [r for r in face_records if r["results"][key]["found"]]
            errors = [r["results"][key]["eye_error_pct"] for r in found]
            fps = [s["results"][key]["false_positives"] for s in scene_records]
            ms = [s["results"][key]["ms"] for s in scene_records]
            out[label][cond] = {
                "faces": len(face_records), "found": len(found),
                "recall": len(found) / len(face_records) if face_records else None,
                "by_size": recall_by(face_records, key, lambda r: size_bucket(r["side"]),
                                     [f"{lo}-{hi}" for lo, hi in SIZE_BUCKETS]),
                "by_age_group": recall_by(face_records, key, lambda r: r["age_group"], [g for g, _, _ in AGE_GROUPS]),
                "by_rotation": recall_by(face_records, key, lambda r: rotation_bucket(r["angle"]),
                                         [n for n, _, _ in ROTATION_BUCKETS]),
                "false_positives_per_scene": statistics.fmean(fps) if fps else None,
                "eye_error_pct_median": statistics.median(errors) if errors else None,
                "speed_by_scene_size": speed_by_size(scene_records, key),
                "images_per_s": 1000.0 * len(ms) / sum(ms) if ms else None,
            }
        ex = extra.get(label, {})
        empty = ex.get("empty", [])
        out[label]["empty_false_per_scene"] = statistics.fmean(empty) if empty else None
        if "negatives" in ex:
            neg = ex["negatives"]
            out[label]["negatives"] = {"photos": neg["photos"], "detections": sum(neg["detections"]),
                                       "photos_with_detection": len(neg["with_detection"]),
                                       "files": neg["with_detection"]}
        if "wider" in ex:
            w = ex["wider"]
            hts, hits = np.asarray(w["heights"]), np.asarray(w["found"], bool)
            by = {}
            for lo, hi in WIDER_BUCKETS:
                m = (hts >= lo) & (hts < hi)
                by[f"{lo}-{hi}" if hi < 10_000 else f"{lo}+"] = {"faces": int(m.sum()), "found": int(hits[m].sum()),
                                                                 "recall": float(hits[m].mean()) if m.any() else None}
            out[label]["wider"] = {"boxes": int(len(hts)), "found": int(hits.sum()), "recall": float(hits.mean()),
                                   "by_height": by,
                                   "unmatched_per_photo": statistics.fmean(w["unmatched_per_photo"])}
    return out


# -- report -------------------------------------------------------------------------------------
def machine_info() -> dict:
    """Platform, CPU model, core count, library versions and the load average at start."""
    import agescan
    import onnxruntime

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return {"platform": platform.platform(), "cpu": cpu, "logical_cores": os.cpu_count(),
            "python": platform.python_version(), "onnxruntime": onnxruntime.__version__, "opencv": cv2.__version__,
            "agescan": agescan.__version__, "load_average_at_start": load}


def pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f} %"


def num(x: float | None, fmt: str = ".1f") -> str:
    return "–" if x is None else format(x, fmt)


def recall_table(title: str, summary: dict, labels: list[str], key: str) -> list[str]:
    """Markdown lines of one recall-by-bucket table: clean and banded columns per configuration."""
    buckets = summary[labels[0]]["clean"][key]
    lines = [f"| {title} | Faces | " + " | ".join(f"{lb} clean | {lb} banded" for lb in labels) + " |",
             "|---|---:|" + "---:|" * (2 * len(labels))]
    for b, cell in buckets.items():
        vals = [pct(summary[lb][c][key][b]["recall"]) for lb in labels for c in CONDITIONS]
        lines.append(f"| {b} | {cell['faces']} | " + " | ".join(vals) + " |")
    return lines


def markdown(meta: dict, summary: dict, face_records: list[dict], scene_records: list[dict]) -> str:
    """The Markdown section for docs/benchmarks.md."""
    labels = list(summary)
    m = meta["machine"]
    sizes = ", ".join(f"{sum((s['width'], s['height']) == wh for s in scene_records)} x {wh[0]}x{wh[1]}"
                      for wh in SCENE_SIZES)
    st = meta["settings"]

    def row(name: str, fn) -> str:
        return f"| {name} | " + " | ".join(fn(summary[lb]) for lb in labels) + " |"

    lines = [
        f"Measured {meta['date']} on {m['cpu']} ({m['logical_cores']} logical cores), {m['platform']}; "
        f"Python {m['python']}, onnxruntime {m['onnxruntime']}, OpenCV {m['opencv']}, agescan {m['agescan']}. "
        f"Load average at start: {m['load_average_at_start']}.", "",
        f"Command: `{meta['command']}`", "",
        f"Synthetic set: {len(scene_records)} scenes ({sizes}) holding {len(face_records)} UTKFace {st['split']}-split "
        f"faces (seed {st['seed']}), each also with the eye band; {st['empty']} empty backgrounds; every "
        f"detector at min_face_size {st['min_face_size']} (the pipeline's default), {st['threads']} onnxruntime "
        "thread(s). See the script's docstring for how the sets are built and matched.", "",
        "| | " + " | ".join(labels) + " |",
        "|---|" + "---:|" * len(labels),
        row("Recall, clean scenes", lambda v: f"{pct(v['clean']['recall'])} ({v['clean']['found']}/{v['clean']['faces']})"),
        row("Recall, banded scenes", lambda v: f"{pct(v['eyeband']['recall'])} ({v['eyeband']['found']})"),
        row("Recall ages 0-5, clean / banded", lambda v: f"{pct(v['clean']['by_age_group']['0-5']['recall'])} / "
                                                         f"{pct(v['eyeband']['by_age_group']['0-5']['recall'])}"),
        row("False faces per scene (unmatched, clean / banded)",
            lambda v: f"{num(v['clean']['false_positives_per_scene'], '.3f')} / "
                      f"{num(v['eyeband']['false_positives_per_scene'], '.3f')}"),
        row("False faces per empty background", lambda v: num(v["empty_false_per_scene"], ".3f")),
        row("negatives/: detections (photos with one) of 303", lambda v: (
            f"{v['negatives']['detections']} ({v['negatives']['photos_with_detection']})" if "negatives" in v else "–")),
        row("WIDER val200: boxes found (all sizes)", lambda v: (
            f"{pct(v['wider']['recall'])} ({v['wider']['found']}/{v['wider']['boxes']})" if "wider" in v else "–")),
        row("WIDER val200: unmatched detections per photo", lambda v: (
            num(v["wider"]["unmatched_per_photo"], ".2f") if "wider" in v else "–")),
        row("Eye error, median % of eye distance (clean / banded)",
            lambda v: f"{num(v['clean']['eye_error_pct_median'])} / {num(v['eyeband']['eye_error_pct_median'])}"),
        row("Images/s, clean scenes, all sizes", lambda v: num(v["clean"]["images_per_s"], ".2f")),
        "",
    ]
    lines += recall_table("Face size (px)", summary, labels, "by_size") + [""]
    lines += recall_table("Age group", summary, labels, "by_age_group") + [""]
    lines += recall_table("Rotation, absolute angle (degrees)", summary, labels, "by_rotation") + [""]
    if all("wider" in summary[lb] for lb in labels):
        buckets = summary[labels[0]]["wider"]["by_height"]
        lines += ["| WIDER box height (px, in 416x416) | Boxes | " + " | ".join(labels) + " |",
                  "|---|---:|" + "---:|" * len(labels)]
        for b, cell in buckets.items():
            lines.append(f"| {b} | {cell['faces']} | "
                         + " | ".join(pct(summary[lb]["wider"]["by_height"][b]["recall"]) for lb in labels) + " |")
        lines.append("")
    lines += ["| Scene size | Scenes | " + " | ".join(f"ms median / images/s, {lb}" for lb in labels) + " |",
              "|---|---:|" + "---:|" * len(labels)]
    for size, cell in summary[labels[0]]["clean"]["speed_by_scene_size"].items():
        vals = [summary[lb]["clean"]["speed_by_scene_size"][size] for lb in labels]
        lines.append(f"| {size} | {cell['scenes']} | "
                     + " | ".join(f"{v['median_ms']:.0f} / {v['images_per_s']:.2f}" for v in vals) + " |")
    return "\n".join(lines) + "\n"


def warn_if_busy() -> None:
    """Warn on stderr when the machine is already loaded: the speed numbers would not be representative."""
    if hasattr(os, "getloadavg") and os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1):
        print(f"warning: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; timings will be "
              "pessimistic and noisy (run on an idle machine for docs/benchmarks.md)", file=sys.stderr)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", type=int, default=300, help="number of synthetic scenes (default 300)")
    p.add_argument("--empty", type=int, default=100, help="number of empty backgrounds (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the whole set (default 0)")
    p.add_argument("--split", default="test", help="UTKFace split the scenes' faces come from (default test; "
                                                   "choose settings with --split val)")
    p.add_argument("--detector", action="append", default=[],
                   help=f"registered detector, optionally NAME:SCORE_THRESHOLD (repeatable; default: mtcnn and "
                        f"{DEFAULT_DETECTOR})")
    p.add_argument("--min-face-size", type=int, default=24, help="min_face_size of every detector (default 24)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1, as the pipeline)")
    p.add_argument("--no-negatives", dest="negatives", action="store_false", help="skip shared/data/negatives")
    p.add_argument("--no-wider", dest="wider", action="store_false", help="skip shared/data/wider_val200")
    p.add_argument("--out", type=Path, help="write every number (per face, per scene, summary) to this JSON file")
    p.add_argument("--save-examples", metavar="DIR", help=f"write the first {N_EXAMPLES} scenes as PNGs with "
                   "ground truth and detections drawn, and a crop of every detection on negatives/")
    args = p.parse_args(argv)
    if args.scenes < 1:
        p.error("--scenes must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    utkface_dir()  # fail fast, before any warning, when the faces are missing
    warn_if_busy()
    meta = {"date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"), "machine": machine_info(),
            "command": " ".join(["python", "benchmarks/detection.py", *(sys.argv[1:] if argv is None else argv)]),
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    face_records, scene_records, extra = run(args)
    summary = summarise(face_records, scene_records, extra, [lb for lb, _, _ in detector_configs(args)])
    print(markdown(meta, summary, face_records, scene_records))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**meta, "summary": summary, "faces": face_records, "scenes": scene_records,
                                        "sets": extra}, indent=1))


if __name__ == "__main__":
    main()
