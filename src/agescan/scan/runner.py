"""The scan runner: sources -> :class:`~agescan.AgeEstimator` -> a sink, resumable, with one summary.

Every surface scans through here: the ``agescan scan`` command, a notebook, the Ray engine's actors (each runs
:func:`scan_items` over its partition). Counting (files, faces, flagged faces, errors) is done once, from the results
themselves: a face's ``flagged`` was decided by the estimator (:mod:`agescan.triage`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol, Sequence

from agescan.io.archives import DEFAULT_ARCHIVE_DEPTH
from agescan.io.names import legacy_id
from agescan.scan.config import ScanConfig
from agescan.types import ImageResult


@dataclass
class ScanSummary:
    """What a scan did: new files (a video counts once), items (images, video frames, errors), faces, faces flagged
    for review and errors; items skipped because the sink already held them; and what the sink holds afterwards
    (``held``: items, faces, flagged, errors; ``run_id`` for a store; ``partitions``: the Ray engine's partition
    counts)."""

    files: int = 0
    items: int = 0
    faces: int = 0
    flagged: int = 0
    errors: int = 0
    skipped: int = 0
    seconds: float = 0.0
    run_id: int | None = None
    held: dict = field(default_factory=dict)
    partitions: dict = field(default_factory=dict)

    def add(self, result: ImageResult) -> None:
        self.files += result.provenance.frame_index <= 0  # a video's first frame (or its error) stands for the file
        self.items += 1
        self.faces += len(result.faces)
        self.flagged += sum(f.flagged for f in result.faces)
        self.errors += bool(result.error)

    def merge(self, other: dict) -> None:
        """Add the counts of another runner's summary (a partition scanned elsewhere), given as a dict."""
        for k in ("files", "items", "faces", "flagged", "errors", "skipped"):
            setattr(self, k, getattr(self, k) + int(other.get(k, 0)))

    def counts(self) -> dict:
        return {k: getattr(self, k) for k in ("files", "items", "faces", "flagged", "errors", "skipped")}


class ScanProgress(Protocol):
    """Optional observer of a scan (the CLI's progress bar): told the configuration and what is already done, then
    each result with the running summary."""

    def start(self, config: ScanConfig, done: set[tuple[str, int]]) -> None: ...

    def update(self, result: ImageResult, summary: ScanSummary) -> None: ...


def scan_items(estimator, items: Iterable[Any], write: Callable[[ImageResult], None], *,
               skip: set[tuple[str, int]] | None = None, progress: ScanProgress | None = None) -> ScanSummary:
    """Stream ``items`` through ``estimator``, hand each result to ``write`` as it finishes and count it.

    ``skip`` holds (source, frame index) keys already done: they are dropped before they are decoded (an item
    held under the id an earlier agescan wrote, :func:`agescan.io.names.legacy_id`, is done too).
    """
    summary = ScanSummary()
    skip = skip or set()

    def skipped(source: str, frame: int) -> bool:
        # an item stored by an agescan from before 2026-11-30 is held under the id it wrote then (legacy_id)
        if (source, frame) in skip or ((old := legacy_id(source)) != source and (old, frame) in skip):
            summary.skipped += 1
            return True
        return False

    for r in estimator.stream(items, skip=skipped if skip else None):
        write(r)
        summary.add(r)
        if progress is not None:
            progress.update(r, summary)
    return summary


def run_scan(estimator, sources: str | os.PathLike | Sequence[str | os.PathLike], sink, resume: bool = True, *,
             recursive: bool = True, archive_depth: int = DEFAULT_ARCHIVE_DEPTH, engine=None,
             progress: ScanProgress | None = None) -> ScanSummary:
    """Scan files, folders and archives with ``estimator`` into ``sink``; return the summary.

    Args:
        estimator: an :class:`~agescan.AgeEstimator` (its settings, with the sources, make the
            :class:`ScanConfig` that keys a resumable run).
        sources: paths of files, folders (walked in code-point order) and zip/tar archives (read in place).
        sink: a :class:`~agescan.scan.FileSink` or :class:`~agescan.scan.StoreSink` (or anything with their methods).
        resume: skip the items the sink already holds for this configuration (a store; a file holds none); an item
            held with an error is tried again.
        recursive: descend into sub-folders.
        archive_depth: archive levels read (1: archives inside archives are recorded as not read).
        engine: None to scan here, or a :class:`~agescan.scan.RayEngine` (the same runner on a Ray cluster's
            actors; needs a :class:`~agescan.scan.StoreSink`).
        progress: an optional :class:`ScanProgress`.

    Example:
        >>> from agescan import AgeEstimator
        >>> from agescan.scan import StoreSink, run_scan
        >>> s = run_scan(AgeEstimator(workers=2), ["evidence/"], StoreSink("case.sqlite"))  # doctest: +SKIP
        >>> s.files, s.faces, s.flagged, s.errors, s.held                                   # doctest: +SKIP
    """
    config = ScanConfig.of(estimator, sources, recursive=recursive, archive_depth=archive_depth)
    t0 = time.time()
    # The Ray engine resumes by partition, asking the store about one partition's items at a time.
    done = sink.open(config, resume and engine is None)
    try:
        if progress is not None:
            progress.start(config, done)
        if engine is not None:
            summary = engine.run(estimator, config, sink, progress)
        else:
            summary = scan_items(estimator, config.items(), sink.write, skip=done, progress=progress)
            sink.completed()
    except BaseException:
        sink.abort()
        raise
    summary.seconds = time.time() - t0
    sink.close(summary)
    return summary
