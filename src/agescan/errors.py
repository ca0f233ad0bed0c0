"""Exceptions raised by agescan.

Every error is an :class:`AgescanError`; messages say what went wrong and what to do about it.
"""

from __future__ import annotations


class AgescanError(Exception):
    """Base class of every error agescan raises on purpose."""


class InputError(AgescanError, ValueError):
    """An argument or input has the wrong type, shape or value."""


class DecodeError(AgescanError):
    """An image could not be read or decoded (corrupt, truncated, empty, not an image, too large)."""


class TooManyPixelsError(DecodeError):
    """An image declares more pixels than the limit (a decompression bomb, or a photo larger than allowed)."""


class ConfigError(AgescanError, ValueError):
    """A configuration value is invalid or inconsistent."""


class ModelNotFoundError(AgescanError, KeyError):
    """A model, detector or privacy op name is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0]) if self.args else ""


class ModelIntegrityError(AgescanError):
    """Model weights do not match the sha256 recorded in their card."""
