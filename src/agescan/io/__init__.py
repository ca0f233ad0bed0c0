"""Inputs: any image source -> RGB uint8, and folders -> one lazy, ordered iterator of items."""

from agescan.io.image import DEFAULT_MAX_PIXELS, LoadedImage, load_image, read_image
from agescan.io.sources import IMAGE_EXTENSIONS, SourceItem, iter_sources

__all__ = ["DEFAULT_MAX_PIXELS", "IMAGE_EXTENSIONS", "LoadedImage", "SourceItem", "iter_sources", "load_image",
           "read_image"]
