"""YuNet-family single-shot face detectors on onnxruntime, configured by the card inside their ONNX file.

One network pass per scale finds boxes, five landmarks and a score for every face; the grid decoding is the
authors' (libfacedetection): a grid point at column c, row r of stride s predicts the box centre
``((c + dx) s, (r + dy) s)``, size ``(exp(lw) s, exp(lh) s)`` and landmarks ``((c + kx) s, (r + ky) s)``; the score
is sqrt(class * objectness). Which weights, their threshold and the face sizes they find come from the card
(:class:`~agescan.detect.card.DetectorCard`).

Scales: the image is resized so that a face of ``min_face_size`` pixels reaches the card's ``min_face_px`` at the
network input (downscaling large photos when small faces need not be found is most of the speed). When faces
larger than the card's ``max_face_px`` could be present at that scale, a coarser pass is added (cheap: its input
is small), and the two are merged by non-maximum suppression.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import cv2
import numpy as np

from agescan._validation import check_number
from agescan.detect.base import Detections, card_from_metadata, nms, onnx_session
from agescan.detect.card import DETECTOR_CARD_KEY, DetectorCard
from agescan.errors import ConfigError, InputError, ModelIntegrityError
from agescan.io.resize import downscale
from agescan.types import LANDMARK_NAMES, BBox, Detection, Landmarks5

_OWNER = "YuNetDetector"
#: Largest network input, in pixels (about 4K UHD): a huge photo with a small min_face_size is not upscaled past it.
MAX_INPUT_PIXELS = 3840 * 2160


def read_detector_card(sess, source: str) -> DetectorCard:
    return card_from_metadata(sess, DETECTOR_CARD_KEY, DetectorCard.from_json, source, "detector",
                              "convert or export it with agescan's tools so its input and thresholds are declared, "
                              "not guessed.", "publish the detector again (`agescan train publish-detector`)")


class YuNetDetector:
    """A YuNet-family detector: boxes, five landmarks and a score per face in one pass per scale.

    Args:
        path: the .onnx file (with an embedded detector card).
        sha256: expected sha256 of the file; a mismatch raises :class:`ModelIntegrityError`.
        min_face_size: smallest face side to look for, in pixels of the input image (>= 12).
        score_threshold: overrides the card's threshold (None: the card's).
        threads: onnxruntime intra-op threads (0 = onnxruntime's default).
        detector_id: the registered name; the card must carry the same id.

    Example:
        >>> from agescan.detect import create_detector
        >>> det = create_detector("yunet-s.wider")  # doctest: +SKIP
        >>> faces = det.detect(image)                # doctest: +SKIP
    """

    def __init__(self, path: str | Path, sha256: str = "", *, min_face_size: int = 24,
                 score_threshold: float | None = None, threads: int = 0, detector_id: str = ""):
        check_number(min_face_size, "min_face_size", _OWNER, lo=12, integer=True)
        if score_threshold is not None:
            check_number(score_threshold, "score_threshold", _OWNER, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
        check_number(threads, "threads", _OWNER, lo=0, integer=True)
        self.path = Path(path)
        self.expected_sha256 = sha256
        self.min_face_size = min_face_size
        self._score_threshold = score_threshold
        self.threads = threads
        self.name = detector_id  # the card's id once loaded, when not registered under a name
        self._sess = None
        self._card: DetectorCard | None = None
        self.sha256 = ""

    def load(self) -> "YuNetDetector":
        """Read and verify the weights, create the session (done lazily by :meth:`detect`)."""
        if self._sess is not None:
            return self
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot read the detector file ({exc.strerror or exc}).") from None
        digest = hashlib.sha256(data).hexdigest()
        if self.expected_sha256 and digest != self.expected_sha256:
            raise ModelIntegrityError(f"{self.path}: sha256 {digest} does not match the registered "
                                      f"{self.expected_sha256}. The file is corrupt or was replaced; reinstall agescan.")
        if not data:
            raise ConfigError(f"{self.path}: empty file (0 bytes), not an ONNX detector.")
        try:
            sess = onnx_session(data, self.threads)
        except Exception as exc:  # onnxruntime raises its own exception types (InvalidProtobuf, InvalidArgument, ...)
            reason = " ".join(str(exc).split()).rstrip(".")
            raise ConfigError(f"{self.path}: not a loadable ONNX detector (onnxruntime: {reason}). Give a detector "
                              "published by agescan or a registered name (`agescan models` lists them).") from None
        card = read_detector_card(sess, str(self.path))
        if self.name and card.id != self.name:
            raise ConfigError(f"{self.path}: card id {card.id!r} differs from the registered id {self.name!r}.")
        self.name = card.id
        self._sess, self._card, self.sha256 = sess, card, digest
        self._order = [card.landmark_order.index(n) for n in LANDMARK_NAMES]
        self._outputs = [o.name for o in sess.get_outputs()]
        return self

    @property
    def card(self) -> DetectorCard:
        return self.load()._card

    @property
    def score_threshold(self) -> float:
        """The threshold of large faces (or the caller's, for every size); see :meth:`DetectorCard.threshold_for`."""
        return self._score_threshold if self._score_threshold is not None else self.card.score_threshold

    def _thresholds(self, heights: np.ndarray) -> np.ndarray:
        if self._score_threshold is not None:
            return np.full(heights.shape, self._score_threshold)
        return self.card.threshold_for(heights)

    def info(self) -> dict:
        """What ``agescan models`` shows about this detector: its card, the threshold in use and the file's sha256."""
        card = self.card
        return {"name": self.name, **card.to_dict(), "score_threshold": self.score_threshold,
                "min_face_size": self.min_face_size, "sha256": self.sha256}

    # -- scales ----------------------------------------------------------------------------
    def scales(self, height: int, width: int) -> list[float]:
        """Resize factors of the passes over an image of this size, finest first."""
        card = self.card
        s = card.min_face_px / self.min_face_size
        s = min(s, math.sqrt(MAX_INPUT_PIXELS / max(height * width, 1)))
        out = [s]
        # Faces cannot be taller than the image; add coarser passes while the largest possible face could
        # exceed what the weights find at the last scale.
        while min(height, width) * out[-1] > card.max_face_px:
            out.append(out[-1] * card.min_face_px / card.max_face_px * 2.0)
        return out

    # -- detection -------------------------------------------------------------------------
    def detect(self, image: np.ndarray) -> Detections:
        """Find faces in an RGB uint8 image; returns a tuple sorted by score (empty if none)."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        """:meth:`detect` for several images; images of one size share each network call."""
        self.load()
        for img in images:
            if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                got = f"shape {img.shape} dtype {img.dtype}" if isinstance(img, np.ndarray) else type(img).__name__
                raise InputError(f"The 'image' parameter of {_OWNER}.detect must be an HxWx3 uint8 RGB array. "
                                 f"Got {got}; use agescan.read_image first.")
        found: list[list[np.ndarray]] = [[] for _ in images]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(img.shape[:2], []).append(i)
        for (h, w), idx in groups.items():
            for s in self.scales(h, w):
                for j, rows in zip(idx, self._run([images[i] for i in idx], s)):
                    found[j].append(rows)
        return [self._finish(np.concatenate(f) if f else np.zeros((0, 15), np.float32), *images[i].shape[:2])
                for i, f in enumerate(found)]

    def _run(self, images: list[np.ndarray], scale: float) -> list[np.ndarray]:
        """One network pass at ``scale`` over same-size images; rows (x1, y1, x2, y2, score, 10 landmark coords)
        in original-image pixels, above the score threshold."""
        card = self._card
        h, w = images[0].shape[:2]
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        a = card.alignment
        ph, pw = -(-nh // a) * a, -(-nw // a) * a
        x = np.zeros((len(images), 3, ph, pw), np.float32)
        for k, img in enumerate(images):
            small = img if (nh, nw) == (h, w) else downscale(img, nw, nh)
            if card.colour_order == "BGR":
                small = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)  # SIMD; 10x faster than a reversed view
            x[k, :, :nh, :nw] = small.transpose(2, 0, 1)
        if card.scale != 1.0:
            x *= np.float32(card.scale)
        outs = dict(zip(self._outputs, self._sess.run(None, {card.input_name: x})))
        sx, sy = w / nw, h / nh  # network-input pixels -> image pixels
        if self._score_threshold is not None:
            thr = self._score_threshold
        else:
            thr = min([card.score_threshold, *(t for _, t in card.size_thresholds)])
        result = []
        for k in range(len(images)):
            rows = []
            for stride in card.strides:
                cls, obj = outs[f"cls_{stride}"][k, :, 0], outs[f"obj_{stride}"][k, :, 0]
                score = np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1))
                keep = np.nonzero(score >= thr)[0]
                if keep.size == 0:
                    continue
                box = outs[f"bbox_{stride}"][k, keep]
                bh = np.exp(box[:, 3]) * stride
                ok = score[keep] >= self._thresholds(bh)  # the card's size-dependent threshold, in input pixels
                keep, box, bh = keep[ok], box[ok], bh[ok]
                if keep.size == 0:
                    continue
                cols = pw // stride
                gx, gy = (keep % cols).astype(np.float32), (keep // cols).astype(np.float32)
                cx, cy = (gx + box[:, 0]) * stride, (gy + box[:, 1]) * stride
                bw = np.exp(box[:, 2]) * stride
                kps = outs[f"kps_{stride}"][k, keep].reshape(-1, 5, 2)
                kx, ky = (kps[..., 0] + gx[:, None]) * stride, (kps[..., 1] + gy[:, None]) * stride
                r = np.empty((keep.size, 15), np.float32)
                r[:, 0], r[:, 2] = (cx - bw / 2) * sx, (cx + bw / 2) * sx
                r[:, 1], r[:, 3] = (cy - bh / 2) * sy, (cy + bh / 2) * sy
                r[:, 4] = score[keep]
                r[:, 5:15:2], r[:, 6:15:2] = kx * sx, ky * sy
                rows.append(r)
            result.append(np.concatenate(rows) if rows else np.zeros((0, 15), np.float32))
        return result

    def _finish(self, rows: np.ndarray, h: int, w: int) -> Detections:
        if len(rows) == 0:
            return ()
        boxes, scores = rows[:, :4].astype(np.float64), rows[:, 4].astype(np.float64)
        keep = nms(boxes, scores, self.card.nms_iou)
        # then a box mostly inside a higher-scored one, or around it (the card's nms_containment)
        keep = keep[nms(boxes[keep], scores[keep], self.card.nms_containment, method="min")]
        out = []
        for r in rows[keep]:
            x1, y1 = max(0.0, float(r[0])), max(0.0, float(r[1]))
            x2, y2 = min(float(w), float(r[2])), min(float(h), float(r[3]))
            if x2 - x1 < 2 or y2 - y1 < 2:
                continue
            lm = r[5:15].reshape(5, 2)[self._order]
            out.append(Detection(BBox(x1, y1, x2, y2), Landmarks5.from_array(lm), float(min(max(r[4], 0.0), 1.0))))
        return tuple(out)


def packaged(name: str, filename: str, sha256: str, doc: str) -> None:
    """Register a YuNet-family detector whose ONNX file (with its card) ships in ``agescan/detect/weights``."""
    from importlib import resources

    from agescan.detect.base import detectors

    def _factory(min_face_size: int = 24, score_threshold: float | None = None, threads: int = 0) -> YuNetDetector:
        path = Path(str(resources.files("agescan.detect") / "weights" / filename))
        return YuNetDetector(path, sha256, min_face_size=min_face_size, score_threshold=score_threshold,
                             threads=threads, detector_id=name)

    _factory.__doc__ = doc
    detectors.register(name)(_factory)
