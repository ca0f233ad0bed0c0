"""Video files -> sampled frames (OpenCV), each with its frame index, timestamp and the file's sha256.

Frames are taken every ``every_seconds`` of video time (by frame count at the container's frame rate;
25 fps is assumed when the container does not say) and, with ``scene_change`` > 0, also at every cut:
five times a second a 32x32 grey thumbnail is compared with the previous probe, and a frame whose mean
absolute difference exceeds ``scene_change`` (0..1 of the pixel range; 0.15 catches hard cuts and few
camera moves) is sampled too. Without scene detection only the sampled frames are converted (``grab``
skips the rest). A file OpenCV cannot open, or that yields no frame, raises :class:`DecodeError`.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from agescan.errors import DecodeError
from agescan.io.image import DEFAULT_MAX_PIXELS

VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".wmv", ".mpg", ".mpeg", ".3gp",
                              ".flv", ".ts"})
ASSUMED_FPS = 25.0


@dataclass(frozen=True)
class VideoFrame:
    """One sampled frame: RGB uint8 pixels and where they came from."""

    source: str
    frame_index: int
    timestamp: float  # seconds from the start
    image: np.ndarray
    sha256: str  # of the whole video file


def is_video(path: str) -> bool:
    import os

    return os.path.splitext(path)[1].lower() in VIDEO_EXTENSIONS


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(chunk), b""):
                h.update(block)
    except OSError as exc:
        raise DecodeError(f"{path}: cannot read file ({exc.strerror or exc}).") from exc
    return h.hexdigest()


@contextmanager
def _capture(path: str):
    """An OpenCV capture of the video file ``path``. OpenCV takes a path as UTF-8 text and crashes the process
    (a segmentation fault) on a name that is not: such a file is opened here and given to OpenCV by its descriptor's
    path (``/proc/self/fd/N``), which is."""
    import cv2

    try:
        path.encode("utf-8")
        fd = None
    except UnicodeEncodeError:
        fd = os.open(path, os.O_RDONLY)  # raises FileNotFoundError, PermissionError, ... as reading would
    proc = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"
    cap = cv2.VideoCapture(path if fd is None else f"{proc}/{fd}", cv2.CAP_FFMPEG)
    try:
        yield cap
    finally:
        cap.release()
        if fd is not None:
            os.close(fd)


def iter_frames(path: str, every_seconds: float = 1.0, max_pixels: int = DEFAULT_MAX_PIXELS,
                scene_change: float = 0.0, label: str | None = None) -> Iterator[VideoFrame]:
    """Yield sampled frames of a video lazily, in order (``every_seconds`` <= 0: the first frame and cuts only).
    Each frame's ``source`` is ``label`` (the item's id), or ``path``."""
    import cv2

    if every_seconds <= 0 and scene_change <= 0:
        raise ValueError("Sample videos by time (every_seconds > 0), by scene change (scene_change > 0), or both.")
    sha = file_sha256(path)
    try:
        yield from _sampled(path, sha, every_seconds, max_pixels, scene_change, label or path)
    except cv2.error as exc:  # OpenCV's own failures on hostile containers
        raise DecodeError(f"{path}: video decoding failed ({exc}).") from exc
    except OSError as exc:
        raise DecodeError(f"{path}: cannot open the video ({exc.strerror or exc}).") from exc


def _thumb(frame: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)


def _sampled(path: str, sha: str, every_seconds: float, max_pixels: int, scene_change: float,
             label: str) -> Iterator[VideoFrame]:
    import cv2

    with _capture(path) as cap:
        if not cap.isOpened():
            raise DecodeError(f"{path}: not a readable video (OpenCV could not open it).")
        fps = cap.get(cv2.CAP_PROP_FPS)
        if not fps or not np.isfinite(fps) or fps <= 0 or fps > 1000:
            fps = ASSUMED_FPS
        step = max(1, int(round(every_seconds * fps))) if every_seconds > 0 else 0
        probe = max(1, int(round(fps / 5))) if scene_change > 0 else 0
        index = found = 0
        last: np.ndarray | None = None
        while cap.grab():
            timed = index == 0 or (step and index % step == 0)
            if timed or (probe and index % probe == 0):
                ok, frame = cap.retrieve()
                if ok and frame is not None and frame.ndim == 3:
                    h, w = frame.shape[:2]
                    if w * h > max_pixels:
                        raise DecodeError(f"{path}: frames of {w}x{h} exceed the limit of {max_pixels:,} pixels.")
                    cut = False
                    if probe:
                        thumb = _thumb(frame)
                        cut = last is not None and float(np.abs(thumb - last).mean()) / 255.0 > scene_change
                        last = thumb
                    if timed or cut:
                        found += 1
                        yield VideoFrame(label, index, index / fps, np.ascontiguousarray(frame[:, :, ::-1]), sha)
            index += 1
        if not found:
            raise DecodeError(f"{path}: no decodable frame (broken or empty video).")


def read_frame(path: str, frame_index: int) -> np.ndarray:
    """One frame of a video as RGB uint8 (for thumbnails of a scanned frame)."""
    import cv2

    with _capture(path) as cap:
        if not cap.isOpened():
            raise DecodeError(f"{path}: not a readable video (OpenCV could not open it).")
        cap.set(cv2.CAP_PROP_POS_FRAMES, frame_index)
        ok, frame = cap.read()
        if not ok or frame is None:
            raise DecodeError(f"{path}: frame {frame_index} cannot be decoded.")
        return np.ascontiguousarray(frame[:, :, ::-1])
