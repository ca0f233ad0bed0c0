"""agescan: age estimation from face images, with calibrated age distributions.

Example:
    >>> from agescan import AgeEstimator
    >>> result = AgeEstimator().predict("photo.jpg")  # doctest: +SKIP
    >>> for face in result.faces:                     # doctest: +SKIP
    ...     print(face.box, round(face.age), face.interval, face.p_minor)
"""

__version__ = "0.1.0"

import os as _os  # noqa: E402
import sys as _sys  # noqa: E402

# onnxruntime (1.32 on Linux) records telemetry events in ~/.cache/Microsoft/DeveloperTools/.onnxruntime with a
# persistent device id and tries to send them to Microsoft; an offline, forensic tool must not. The switch is read
# when onnxruntime is imported, so it is set here, before any agescan module imports it (a user's explicit value
# is kept). agescan.detect.base.onnx_session warns when onnxruntime was imported earlier without it.
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
ORT_TELEMETRY_OFF = _os.environ["ORT_DISABLE_TELEMETRY"] == "1" and "onnxruntime" not in _sys.modules

from agescan.errors import (AgescanError, ConfigError, DecodeError, InputError, ModelIntegrityError,  # noqa: E402
                            ModelNotFoundError, TooManyPixelsError)
from agescan.io import read_image  # noqa: E402
from agescan.models import DEFAULT_MODEL, create_model, list_models  # noqa: E402
from agescan.estimate import AgeEstimator  # noqa: E402
from agescan.types import AgeDistribution, BBox, FaceResult, ImageResult, Landmarks5  # noqa: E402

__all__ = ["AgeEstimator", "create_model", "list_models", "read_image", "__version__", "DEFAULT_MODEL",
           "AgescanError", "ConfigError", "DecodeError", "InputError", "ModelIntegrityError", "ModelNotFoundError",
           "TooManyPixelsError",
           "AgeDistribution", "BBox", "FaceResult", "ImageResult", "Landmarks5"]
