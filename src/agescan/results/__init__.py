"""One versioned result schema shared by JSON, JSON Lines, CSV (and later the store and HTTP API).

A JSON record is one image::

    {"schema": "agescan.result/4", "source": ..., "sha256": ..., "frame_index": -1, "timestamp": -1.0,
     "pdq": "<64 hex>", "pdq_mirror": "<64 hex>", "pdq_quality": 0-100, "width": .., "height": .., "error": "",
     "error_type": "", "provenance": {"agescan_version", "model_id", "model_sha256", "detector_id",
     "flag_threshold", "challenge_age"}, "faces": [
        {"box": [x1, y1, x2, y2], "landmarks": [[x, y] x5], "detector_score": ..,
         "age": .., "interval": [lo, hi], "interval_level": 0.9, "p_minor": .., "minor_age": 18,
         "age_group": "18-25", "model_id": "...", "flagged": false,
         "pose": {"yaw": -12.3, "roll": 2.1}, "framing": "aligned",
         "distribution": {"min_age": 0, "probs": [...]}}]}

``frame_index`` is -1 for a still picture (and for the first frame of an animated or multi-page one); a video's
sampled frame, or a later frame of an animated or multi-page picture, has its index in the file, and ``timestamp``
its time in seconds (-1 for a still picture and for a page, which has no time).

A CSV row is one face (an image without faces or with an error still gets one row, with empty face
columns), so no image silently disappears from a spreadsheet.

Version 2 replaced version 1's ``phash`` (a 64-bit dHash) with the PDQ hash of the picture, of its mirror image
and the hash's quality (:mod:`agescan.io.phash`). Version 3 added each face's triage flag (``flagged``, decided once
by :mod:`agescan.triage` when the face is estimated) and the rule that set it (``flag_threshold``,
``challenge_age`` in ``provenance``). Version 4 added each face's head pose (``pose``: ``yaw`` and ``roll`` in
degrees, from its landmarks) and the framing the model saw (``framing``: ``"aligned"``, the five-point warp, or
``"box"``, a turned face framed from its box; :mod:`agescan.align.pose`). A reader of a version 1-3 record gets the
pose from the record's landmarks and ``"aligned"`` (:func:`face_pose`), which is what those versions did.
"""

from __future__ import annotations

import csv
import io
import json
from typing import IO, Iterable

from agescan.types import FaceResult, ImageResult

SCHEMA = "agescan.result/4"

CSV_COLUMNS = ("schema", "source", "sha256", "pdq", "pdq_mirror", "pdq_quality", "frame_index", "timestamp", "width",
               "height", "error_type", "error", "face_index", "x1", "y1", "x2", "y2", "detector_score", "age",
               "interval_lo", "interval_hi", "interval_level", "p_minor", "minor_age", "age_group", "flagged", "model_id", "agescan_version", "flag_threshold",
               "challenge_age", "yaw", "roll", "framing")


def _r(x: float, nd: int = 2) -> float:
    return round(float(x), nd)


def face_to_dict(face: FaceResult, include_distribution: bool = True) -> dict:
    d = {
        "box": [_r(v, 1) for v in face.box.as_tuple()],
        "landmarks": [[_r(x, 1), _r(y, 1)] for x, y in face.landmarks.points],
        "detector_score": _r(face.detector_score, 4),
        "age": _r(face.age),
        "interval": [_r(face.interval[0]), _r(face.interval[1])],
        "interval_level": face.interval_level,
        "p_minor": _r(face.p_minor, 4),
        "minor_age": face.minor_age,
        "age_group": face.age_group,
        "model_id": face.model_id,
        "flagged": face.flagged,
        "pose": {"yaw": _r(face.yaw, 1), "roll": _r(face.roll, 1)},
        "framing": face.framing,
    }
    if include_distribution:
        d["distribution"] = {"min_age": face.distribution.min_age,
                             "probs": [round(p, 5) for p in face.distribution.probs]}
    return d


def to_dict(result: ImageResult, include_distribution: bool = True) -> dict:
    """The JSON-ready record for one image."""
    p = result.provenance
    return {
        "schema": SCHEMA,
        "source": p.source,
        "sha256": p.sha256,
        "frame_index": p.frame_index,
        "timestamp": p.timestamp,
        "pdq": p.pdq,
        "pdq_mirror": p.pdq_mirror,
        "pdq_quality": p.pdq_quality,
        "width": result.width,
        "height": result.height,
        "error": result.error,
        "error_type": result.error_type,
        "provenance": {"agescan_version": p.agescan_version, "model_id": p.model_id,
                       "model_sha256": p.model_sha256, "detector_id": p.detector_id,
                       "flag_threshold": p.flag_threshold, "challenge_age": p.challenge_age},
        "faces": [face_to_dict(f, include_distribution) for f in result.faces],
    }


