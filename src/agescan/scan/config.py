"""The frozen configuration of a scan: what decides its results, and so the one source of its run key.

A results store keys a run by the sha256 of :meth:`ScanConfig.key` (:func:`agescan.store.resultstore.config_hash`):
running the same scan again reopens the same run and skips what it holds. Keys written by earlier versions must
keep matching, so the key is built exactly as they built it, and a setting added later enters the key only when it
differs from what those versions did without it:

- ``video_scene`` (scene-change sampling): only when on;
- ``flag_threshold`` / ``challenge_age`` (the triage rule, stored with each face since results schema 3): only
  when they differ from :data:`agescan.triage.LEGACY_RULE`, the rule of that time;
- ``profile_yaw`` (pose-aware framing, results schema 4): only when under 90, i.e. when some faces may be framed
  from their box (before, every face was warped): resume a run of an earlier version with ``--profile-yaw 90``;
- ``archive_depth`` is not part of the key: like the files in a folder, it decides what is found, not how a found
  item is estimated, so a rerun with a deeper reading adds the newly found members to the same run.

Execution settings (workers, threads, batch size, engine) never enter the key: they change speed, not results.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Iterator, Sequence

from agescan._validation import check_number
from agescan.io import SourceItem, iter_sources
from agescan.io.archives import DEFAULT_ARCHIVE_DEPTH
from agescan.store.resultstore import config_hash
from agescan.triage import LEGACY_RULE


@dataclass(frozen=True)
class ScanConfig:
    """Everything that decides a scan's results: the sources, how they are listed, and the estimator's settings.

    Build it with :meth:`of` from a loaded :class:`~agescan.AgeEstimator` (so the model's id and sha256 are the
    loaded weights'), never by hand-copying settings.
    """

    sources: tuple[str, ...]  # absolute paths: item ids and the run key do not depend on the working folder
    recursive: bool
    archive_depth: int
    model_id: str
    model_sha256: str
    detector: str
    min_face_size: int
    minor_age: int
    interval: float
    max_pixels: int
    video_every: float
    video_scene: float
    flag_threshold: float
    challenge_age: float
    #: pose-aware framing threshold (agescan.align.pose); 90 = every face warped, as before pose-aware framing
    profile_yaw: float = 90.0
    transform: str = ""  # a privacy transform applied before the pipeline (``scan --transform``); "" = none
    #: the privacy transform the pictures had already been through (``scan --input-condition``): the card's
    #: thresholds for it decide the flags; "" = none
    condition: str = ""

    @classmethod
    def of(cls, estimator, sources: str | os.PathLike | Sequence[str | os.PathLike], *, recursive: bool = True,
           archive_depth: int = DEFAULT_ARCHIVE_DEPTH) -> "ScanConfig":
        """The configuration of scanning ``sources`` (paths of files, folders or archives) with ``estimator``."""
        check_number(archive_depth, "archive_depth", "ScanConfig", lo=1, hi=32, integer=True)
        if isinstance(sources, (str, os.PathLike)):
            sources = [sources]
        model = estimator.model  # loads it: the key holds the sha256 of the weights actually used
        return cls(sources=tuple(os.path.abspath(os.fspath(s)) for s in sources), recursive=bool(recursive),
                   archive_depth=int(archive_depth), model_id=model.id, model_sha256=model.sha256,
                   detector=estimator.detector_name, min_face_size=int(estimator.min_face_size),
                   minor_age=int(estimator.minor_age), interval=float(estimator.interval_level),
                   max_pixels=int(estimator.max_pixels), video_every=float(estimator.video_every),
                   video_scene=float(estimator.video_scene), flag_threshold=float(estimator.flag_threshold),
                   challenge_age=float(estimator.challenge_age), profile_yaw=float(estimator.profile_yaw),
                   transform=getattr(estimator, "transform", ""), condition=getattr(estimator, "condition", ""))

    def key(self) -> dict:
        """The run key: the JSON object whose hash identifies the run (see the module's docstring)."""
        key = {"sources": list(self.sources), "recursive": self.recursive, "model_id": self.model_id,
               "model_sha256": self.model_sha256, "detector": self.detector, "min_face_size": self.min_face_size,
               "minor_age": self.minor_age, "interval": self.interval, "max_pixels": self.max_pixels,
               "video_every": self.video_every}
        if self.video_scene:
            key["video_scene"] = self.video_scene
        if self.transform:  # only when set: runs without one keep the keys they were stored under
            key["transform"] = self.transform
        if self.condition:  # likewise
            key["condition"] = self.condition
        if (self.flag_threshold, self.challenge_age) != LEGACY_RULE:
            key["flag_threshold"] = self.flag_threshold
            key["challenge_age"] = self.challenge_age
        if self.profile_yaw < 90:  # runs from before pose-aware framing (every face warped) keep their key
            key["profile_yaw"] = self.profile_yaw
        return key

    def key_hash(self) -> str:
        """sha256 of the canonical JSON of :meth:`key` (what the results store's ``runs.config_hash`` holds)."""
        return config_hash(self.key())

    def items(self) -> Iterator[SourceItem]:
        """The scan's items, lazily, in agescan's deterministic order (files, archive members, error items)."""
        return iter_sources(list(self.sources), recursive=self.recursive, archive_depth=self.archive_depth)

    def as_dict(self) -> dict:
        return asdict(self)


def triage_rule(key: dict) -> tuple[float, float]:
    """The (flag threshold, challenge age) a run was scanned with, from its stored key."""
    if "flag_threshold" in key:
        return float(key["flag_threshold"]), float(key.get("challenge_age", 0.0))
    return LEGACY_RULE
