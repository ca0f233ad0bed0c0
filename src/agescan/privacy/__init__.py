"""Privacy transforms: pure functions that return new arrays and never modify their input."""

from agescan.privacy.eyeband import eye_band, eye_band_polygon

__all__ = ["eye_band", "eye_band_polygon"]
