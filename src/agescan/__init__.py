"""agescan: age estimation from face images, with calibrated age distributions.

Example:
    >>> from agescan import AgeEstimator
    >>> result = AgeEstimator().predict("photo.jpg")  # doctest: +SKIP
    >>> for face in result.faces:                     # doctest: +SKIP
    ...     print(face.box, round(face.age), face.interval, face.p_minor)
"""

__version__ = "0.1.0"

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