def to_json(result: ImageResult, include_distribution: bool = True, indent: int | None = None) -> str:
    return json.dumps(to_dict(result, include_distribution), ensure_ascii=False, indent=indent)


def csv_rows(result: ImageResult) -> list[dict]:
    """One dict per face (or one for a faceless/failed image) keyed by :data:`CSV_COLUMNS`."""
    p = result.provenance
    base = {"schema": SCHEMA, "source": p.source, "sha256": p.sha256, "frame_index": p.frame_index,
            "timestamp": p.timestamp, "pdq": p.pdq, "pdq_mirror": p.pdq_mirror, "pdq_quality": p.pdq_quality,
            "width": result.width, "height": result.height, "error_type": result.error_type, "error": result.error,
            "agescan_version": p.agescan_version, "model_id": p.model_id, "flag_threshold": p.flag_threshold,
            "challenge_age": p.challenge_age}
    if not result.faces:
        return [{**{c: "" for c in CSV_COLUMNS}, **base, "face_index": ""}]
    rows = []
    for i, f in enumerate(result.faces):
        x1, y1, x2, y2 = f.box.as_tuple()
        rows.append({**base, "face_index": i, "x1": _r(x1, 1), "y1": _r(y1, 1), "x2": _r(x2, 1), "y2": _r(y2, 1),
                     "detector_score": _r(f.detector_score, 4), "age": _r(f.age), "interval_lo": _r(f.interval[0]),
                     "interval_hi": _r(f.interval[1]), "interval_level": f.interval_level,
                     "p_minor": _r(f.p_minor, 4), "minor_age": f.minor_age, "age_group": f.age_group,
                     "flagged": int(f.flagged), "model_id": f.model_id, "yaw": _r(f.yaw, 1), "roll": _r(f.roll, 1),
                     "framing": f.framing})
    return rows


def face_pose(face: dict) -> tuple[float, float, str]:
    """(yaw, roll, framing) of a face record of any schema version: as stored from version 4, else the pose of
    its landmarks (:func:`agescan.align.pose.estimate_pose`) and ``"aligned"``, the only framing before."""
    if "framing" in face:
        pose = face.get("pose") or {}
        return float(pose.get("yaw", 0.0)), float(pose.get("roll", 0.0)), str(face["framing"])
    from agescan.align.pose import estimate_pose

    p = estimate_pose(face["landmarks"]) if len(face.get("landmarks") or ()) == 5 else None
    return (p.yaw, p.roll, "aligned") if p else (0.0, 0.0, "aligned")


class ResultWriter:
    """Write results to a ``.jsonl``/``.json`` (one record per line) or ``.csv`` stream.

    Every record is flushed as written so a killed run keeps what it finished.
    """

    def __init__(self, stream: IO[str], fmt: str, include_distribution: bool = False):
        if fmt not in ("jsonl", "csv"):
            raise ValueError(f"fmt must be 'jsonl' or 'csv', got {fmt!r}")
        self.stream, self.fmt, self.include_distribution = stream, fmt, include_distribution
        self._csv = None
        if fmt == "csv":
            self._csv = csv.DictWriter(stream, fieldnames=list(CSV_COLUMNS), extrasaction="ignore")

    def write_header(self) -> None:
        if self._csv is not None:
            self._csv.writeheader()

    def write(self, result: ImageResult) -> None:
        if self._csv is not None:
            self._csv.writerows(csv_rows(result))
        else:
            self.stream.write(to_json(result, self.include_distribution) + "\n")
        self.stream.flush()


def format_from_path(path: str) -> str:
    low = path.lower()
    if low.endswith(".csv"):
        return "csv"
    if low.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    raise ValueError(f"cannot tell the output format of {path!r}: use a .jsonl or .csv file name")


def csv_text(results: Iterable[ImageResult]) -> str:
    buf = io.StringIO()
    w = ResultWriter(buf, "csv")
    w.write_header()
    for r in results:
        w.write(r)
    return buf.getvalue()
