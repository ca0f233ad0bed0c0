"""Fast area-averaging downscale: the speed of OpenCV's exact-factor path for any target size.

``cv2.resize(..., INTER_AREA)`` is fast only for integer factors (0.3 ms to halve a 1280x960 photo, 4-8 ms to
reach 853x640 or 512x512 from it). :func:`downscale` halves the image with the fast path while it stays at least
twice the target, then area-averages the small remainder: the same box filter in effect, several times cheaper.
"""

from __future__ import annotations

import cv2
import numpy as np


def downscale(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """A new ``height`` x ``width`` area-averaged copy of ``image`` (any channels); upscales bilinearly.

    Example:
        >>> downscale(np.zeros((960, 1280, 3), np.uint8), 853, 640).shape
        (640, 853, 3)
    """
    h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image.copy()
    if width >= w and height >= h:
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    while w >= 2 * width and h >= 2 * height:
        image = cv2.resize(image[: h - h % 2, : w - w % 2], (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        h, w = image.shape[:2]
    if (w, h) == (width, height):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
