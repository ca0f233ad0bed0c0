"""Scans: sources -> :class:`~agescan.AgeEstimator` -> a sink, resumable, on this machine or a Ray cluster.

Example:
    >>> from agescan import AgeEstimator
    >>> from agescan.scan import FileSink, StoreSink, run_scan
    >>> est = AgeEstimator(workers=2)                                             # doctest: +SKIP
    >>> run_scan(est, ["evidence/"], StoreSink("case.sqlite"))                    # doctest: +SKIP
    >>> run_scan(est, ["evidence/"], FileSink("results.jsonl", overwrite=True))   # doctest: +SKIP

:class:`ScanConfig` is the frozen configuration that keys a resumable run; :func:`run_scan` the one runner under
the ``agescan scan`` command, notebooks and the Ray engine (:class:`RayEngine`, :mod:`agescan.scan.ray_engine`).
"""

from __future__ import annotations

import os

from agescan.scan.config import ScanConfig, triage_rule
from agescan.scan.ray_engine import RayEngine
from agescan.scan.runner import ScanProgress, ScanSummary, run_scan, scan_items
from agescan.scan.sinks import FileSink, ResultSink, StoreSink


def quiet_decoder_logs() -> None:
    """Silence what third-party decoders print about broken inputs, process-wide; for applications (the CLI, the
    service, a notebook that scans), never done by the library itself.

    Pillow warns about bomb-sized images and corrupt metadata; FFmpeg and OpenCV print their own complaints (in raw,
    often non-UTF-8 bytes) about every broken video. agescan records each failure as an error item, so in a scan of
    millions of files these are noise that floods the terminal (and in a service, logs that could name files).
    """
    import warnings

    warnings.filterwarnings("ignore", module=r"PIL\.")
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # read when the FFmpeg backend starts
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


__all__ = ["FileSink", "RayEngine", "ResultSink", "ScanConfig", "ScanProgress", "ScanSummary", "StoreSink",
           "quiet_decoder_logs", "run_scan", "scan_items", "triage_rule"]
