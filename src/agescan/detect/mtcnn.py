"""MTCNN face detector (Zhang et al. 2016) on onnxruntime.

The P/R/O-Net weights come from the `mtcnn` 1.0.0 wheel (MIT, see weights/MTCNN-LICENSE.txt),
converted to ONNX by tools/convert_mtcnn.py. The cascade follows that package: an image pyramid
through P-Net, then R-Net and O-Net refinement on 24x24 and 48x48 patches; O-Net also regresses
the five landmarks. MTCNN is the detector the main paper (Chaves et al.) used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources

import cv2
import numpy as np

from agescan._validation import check_number
from agescan.detect.base import Detections, detectors, nms, onnx_session
from agescan.types import BBox, Detection, Landmarks5

_OWNER = "MTCNNDetector"


def _square(boxes: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _normalise(x: np.ndarray) -> np.ndarray:
    """uint8 pixels -> MTCNN's input scale, (x - 127.5) / 128, as float32."""
    return (x.astype(np.float32) - 127.5) * (1.0 / 128.0)


def _patches(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Crop each box from the uint8 image (mid-grey outside it), resize to size x size, normalise; NCHW.

    Resizing uint8 tiles and normalising the small result is several times cheaper than working on a
    float copy of the whole image; the zero fill matches the reference (which pads its float image
    with zeros, i.e. pixel value 127.5) closely enough for the score thresholds.
    """
    h, w = image.shape[:2]
    out = np.zeros((len(boxes), size, size, 3), dtype=np.uint8)
    valid = np.zeros(len(boxes), dtype=bool)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        ix1, iy1 = int(math.floor(x1)), int(math.floor(y1))
        ix2, iy2 = int(math.ceil(x2)), int(math.ceil(y2))
        bw, bh = ix2 - ix1, iy2 - iy1
        if bw < 2 or bh < 2:
            continue
        sx1, sy1, sx2, sy2 = max(ix1, 0), max(iy1, 0), min(ix2, w), min(iy2, h)
        if sx2 <= sx1 or sy2 <= sy1:
            continue
        tile = np.full((bh, bw, 3), 128, dtype=np.uint8)
        tile[sy1 - iy1:sy2 - iy1, sx1 - ix1:sx2 - ix1] = image[sy1:sy2, sx1:sx2]
        interp = cv2.INTER_AREA if bw > size else cv2.INTER_LINEAR
        out[i] = cv2.resize(tile, (size, size), interpolation=interp)
        valid[i] = True
    x = _normalise(out).transpose(0, 3, 1, 2)
    x[~valid] = 0.0
    return np.ascontiguousarray(x)


@dataclass(frozen=True)
class MTCNNConfig:
    min_face_size: int = 24
    scale_factor: float = 0.709
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8)
    max_side: int = 0  # 0 = no downscaling of large images before the pyramid


class MTCNNDetector:
    """Multi-task cascaded CNN: boxes, five landmarks and a score per face.

    Args:
        min_face_size: smallest face side to look for, in pixels of the input image (>= 12).
        scale_factor: ratio between pyramid levels (0 < f < 1); larger finds more, slower.
        thresholds: P-, R- and O-Net score thresholds.
        max_side: if > 0, images whose longer side exceeds it are downscaled for detection (boxes
            are mapped back); trades small-face recall for speed.
        threads: onnxruntime intra-op threads (0 = onnxruntime's default).

    Example:
        >>> from agescan.detect import create_detector
        >>> det = create_detector("mtcnn")  # doctest: +SKIP
        >>> faces = det.detect(image)       # doctest: +SKIP
    """

    name = "mtcnn"

    def __init__(self, min_face_size: int = 24, scale_factor: float = 0.709,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.8), max_side: int = 0, threads: int = 0):
        check_number(min_face_size, "min_face_size", _OWNER, lo=12, integer=True)
        check_number(scale_factor, "scale_factor", _OWNER, lo=0.1, hi=0.95)
        if len(thresholds) != 3:
            raise check_number(None, "thresholds", _OWNER)  # pragma: no cover - raises InputError
        for t in thresholds:
            check_number(t, "thresholds", _OWNER, lo=0.0, hi=1.0)
        check_number(max_side, "max_side", _OWNER, lo=0, integer=True)
        self.config = MTCNNConfig(min_face_size, float(scale_factor), tuple(float(t) for t in thresholds), max_side)
        self.threads = threads
        self._nets: tuple | None = None

    def load(self) -> "MTCNNDetector":
        """Create the onnxruntime sessions (done lazily by :meth:`detect`)."""
        if self._nets is None:
            root = resources.files("agescan.detect") / "weights"
            self._nets = tuple(onnx_session((root / f"mtcnn_{n}.onnx").read_bytes(), self.threads)
                               for n in ("pnet", "rnet", "onet"))
        return self

    def detect(self, image: np.ndarray) -> Detections:
        """Find faces in an RGB uint8 image; returns a tuple sorted by score (empty if none)."""
        self.load()
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            from agescan.errors import InputError
            raise InputError(f"The 'image' parameter of {_OWNER}.detect must be an HxWx3 uint8 RGB array. "
                             f"Got shape {image.shape} dtype {image.dtype}; use agescan.read_image first.")
        h, w = image.shape[:2]
        resize = 1.0
        if self.config.max_side and max(h, w) > self.config.max_side:
            resize = self.config.max_side / max(h, w)
            image = cv2.resize(image, (max(1, round(w * resize)), max(1, round(h * resize))),
                               interpolation=cv2.INTER_AREA)
        boxes = self._stage1(image, self.config.min_face_size * resize)
        if len(boxes):
            boxes = self._stage2(image, boxes)
        if len(boxes) == 0:
            return ()
        boxes, landmarks, scores = self._stage3(image, boxes)
        boxes /= resize
        landmarks /= resize
        out = []
        for b, lm, s in zip(boxes, landmarks, scores):
            x1, y1 = max(0.0, float(b[0])), max(0.0, float(b[1]))
            x2, y2 = min(float(w), float(b[2])), min(float(h), float(b[3]))
            if x2 - x1 < 2 or y2 - y1 < 2:
                continue
            out.append(Detection(BBox(x1, y1, x2, y2), Landmarks5.from_array(lm), float(s)))
        return tuple(out)

    def info(self) -> dict:
        """What ``agescan models`` shows about this detector (MTCNN's weights carry no card of their own)."""
        return {"name": self.name, "architecture": "MTCNN (Zhang et al. 2016): P-, R- and O-Net cascade over an "
                "image pyramid; box + 5 landmarks", "licence": "MIT (weights of the mtcnn 1.0.0 wheel, converted by "
                "tools/convert_mtcnn.py)", "training_data": "WIDER FACE and CelebA, by the MTCNN authors",
                "score_threshold": list(self.config.thresholds), "min_face_size": self.config.min_face_size}

    def detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        """:meth:`detect` for each image, in order (the cascade's stages depend on each image's own candidates)."""
        return [self.detect(img) for img in images]

    # -- cascade stages ----------------------------------------------------------------------
    def _stage1(self, image: np.ndarray, min_face: float) -> np.ndarray:
        pnet = self._nets[0]
        h, w = image.shape[:2]
        m = 12.0 / max(min_face, 12.0)
        scales = []
        side = min(h, w) * m
        s = m
        while side >= 12:
            scales.append(s)
            s *= self.config.scale_factor
            side *= self.config.scale_factor
        all_boxes, all_scores = [], []
        t1 = self.config.thresholds[0]
        for s in scales:
            hs, ws = int(math.ceil(h * s)), int(math.ceil(w * s))
            img = _normalise(cv2.resize(image, (ws, hs), interpolation=cv2.INTER_AREA))
            reg, prob = pnet.run(None, {"input": np.ascontiguousarray(img.transpose(2, 0, 1)[None])})
            score = prob[0, 1]
            ys, xs = np.nonzero(score > t1)
            if ys.size == 0:
                continue
            r = reg[0][:, ys, xs].T  # (n, 4): dx1, dy1, dx2, dy2 in units of the 12-px cell
            x1 = xs * 2.0 + r[:, 0] * 12.0
            y1 = ys * 2.0 + r[:, 1] * 12.0
            x2 = xs * 2.0 + 12.0 + r[:, 2] * 12.0
            y2 = ys * 2.0 + 12.0 + r[:, 3] * 12.0
            b = np.stack([x1, y1, x2, y2], axis=1) / s
            sc = score[ys, xs]
            keep = nms(b, sc, 0.5, offset=1.0)
            all_boxes.append(b[keep])
            all_scores.append(sc[keep])
        if not all_boxes:
            return np.empty((0, 4), dtype=np.float32)
        b = np.concatenate(all_boxes)
        sc = np.concatenate(all_scores)
        keep = nms(b, sc, 0.7, offset=1.0)
        return _square(b[keep])

    def _stage2(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        reg, prob = self._nets[1].run(None, {"input": _patches(image, boxes, 24)})
        sc = prob[:, 1]
        keep = sc > self.config.thresholds[1]
        boxes, reg, sc = boxes[keep], reg[keep], sc[keep]
        if len(boxes) == 0:
            return boxes
        size = np.stack([boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1] * 2, axis=1)
        boxes = boxes + reg * size
        keep = nms(boxes, sc, 0.7, offset=1.0)
        return _square(boxes[keep])

    def _stage3(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        reg, lm, prob = self._nets[2].run(None, {"input": _patches(image, boxes, 48)})
        sc = prob[:, 1]
        bw = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        bh = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        lx = lm[:, 0:5] * bw + boxes[:, 0:1] - 1
        ly = lm[:, 5:10] * bh + boxes[:, 1:2] - 1
        landmarks = np.stack([lx, ly], axis=2)  # (n, 5, 2)
        boxes = boxes + reg * np.concatenate([bw, bh, bw, bh], axis=1)
        keep = sc > self.config.thresholds[2]
        boxes, landmarks, sc = boxes[keep], landmarks[keep], sc[keep]
        keep = nms(boxes, sc, 0.7, method="min", offset=1.0)
        return boxes[keep].astype(np.float64), landmarks[keep].astype(np.float64), sc[keep]


@detectors.register("mtcnn")
def _mtcnn(**kwargs) -> MTCNNDetector:
    """MTCNN (Zhang et al. 2016), weights MIT via the mtcnn 1.0.0 wheel; boxes + 5 landmarks."""
    return MTCNNDetector(**kwargs)


#: Score thresholds of ``mtcnn-occluded``, chosen on val chips with the paper's eye band (docs/benchmarks.md).
OCCLUDED_THRESHOLDS = (0.6, 0.5, 0.5)


@detectors.register("mtcnn-occluded")
def _mtcnn_occluded(**kwargs) -> MTCNNDetector:
    """MTCNN with lenient R- and O-Net thresholds for faces whose eyes are hidden (eye bands, mosaics): on
    val chips with the paper's band it finds 50% of the faces instead of 35%, at 0.27 false detections per
    synthetic scene instead of 0.03 (docs/benchmarks.md); for redacted material."""
    kwargs.setdefault("thresholds", OCCLUDED_THRESHOLDS)
    det = MTCNNDetector(**kwargs)
    det.name = "mtcnn-occluded"
    return det
