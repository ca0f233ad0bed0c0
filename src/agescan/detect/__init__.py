"""Face detection: registered backends returning boxes, five landmarks and scores."""

import os

from agescan.detect.base import Detections, FaceDetector, detectors
from agescan.detect import mtcnn as _mtcnn  # noqa: F401  (registers "mtcnn")
from agescan.detect.mtcnn import MTCNNDetector
from agescan.detect import zoo as _zoo  # noqa: F401  (registers the packaged YuNet-family detectors)
from agescan.detect.yunet import YuNetDetector
from agescan.detect.cascade import CascadeDetector


#: The detector used when none is named (AgeEstimator, CLI, evaluation): agescan's fine-tuned YuNet (eye bands,
#: babies, small faces) with the authors' WIDER FACE YuNet adding the turned and in-the-wild faces it misses
#: (detect/cascade.py); each member's card holds its thresholds and the face sizes it finds. docs/benchmarks.md
#: ("Face detection") has the measurements behind the choice.
DEFAULT_DETECTOR = "yunet-s-ocl+wider"


def create_detector(name: str = DEFAULT_DETECTOR, **kwargs) -> FaceDetector:
    """Create a registered face detector by name (see :func:`list_detectors`), or a YuNet-family detector from an
    exported ``.onnx`` file carrying a detector card (``agescan train detector`` writes them), loaded at once so that a
    file that is not one is a ConfigError naming it here, not an error recorded against every image."""
    if name not in detectors and name.lower().endswith(".onnx") and os.path.isfile(name):
        return YuNetDetector(name, **kwargs).load()
    return detectors.create(name, **kwargs)


def list_detectors() -> list[str]:
    return detectors.names()


__all__ = ["DEFAULT_DETECTOR", "Detections", "FaceDetector", "MTCNNDetector", "YuNetDetector", "CascadeDetector", "create_detector", "list_detectors", "detectors"]
