"""Face detection: registered backends returning boxes, five landmarks and scores."""

from agescan.detect.base import Detections, FaceDetector, detectors
from agescan.detect import mtcnn as _mtcnn  # noqa: F401  (registers "mtcnn")
from agescan.detect.mtcnn import MTCNNDetector


def create_detector(name: str = "mtcnn", **kwargs) -> FaceDetector:
    """Create a registered face detector by name (see :func:`list_detectors`)."""
    return detectors.create(name, **kwargs)


def list_detectors() -> list[str]:
    return detectors.names()


__all__ = ["Detections", "FaceDetector", "MTCNNDetector", "create_detector", "list_detectors", "detectors"]
