"""The detector protocol, the detector registry, and a shared onnxruntime session factory."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from agescan._registry import Registry
from agescan.errors import ConfigError
from agescan.types import Detection

#: What every detector returns: detections sorted by score, an empty tuple when there is no face.
Detections = tuple[Detection, ...]


@runtime_checkable
class FaceDetector(Protocol):
    """Anything with ``detect(rgb_uint8_image) -> tuple[Detection, ...]``, ``detect_batch(images)`` (the same for
    several images, in order; a backend may share network calls between them) and ``info()`` (a dict: name,
    architecture, licence, training data, threshold, ...)."""

    name: str

    def detect(self, image: np.ndarray) -> Detections: ...

    def detect_batch(self, images: list[np.ndarray]) -> list[Detections]: ...

    def info(self) -> dict: ...


detectors: Registry[FaceDetector] = Registry("detector")


def onnx_session(model: bytes | str, threads: int = 0):
    """An onnxruntime CPU session with quiet logging and an optional intra-op thread count."""
    import onnxruntime as ort

    _warn_telemetry()

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = int(threads)
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


def card_from_metadata(sess, key: str, parse, source: str, what: str, missing: str, republish: str):
    """The card an agescan ONNX file carries in its metadata under ``key``, parsed by ``parse`` (a ``from_json``);
    a ConfigError naming ``source`` when it is absent (``missing`` says what to do) or does not parse or holds a
    field of the wrong type or value (``republish`` says how to write it again). ``what``: "model", "detector"."""
    meta = sess.get_modelmeta().custom_metadata_map
    if key not in meta:
        raise ConfigError(f"{source}: the ONNX file carries no agescan {what} card (metadata key {key!r}); {missing}")
    try:
        return parse(meta[key])
    except (ValueError, TypeError, KeyError, AttributeError) as exc:  # JSON, ConfigError and InputError included
        reason = " ".join(str(exc).split()).rstrip(".")
        raise ConfigError(f"{source}: its {what} card (metadata key {key!r}) is not valid: {reason}. Fix the card, "
                          f"or {republish}.") from None


_TELEMETRY_WARNED = False


def _warn_telemetry() -> None:
    """Warn once when onnxruntime's telemetry is on in this process: it was imported before agescan could switch
    it off (``ORT_DISABLE_TELEMETRY``, read at onnxruntime's import; see :mod:`agescan`), or the user set it on."""
    global _TELEMETRY_WARNED
    import agescan

    if agescan.ORT_TELEMETRY_OFF or _TELEMETRY_WARNED:
        return
    _TELEMETRY_WARNED = True
    import warnings

    warnings.warn("onnxruntime's telemetry is on in this process (onnxruntime was imported before agescan, or "
                  "ORT_DISABLE_TELEMETRY is not 1): it records events under ~/.cache/Microsoft/DeveloperTools and "
                  "tries to send them to Microsoft. Set ORT_DISABLE_TELEMETRY=1 in the environment, or import agescan "
                  "before onnxruntime.", RuntimeWarning, stacklevel=3)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, method: str = "union",
        offset: float = 0.0) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, highest score first.

    ``method`` "union" compares intersection over union, "min" over the smaller box; ``offset`` 1 counts
    box sides in whole pixels (x2 - x1 + 1, MTCNN's convention), 0 as continuous coordinates.
    """
    if len(boxes) == 0:
        return np.empty(0, dtype=np.int64)
    x1, y1, x2, y2 = boxes.T
    area = (x2 - x1 + offset) * (y2 - y1 + offset)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + offset)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + offset)
        inter = w * h
        denom = np.minimum(area[i], area[rest]) if method == "min" else area[i] + area[rest] - inter
        order = rest[inter / np.maximum(denom, 1e-12) <= threshold]
    return np.asarray(keep, dtype=np.int64)
