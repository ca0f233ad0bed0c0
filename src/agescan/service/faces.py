"""The ``faces`` form field: the faces a client already found in the photo (the web page sends the faces it
covered), parsed and checked before anything is estimated.

A face is ``{"box": [x1, y1, x2, y2], "landmarks": [[x, y] x 5], "score": S}`` (``score`` optional, default 1).
Every number must be finite (JSON's ``NaN`` and ``Infinity``, and numbers too large for a float, are refused), a box
must have a positive width and height, each landmark must lie near its box, and the JSON must not be nested deeper
than Python's parser goes. Every problem is a 422
``bad_faces`` that names the face and what is wrong with it.
"""

from __future__ import annotations

import json
import math

from agescan.errors import InputError
from agescan.service.http import ServiceError
from agescan.types import BBox, Detection, Landmarks5

#: Most faces a client may say it found (the page sends the faces it covered).
MAX_GIVEN_FACES = 32
#: How far outside its box a landmark may lie, in box sides. Detectors put the landmarks of small and turned faces
#: outside the box they draw (agescan's default detector, 2,952 faces of UTKFace, FairFace and WIDER FACE: 3.4%
#: of faces, at most 0.45 of a box side); a landmark further away belongs to no face in that box.
LANDMARK_SLACK = 1.0
#: The shape of the field, quoted in every error.
SHAPE = ('[{"box": [x1, y1, x2, y2], "landmarks": [[x, y] x 5] (eyes, nose, mouth corners, as seen), '
         '"score": 0..1 (optional)}]')
_KEYS = ("box", "landmarks", "score")


class _Bad(ValueError):
    """What is wrong with the field (the message of its 422)."""


def parse_faces(text: str | None) -> tuple[Detection, ...] | None:
    """The ``faces`` field: None (detect the faces), or the faces the client found, checked; a
    :class:`ServiceError` 422 ``bad_faces`` saying what is wrong otherwise."""
    if text is None:
        return None
    try:
        try:
            data = json.loads(text)  # NaN, Infinity and 1e309 become floats that the checks below refuse
        except ValueError as exc:
            raise _Bad(f"it is not JSON ({str(exc)[:120]})") from None
        except RecursionError:  # json's parser gives up on deep nesting ('[' * 5000): a 10 KB field can do it
            raise _Bad("it is nested too deeply (a list of faces has four levels: "
                       '[{"landmarks": [[x, y], ...]}])') from None
        if not isinstance(data, list):
            raise _Bad(f"it is a JSON {type(data).__name__}, not a list of faces")
        if len(data) > MAX_GIVEN_FACES:
            raise _Bad(f"it lists {len(data)} faces; at most {MAX_GIVEN_FACES} are accepted")
        return tuple(_face(f, i) for i, f in enumerate(data, 1))
    except _Bad as exc:
        raise ServiceError(422, "bad_faces", f"The 'faces' field is not valid: {exc}. Send a JSON list {SHAPE}, "
                                             "or no 'faces' field to have the faces detected.") from None


def _face(f, i: int) -> Detection:
    where = f"face {i}"
    if not isinstance(f, dict):
        raise _Bad(f"{where} is not an object with a box and landmarks")
    unknown = sorted(set(f) - set(_KEYS))
    if unknown:
        raise _Bad(f"{where} has an unknown key {unknown[0][:40]!r} (a face has 'box', 'landmarks' and optionally "
                   "'score')")
    for key in ("box", "landmarks"):
        if key not in f:
            raise _Bad(f"{where} has no {key!r}")
    box = _numbers(f["box"], 4, f"{where}: 'box'", "[x1, y1, x2, y2]")
    if not (box[0] < box[2] and box[1] < box[3]):
        raise _Bad(f"{where}: the box {_shown(box)} has no area (it needs x1 < x2 and y1 < y2)")
    points = f["landmarks"]
    if not isinstance(points, list) or len(points) != 5:
        raise _Bad(f"{where}: 'landmarks' must be a list of 5 [x, y] points")
    landmarks = [_numbers(p, 2, f"{where}: landmark {k}", "[x, y]") for k, p in enumerate(points, 1)]
    slack = LANDMARK_SLACK * max(box[2] - box[0], box[3] - box[1])
    for k, (x, y) in enumerate(landmarks, 1):
        if not (box[0] - slack <= x <= box[2] + slack and box[1] - slack <= y <= box[3] + slack):
            raise _Bad(f"{where}: landmark {k} {_shown((x, y))} is far outside the box {_shown(box)} (more than "
                       f"{LANDMARK_SLACK:g} box side away): the landmarks belong to another face or are wrong")
    score = f.get("score", 1.0)
    if not _finite(score) or not 0.0 <= score <= 1.0:
        raise _Bad(f"{where}: 'score' must be a finite number in [0, 1]; got {_shown(score)}")
    try:
        return Detection(BBox(*box), Landmarks5(tuple((x, y) for x, y in landmarks)), float(score))
    except InputError as exc:  # pragma: no cover  (the checks above are stricter)
        raise _Bad(f"{where}: {exc}") from None


def _finite(v) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an integer too large for a float
        return False


def _numbers(value, n: int, what: str, shape: str) -> tuple[float, ...]:
    if not isinstance(value, list) or len(value) != n:
        raise _Bad(f"{what} must be {n} numbers {shape}; got {_shown(value)}")
    for v in value:
        if not _finite(v):
            raise _Bad(f"{what} must be {n} finite numbers {shape}; got {_shown(value)}")
    return tuple(float(v) for v in value)


def _shown(value) -> str:
    """A value parsed from the field, as JSON, short (a float too large as JSON's Infinity)."""
    try:
        text = json.dumps(value)
    except (RecursionError, ValueError):
        text = f"a nested {type(value).__name__}"
    return text if len(text) <= 80 else text[:77] + "..."
