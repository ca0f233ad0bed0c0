"""Pictures with several frames: animated GIF, PNG (APNG) and WebP, multi-page TIFF.

An image decoder gives the first frame only, so a face in a later frame (a GIF whose first frame is blank, the
second page of a scanned document) would go unseen. The first frame stays the picture's own item (frame index -1,
as for any still picture, so results written before this module keep their meaning); :func:`later_frames` yields
each later frame that differs from the one before it as a :class:`~agescan.io.video.VideoFrame` with its frame
index (1, 2, ...), its time from the start for an animation (the frames' durations; -1 for pages, which have none)
and the sha256 of the whole file. Every frame is read, not sampled: an animation's frames are few and short-lived,
and a face may be on one of them only. A frame that cannot be decoded, and the frames past
:data:`MAX_FRAMES`, end the picture with a :class:`FrameError` item saying so, never a silent gap.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps

from agescan.io.image import _to_rgb_array
from agescan.io.video import VideoFrame

#: Formats that can hold several frames (checked by extension, then by the decoder).
MULTIFRAME_EXTENSIONS = frozenset({".gif", ".png", ".apng", ".webp", ".tif", ".tiff"})
#: Frames read from one picture; a file declaring more is read to this many and the rest recorded as not read.
MAX_FRAMES = 10_000


@dataclass(frozen=True)
class FrameError:
    """A frame of a picture (or the rest of its frames) that could not be read: an item of its own."""

    source: str
    frame_index: int
    timestamp: float
    error: str


def may_have_frames(name: str) -> bool:
    """True for the file names whose format can hold several frames."""
    return os.path.splitext(name)[1].lower() in MULTIFRAME_EXTENSIONS


def frame_count(source: str | bytes) -> int:
    """How many frames the picture (a path or its bytes) declares; 1 when it is not one the decoder can open."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
            return max(1, int(getattr(im, "n_frames", 1)))
    except Exception:  # noqa: BLE001 - not a picture the decoder opens: its one item will record why
        return 1


def _rgb(im: Image.Image) -> np.ndarray:
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - malformed EXIF: keep the stored orientation, as the decoder does
        pass
    return _to_rgb_array(im)


def later_frames(data: bytes, source: str, sha256: str, max_pixels: int) -> Iterator[VideoFrame | FrameError]:
    """Frames 1, 2, ... of the picture ``data`` (frame 0 is the picture's own item), each that differs from the
    frame before it; see the module's docstring."""
    try:
        im = Image.open(io.BytesIO(data))
        n = max(1, int(getattr(im, "n_frames", 1)))
    except Exception:  # noqa: BLE001 - not readable as a picture: its own item records why
        return
    durations = []
    prev = None
    t = 0.0
    for k in range(min(n, MAX_FRAMES)):
        try:
            im.seek(k)
            w, h = im.size
            if w * h > max_pixels:
                yield FrameError(source, k, -1.0, f"frame {k} declares {w}x{h} pixels, more than the limit of "
                                                  f"{max_pixels:,} (decompression-bomb guard): it and the frames "
                                                  f"after it were not read")
                return
            im.load()
            frame = _rgb(im)
        except Exception as exc:  # noqa: BLE001 - a broken frame ends the picture, and is recorded
            if k == 0:
                return  # the picture's own item records why its first frame cannot be read
            yield FrameError(source, k, -1.0, f"frame {k} of {n} cannot be decoded ({exc or type(exc).__name__}): "
                                              f"it and the frames after it were not read")
            return
        duration = im.info.get("duration")
        durations.append(float(duration) if isinstance(duration, (int, float)) and duration > 0 else 0.0)
        if k and (prev is None or prev.shape != frame.shape or not np.array_equal(prev, frame)):
            timed = any(durations[:-1]) or durations[-1] > 0
            yield VideoFrame(source, k, t / 1000.0 if timed else -1.0, frame, sha256)
        prev = frame
        t += durations[-1]
    if n > MAX_FRAMES:
        yield FrameError(source, MAX_FRAMES, -1.0, f"{n:,} frames: the first {MAX_FRAMES:,} were read, the others "
                                                   f"were not (the limit of frames per picture)")


def read_picture_frame(source_id: str, frame_index: int) -> tuple[np.ndarray, str]:
    """Frame ``frame_index`` of a scanned picture (a file or an archive member, by its source id) as RGB uint8, and
    the sha256 of the file: how the report cuts the thumbnails of a later frame's faces."""
    import hashlib

    from agescan.errors import DecodeError
    from agescan.io.archives import read_member, split_source
    from agescan.io.names import os_name

    archive, member = split_source(source_id)
    try:
        if member:
            data = read_member(archive, member)
        else:
            with open(os_name(source_id), "rb") as fh:
                data = fh.read()
        im = Image.open(io.BytesIO(data))
        im.seek(frame_index)
        im.load()
        return _rgb(im), hashlib.sha256(data).hexdigest()
    except DecodeError:
        raise
    except (OSError, EOFError, ValueError, SyntaxError) as exc:
        raise DecodeError(f"{source_id}: frame {frame_index} cannot be read ({exc}).") from exc
