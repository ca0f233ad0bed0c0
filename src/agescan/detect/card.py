"""DetectorCard: what a set of face-detector weights needs to be used correctly, travelling inside the ONNX file.

Like the age models' :class:`~agescan.models.card.ModelCard`, the card is embedded in the exported ONNX metadata
(key ``agescan.detector_card``) and read back at load time: input colour order and scale, the output layout,
the score threshold and the range of face sizes (in pixels of the network's input) the weights were measured to
find are declared, never guessed. The detector chooses its input scale from that range and the caller's
``min_face_size``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

from agescan.errors import ConfigError
from agescan.types import LANDMARK_NAMES

DETECTOR_CARD_KEY = "agescan.detector_card"
DETECTOR_CARD_VERSION = 1


@dataclass(frozen=True)
class DetectorCard:
    """Facts about one set of face-detector weights.

    Attributes:
        id: registry name, e.g. ``"yunet-s.wider"``.
        architecture: network family and size.
        output_format: how the outputs are decoded; ``"yunet"``: per stride, class and objectness probabilities,
            box (dx, dy, log w, log h) and 10 landmark offsets in stride units from each grid point.
        strides: the feature strides of the outputs, in order.
        colour_order: ``"RGB"`` or ``"BGR"`` channel order of the input; scale: multiplier of uint8 pixels.
        landmark_order: the network's landmarks in :data:`agescan.types.LANDMARK_NAMES` terms (image left/right).
        score_threshold: a detection is kept when its score (sqrt(class * objectness)) reaches this.
        size_thresholds: optional ((max_height_px, threshold), ...) in ascending height: a detection whose box is
            less than ``max_height_px`` tall at the network input needs that threshold instead (small faces score
            lower than large ones, and so do the false detections of each size; calibrated on val).
        nms_iou: overlap above which the lower-scored of two detections is dropped.
        nms_containment: after that, a detection is also dropped when this share of the smaller of its box and a
            higher-scored detection's box lies inside the other (intersection over the smaller area, MTCNN's last
            NMS). It removes a second box drawn around, or inside, a face already found: agescan's fine-tuned
            YuNet adds a larger box around a face in about 2% of in-the-wild photos (fairface270), which
            evaluation could take as the labelled face and a scan listed as an extra face with another age.
            Two real faces overlap less (at most 0.41 of the smaller box on fairface270); 1.0 drops only boxes
            wholly inside another.
        min_face_px, max_face_px: face heights (box side, pixels of the network input) between which the
            weights were measured to find faces; the detector scales images so that ``min_face_size`` maps to
            ``min_face_px`` and adds a coarser pass for faces above ``max_face_px``.
        licence, training_data, metrics, training, notes: provenance, as on model cards.
    """

    id: str
    architecture: str
    output_format: str = "yunet"
    strides: tuple[int, ...] = (8, 16, 32)
    colour_order: str = "BGR"
    scale: float = 1.0
    input_name: str = "input"
    landmark_order: tuple[str, ...] = LANDMARK_NAMES
    score_threshold: float = 0.6
    size_thresholds: tuple[tuple[float, float], ...] = ()
    nms_iou: float = 0.45
    nms_containment: float = 0.7
    min_face_px: float = 16.0
    max_face_px: float = 360.0
    licence: str = ""
    training_data: str = ""
    metrics: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    notes: str = ""
    card_version: int = DETECTOR_CARD_VERSION

    def __post_init__(self) -> None:
        where = f"Detector card {self.id!r}"
        if self.output_format != "yunet":
            raise ConfigError(f"{where}: output_format must be 'yunet'. Got {self.output_format!r}; "
                              "upgrade agescan to read it.")
        if self.colour_order not in ("RGB", "BGR"):
            raise ConfigError(f"{where}: colour_order must be 'RGB' or 'BGR'. Got {self.colour_order!r}.")
        if sorted(self.landmark_order) != sorted(LANDMARK_NAMES):
            raise ConfigError(f"{where}: landmark_order must name each of {LANDMARK_NAMES} once. "
                              f"Got {self.landmark_order!r}.")
        if not 0.0 < self.score_threshold < 1.0 or not 0.0 < self.nms_iou < 1.0:
            raise ConfigError(f"{where}: score_threshold and nms_iou must lie in (0, 1).")
        if not 0.0 < self.nms_containment <= 1.0:
            raise ConfigError(f"{where}: nms_containment must lie in (0, 1]. Got {self.nms_containment!r}.")
        heights = [h for h, _ in self.size_thresholds]
        if heights != sorted(set(heights)) or any(not 0.0 < t < 1.0 for _, t in self.size_thresholds):
            raise ConfigError(f"{where}: size_thresholds must be (height, threshold) pairs in ascending height with "
                              f"thresholds in (0, 1). Got {self.size_thresholds!r}.")
        if not 0 < self.min_face_px < self.max_face_px:
            raise ConfigError(f"{where}: need 0 < min_face_px < max_face_px. "
                              f"Got {self.min_face_px}, {self.max_face_px}.")
        if not self.strides or any(s <= 0 for s in self.strides):
            raise ConfigError(f"{where}: strides must be positive. Got {self.strides!r}.")

    def threshold_for(self, heights):
        """The score threshold of detections ``heights`` px tall at the network input (numpy array)."""
        import numpy as np

        heights = np.asarray(heights, dtype=np.float64)
        out = np.full(heights.shape, self.score_threshold)
        for max_height, t in reversed(self.size_thresholds):
            out[heights < max_height] = t
        return out

    @property
    def alignment(self) -> int:
        """Input height and width must be multiples of this (the coarsest stride)."""
        return max(self.strides)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["strides"], d["landmark_order"] = list(self.strides), list(self.landmark_order)
        d["size_thresholds"] = [list(p) for p in self.size_thresholds]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "DetectorCard":
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"Detector card has unknown fields {sorted(unknown)}; upgrade agescan to read it.")
        d = dict(d)
        for key in ("strides", "landmark_order"):
            if key in d:
                d[key] = tuple(d[key])
        if "size_thresholds" in d:
            d["size_thresholds"] = tuple((float(h), float(t)) for h, t in d["size_thresholds"])
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> "DetectorCard":
        return cls.from_dict(json.loads(text))
