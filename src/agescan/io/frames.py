"""Pictures with several frames: animated GIF, PNG (APNG) and WebP, multi-page TIFF.

An image decoder gives the first frame only, so a face in a later frame (a GIF whose first frame is blank, the
second page of a scanned document) would go unseen. The first frame stays the picture's own item (frame index -1,
as for any still picture, so results written before this module keep their meaning); :func:`later_frames` yields
each later frame that differs from the one before it as a :class:`~agescan.io.video.VideoFrame` with its frame
index (1, 2, ...), its time from the start for an animation (the frames' durations; -1 for pages, which have none)
and the sha256 of the whole file. Every frame is read, not sampled: an animation's frames are few and short-lived,
and a face may be on one of them only. Which files to look into is read from their content
(:func:`may_have_frames`: a renamed GIF, a JPEG with a multi-picture index), not their name. A frame that cannot be
decoded, or declares more pixels than a picture may, is an item saying so (a :class:`FrameError`) and the next
frame is still read; frames that cannot be reached, those past :data:`MAX_FRAMES`, and those past a budget of
pixels for the whole picture (:data:`FRAME_BUDGET`), end the picture with such an item: never a silent gap.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps

from agescan.io.image import _to_rgb_array, allow_pillow
from agescan.io.video import VideoFrame

#: Frames read from one picture; a file holding more is read to this many and the rest recorded as not read.
MAX_FRAMES = 10_000
#: Pixels decoded from one picture's frames together, in multiples of the per-picture limit (``max_pixels``): a
#: small file can declare many huge frames (20 frames of 6000x6000 in 43 KB), each under the limit.
FRAME_BUDGET = 4
#: Bytes of a file's start that :func:`may_have_frames` looks at.
HEAD_BYTES = 65536


@dataclass(frozen=True)
class FrameError:
    """A frame of a picture (or the rest of its frames) that could not be read: an item of its own."""

    source: str
    frame_index: int
    timestamp: float
    error: str


def may_have_frames(head: bytes) -> bool:
    """True when a file starting with ``head`` (its first :data:`HEAD_BYTES`) is of a format that holds several
    frames and may hold them here, read from its content, not its name (a renamed animation is found): any GIF or
    TIFF (their frames can lie anywhere in the file), a PNG with an animation chunk (APNG), an animated WebP, a JPEG
    with a multi-picture index (MPO)."""
    if head[:4] == b"GIF8" or head[:4] in (b"II*\x00", b"MM\x00*"):
        return True
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return b"acTL" in head
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return b"ANIM" in head
    if head[:3] == b"\xff\xd8\xff":
        return b"MPF\x00" in head
    return False


def _rgb(im: Image.Image) -> np.ndarray:
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - malformed EXIF: keep the stored orientation, as the decoder does
        pass
    return _to_rgb_array(im)


def later_frames(data: bytes, source: str, sha256: str, max_pixels: int) -> Iterator[VideoFrame | FrameError]:
    """Frames 1, 2, ... of the picture ``data`` (frame 0 is the picture's own item), each that differs from the
    frame before it, read until the picture ends (not to the count it declares: a damaged last frame must not hide
    the ones before it); see the module's docstring. A frame over ``max_pixels`` is recorded and skipped; one that
    cannot be decoded is recorded, and so is the end when the frames after it cannot be reached."""
    allow_pillow(max_pixels)
    try:
        im = Image.open(io.BytesIO(data))
        im.seek(1)  # a picture with one frame ends here, before anything is decoded
    except Exception:  # noqa: BLE001 - one frame (EOFError), or not readable: its own item records that
        return
    budget = FRAME_BUDGET * max_pixels
    prev: np.ndarray | None = None
    t, timed, k = 0.0, False, 0
    while k < MAX_FRAMES:
        try:
            im.seek(k)
        except EOFError:
            return
        except Exception as exc:  # noqa: BLE001 - the frames from here on cannot be reached
            yield FrameError(source, k, -1.0, f"the picture cannot be read past frame {k - 1} "
                                              f"({exc or type(exc).__name__}): any frame after it was not read")
            return
        start = t
        duration = im.info.get("duration")
        if isinstance(duration, (int, float)) and duration > 0:
            t, timed = t + float(duration), True
        w, h = im.size
        budget -= w * h
        if w * h > max_pixels or budget < 0:
            why = (f"declares {w}x{h} pixels, more than the limit of {max_pixels:,} (decompression-bomb guard)"
                   if w * h > max_pixels else f"is past the {FRAME_BUDGET * max_pixels:,} pixels read from one "
                                              "picture's frames (decompression-bomb guard)")
            if k or budget < 0:  # an oversized first frame is the picture's own item's error already
                yield FrameError(source, k, -1.0, f"frame {k} {why}: not read")
            if budget < 0:
                return
            prev, k = None, k + 1
            continue
        try:
            im.load()
            frame = _rgb(im)
        except Exception as exc:  # noqa: BLE001 - a broken frame is recorded; the next one may still be read
            if k:
                yield FrameError(source, k, -1.0, f"frame {k} cannot be decoded ({exc or type(exc).__name__})")
            prev, k = None, k + 1
            continue
        if k and (prev is None or prev.shape != frame.shape or not np.array_equal(prev, frame)):
            yield VideoFrame(source, k, start / 1000.0 if timed else -1.0, frame, sha256)
        prev, k = frame, k + 1
    try:
        im.seek(MAX_FRAMES)
    except Exception:  # noqa: BLE001 - exactly MAX_FRAMES frames (or unreachable after): nothing left out
        return
    yield FrameError(source, MAX_FRAMES, -1.0, f"more than {MAX_FRAMES:,} frames: the first {MAX_FRAMES:,} were "
                                               "read, the others were not (the limit of frames per picture)")


def read_picture_frame(source_id: str, frame_index: int) -> tuple[np.ndarray, str]:
    """Frame ``frame_index`` of a scanned picture (a file or an archive member, by its source id) as RGB uint8, and
    the sha256 of the file: how the report cuts the thumbnails of a later frame's faces."""
    import hashlib

    from agescan.errors import DecodeError
    from agescan.io.archives import source_bytes

    data = source_bytes(source_id)
    try:
        im = Image.open(io.BytesIO(data))
        im.seek(frame_index)
        im.load()
        return _rgb(im), hashlib.sha256(data).hexdigest()
    except DecodeError:
        raise
    except (OSError, EOFError, ValueError, SyntaxError) as exc:
        raise DecodeError(f"{source_id}: frame {frame_index} cannot be read ({exc}).") from exc
