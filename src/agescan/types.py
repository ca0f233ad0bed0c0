"""Typed, immutable results shared by every surface (API, CLI, store, service).

All containers are frozen dataclasses, validated on construction. Collections are tuples and are
empty -- never ``None`` -- when there is nothing to report. Results never hold full images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from agescan.errors import InputError

from agescan import decisions as _decisions
#: Re-exported from :mod:`agescan.decisions`, which owns them.
from agescan.decisions import AGE_GROUPS, age_group  # noqa: F401


@dataclass(frozen=True, slots=True)
class BBox:
    """Axis-aligned box in pixel coordinates, (x1, y1) top-left and (x2, y2) bottom-right."""

    x1: float
    y1: float
    x2: float
    y2: float

    def __post_init__(self) -> None:
        vals = (self.x1, self.y1, self.x2, self.y2)
        if not all(math.isfinite(v) for v in vals):
            raise InputError(f"BBox coordinates must be finite numbers. Got {vals}.")
        if self.x2 < self.x1 or self.y2 < self.y1:
            raise InputError(f"BBox must satisfy x1 <= x2 and y1 <= y2. Got {vals}.")

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def area(self) -> float:
        return self.width * self.height

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)

    def iou(self, other: "BBox") -> float:
        """Intersection over union with another box (0 when disjoint)."""
        ix = max(0.0, min(self.x2, other.x2) - max(self.x1, other.x1))
        iy = max(0.0, min(self.y2, other.y2) - max(self.y1, other.y1))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0


#: How a face is framed for the age model: the five-point warp, or from its box (agescan.align.pose).
FRAMINGS = ("aligned", "box")

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass(frozen=True, slots=True)
class Landmarks5:
    """Five facial landmarks in pixel coordinates, in :data:`LANDMARK_NAMES` order.

    "left" and "right" are as seen in the image: ``left_eye`` has the smaller x on an upright,
    frontal face.
    """

    points: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if len(self.points) != 5 or any(len(p) != 2 for p in self.points):
            raise InputError(f"Landmarks5 needs exactly 5 (x, y) points. Got {self.points!r}.")
        if not all(math.isfinite(v) for p in self.points for v in p):
            raise InputError(f"Landmarks5 coordinates must be finite. Got {self.points!r}.")

    @classmethod
    def from_array(cls, arr: np.ndarray) -> "Landmarks5":
        a = np.asarray(arr, dtype=np.float64).reshape(5, 2)
        return cls(tuple((float(x), float(y)) for x, y in a))

    def as_array(self) -> np.ndarray:
        """A new (5, 2) float32 array."""
        return np.array(self.points, dtype=np.float32)

    def __getattr__(self, name: str) -> tuple[float, float]:
        if name in LANDMARK_NAMES:
            return self.points[LANDMARK_NAMES.index(name)]
        raise AttributeError(name)


@dataclass(frozen=True, slots=True)
class Detection:
    """One face found by a detector."""

    box: BBox
    landmarks: Landmarks5
    score: float


@dataclass(frozen=True, slots=True)
class FaceCrop:
    """An aligned face crop and the 2x3 affine that maps original-image pixels into it."""

    image: np.ndarray  # H x W x 3 uint8 RGB, owned by this object
    affine: np.ndarray  # 2 x 3 float64, original -> crop

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise InputError(f"FaceCrop.image must be HxWx3 uint8. Got {self.image.shape} {self.image.dtype}.")
        if self.affine.shape != (2, 3):
            raise InputError(f"FaceCrop.affine must be 2x3. Got {self.affine.shape}.")


@dataclass(frozen=True, slots=True)
class AlignedFace:
    """A face as the age model sees it: its detection and the crop, whose ``affine`` maps original-image pixels into
    the crop (its inverse draws anything computed on the crop back onto the photo), with the pose it was estimated at
    and the framing used (``"aligned"``: the five-point warp; ``"box"``: framed from the box, for profiles)."""

    detection: Detection
    crop: FaceCrop
    yaw: float = 0.0
    roll: float = 0.0
    framing: str = "aligned"


@dataclass(frozen=True, slots=True)
class AgeDistribution:
    """A discrete probability distribution over whole years of age.

    ``probs[k]`` is the probability that the person is ``ages[0] + k`` years old (i.e. in
    ``[age, age + 1)``). Probabilities are non-negative and sum to 1.
    """

    min_age: int
    probs: tuple[float, ...]

    def __post_init__(self) -> None:
        p = np.asarray(self.probs, dtype=np.float64)
        if p.ndim != 1 or p.size == 0:
            raise InputError("AgeDistribution.probs must be a non-empty 1-D sequence.")
        if not np.all(np.isfinite(p)) or np.any(p < -1e-9) or abs(p.sum() - 1.0) > 1e-3:
            raise InputError(f"AgeDistribution.probs must be non-negative and sum to 1. Got sum {p.sum():.6f}.")

    @classmethod
    def from_array(cls, probs: np.ndarray, min_age: int = 0) -> "AgeDistribution":
        p = np.clip(np.asarray(probs, dtype=np.float64), 0.0, None)
        p = p / p.sum()
        return cls(min_age=int(min_age), probs=tuple(float(x) for x in p))

    @property
    def ages(self) -> np.ndarray:
        return np.arange(self.min_age, self.min_age + len(self.probs), dtype=np.float64)

    def as_array(self) -> np.ndarray:
        return np.asarray(self.probs, dtype=np.float64)

    def mean(self) -> float:
        """Expected age in years, DEX's ``sum_k k * p_k`` (:func:`agescan.decisions.point_age`)."""
        return float(_decisions.point_age(self.as_array(), self.min_age)[0])

    def quantile(self, q: float) -> float:
        """The q-quantile in years, mass spread uniformly over ``[k - 0.5, k + 0.5]`` for bin ``k``
        (:func:`agescan.decisions.quantile`)."""
        if not 0.0 <= q <= 1.0:
            raise InputError(f"The 'q' parameter of AgeDistribution.quantile must be in [0, 1]. Got {q!r}.")
        return float(_decisions.quantile(self.as_array(), q, self.min_age)[0])

    def interval(self, level: float = 0.9) -> tuple[float, float]:
        """Central interval holding ``level`` of the probability mass, in years
        (:func:`agescan.decisions.central_interval`; a face's reported interval may be conformal, see
        ``FaceResult.interval``)."""
        if not 0.0 < level < 1.0:
            raise InputError(f"The 'level' parameter of AgeDistribution.interval must be in (0, 1). Got {level!r}.")
        lo, hi = _decisions.central_interval(self.as_array(), level, self.min_age)
        return (float(lo[0]), float(hi[0]))

    def p_below(self, age: float) -> float:
        """P(true age < ``age``) counting whole years: P(age < 18) sums the bins 0..17."""
        return float(_decisions.p_below(self.as_array(), age, self.min_age)[0])


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a result came from: enough to reproduce and audit it."""

    source: str  # path, URL-free identifier, or "<array>"/"<bytes>"
    sha256: str  # of the file bytes ("" for in-memory arrays that were never bytes)
    frame_index: int = -1  # -1 for still images
    timestamp: float = -1.0  # seconds into a video; -1 for still images
    # PDQ hash of the decoded pixels and of their mirror image (64 hex digits each; "" if not decoded) and its
    # quality 0-100: near-duplicate grouping, agescan.io.phash
    pdq: str = ""
    pdq_mirror: str = ""
    pdq_quality: int = 0
    agescan_version: str = ""
    model_id: str = ""
    model_sha256: str = ""
    detector_id: str = ""
    # the triage rule that set each face's ``flagged`` (agescan.triage)
    flag_threshold: float = 0.0
    challenge_age: float = 0.0


@dataclass(frozen=True, slots=True)
class FaceResult:
    """Everything agescan says about one face, decided by :mod:`agescan.decisions`.

    ``age`` is the point age, read from the model's own distribution by the card's rule (its median, or its mean
    for a card without a calibration: :func:`agescan.decisions.point_estimate`); ``distribution`` is the calibrated
    distribution (the model card's temperature applied), from which ``p_minor`` = P(age < ``minor_age``) and any
    other P(age < t) (``distribution.p_below(t)``) are read; ``interval`` is the reported interval at
    ``interval_level``: split-conformal per predicted age band when the card carries conformal data, else the
    central interval holding that mass of ``distribution``.
    """

    box: BBox
    landmarks: Landmarks5
    detector_score: float
    age: float
    distribution: AgeDistribution
    interval: tuple[float, float]
    interval_level: float
    p_minor: float  # calibrated P(age < minor_age)
    minor_age: int
    age_group: str
    model_id: str
    #: flagged for review by the triage rule (agescan.triage.is_flagged), decided once when the face is estimated
    flagged: bool = False
    #: head pose estimated from the landmarks, in degrees (agescan.align.pose.estimate_pose): yaw positive when the
    #: nose points to the image's right, roll positive clockwise
    yaw: float = 0.0
    roll: float = 0.0
    #: how the face was framed for the model (:data:`FRAMINGS`): "aligned" (five-point warp onto the frontal
    #: template) or "box" (a turned face, centred on its box; agescan.align.pose)
    framing: str = "aligned"

    def __post_init__(self) -> None:
        if self.framing not in FRAMINGS:
            raise InputError(f"FaceResult.framing must be one of {FRAMINGS}. Got {self.framing!r}.")
        if not (math.isfinite(self.yaw) and math.isfinite(self.roll)):
            raise InputError(f"FaceResult yaw and roll must be finite degrees. Got {self.yaw!r}, {self.roll!r}.")

    @property
    def profile(self) -> bool:
        """True for a turned face that was framed from its box (what the report labels "profile")."""
        return self.framing == "box"


@dataclass(frozen=True, slots=True)
class ImageResult:
    """The result for one image: its faces (possibly none) and provenance.

    ``error`` is an empty string on success. A failed item (e.g. a corrupt file in a scan) has a
    non-empty ``error`` naming the reason, and no faces.
    """

    provenance: Provenance
    width: int
    height: int
    faces: tuple[FaceResult, ...] = field(default_factory=tuple)
    error: str = ""
    error_type: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.faces, tuple):
            raise InputError(f"ImageResult.faces must be a tuple. Got {type(self.faces).__name__}.")

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def source(self) -> str:
        return self.provenance.source
