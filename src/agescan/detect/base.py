"""The detector protocol, the detector registry, and a shared onnxruntime session factory."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from agescan._registry import Registry
from agescan.types import Detection

#: What every detector returns: detections sorted by score, an empty tuple when there is no face.
Detections = tuple[Detection, ...]


@runtime_checkable
class FaceDetector(Protocol):
    """Anything with ``detect(rgb_uint8_image) -> tuple[Detection, ...]``."""

    name: str

    def detect(self, image: np.ndarray) -> Detections: ...


detectors: Registry[FaceDetector] = Registry("detector")


def onnx_session(model: bytes | str, threads: int = 0):
    """An onnxruntime CPU session with quiet logging and an optional intra-op thread count."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = int(threads)
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
