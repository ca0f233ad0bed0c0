"""Where a scan's results go: a JSON Lines or CSV file, or a results store (SQLite or PostgreSQL).

A sink is opened with the scan's :class:`~agescan.scan.ScanConfig` and returns the (source, frame) keys it already
holds (a resumed scan skips them), receives each result as it finishes, and is closed with the summary (a file is
renamed into place, a run is marked finished) or aborted when the scan fails.
"""

from __future__ import annotations

import os
from typing import IO, Iterable, Protocol

from agescan.errors import InputError
from agescan.results import ResultWriter, format_from_path
from agescan.types import ImageResult


class ResultSink(Protocol):
    """What :func:`agescan.scan.run_scan` writes to."""

    def open(self, config, resume: bool) -> set[tuple[str, int]]:
        """Prepare for ``config``'s scan; return the (source, frame index) keys already held (skipped)."""

    def write(self, result: ImageResult) -> None: ...

    def completed(self) -> None:
        """Every listed item was handed to :meth:`write` (a pass run to its end here, not by a distributed engine):
        forget what the listing no longer holds."""

    def close(self, summary) -> None:
        """The scan finished: make the results final and fill ``summary.held`` (and ``run_id``) if known."""

    def abort(self) -> None:
        """The scan failed or was interrupted: keep what is safe to keep."""


class FileSink:
    """Results written whole to a ``.jsonl`` (one record per line) or ``.csv`` (one row per face) file.

    Written to ``PATH.partial`` as the scan goes (each record flushed) and renamed to ``PATH`` when it completes, so
    a file under its name is always a complete scan. A file scan does not resume (use a store for that).

    Args:
        path: the output file; its suffix chooses the format.
        include_distribution: with ``.jsonl``, each face's full age distribution.
        overwrite: replace ``path`` if it exists (else :class:`~agescan.errors.InputError`).
    """

    def __init__(self, path: str | os.PathLike, *, include_distribution: bool = False, overwrite: bool = False):
        self.path = os.fspath(path)
        try:
            self.fmt = format_from_path(self.path)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        self.include_distribution = include_distribution
        self.overwrite = overwrite
        self._fh: IO[str] | None = None
        self._writer: ResultWriter | None = None

    @property
    def partial(self) -> str:
        return self.path + ".partial"

    def open(self, config, resume: bool) -> set[tuple[str, int]]:
        if os.path.isdir(self.path) or os.path.isdir(self.partial):
            raise InputError(f"{self.path} is a folder: name the results file (e.g. "
                             f"{os.path.join(self.path, 'results.jsonl')})")
        if os.path.exists(self.path) and not self.overwrite:
            raise InputError(f"{self.path} exists; pass --overwrite (overwrite=True) to replace it")
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise InputError(f"{self.path}: {folder} is not a folder" if os.path.exists(folder) else
                             f"{self.path}: its folder {folder} does not exist; create it first")
        try:
            self._fh = open(self.partial, "w", newline="", encoding="utf-8")
        except OSError as exc:
            raise InputError(f"{self.path}: cannot write {self.partial} ({exc.strerror or exc})") from None
        self._writer = ResultWriter(self._fh, self.fmt, include_distribution=self.include_distribution)
        self._writer.write_header()
        return set()

    def write(self, result: ImageResult) -> None:
        self._writer.write(result)

    def completed(self) -> None:
        pass  # a file holds one pass only

    def close(self, summary) -> None:
        self._fh.close()
        os.replace(self.partial, self.path)
        summary.held = {"items": summary.items, "files": summary.files, "faces": summary.faces,
                        "flagged": summary.flagged, "errors": summary.errors}

    def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()  # PATH.partial keeps what was finished


class StoreSink:
    """Results written to a results store, each item with its faces in one transaction, in the run keyed by the
    scan's configuration: resumable after any interruption (even ``kill -9``), by this or another scanner. An item
    stored with an error is tried again by a rerun, its new outcome replacing the error; an error whose source the
    listing no longer yields (a folder that could not be opened and now can, a file since removed) is dropped when a
    rerun completes.

    Args:
        target: a SQLite file (created if absent) or a ``postgresql://`` URL.
    """

    def __init__(self, target: str | os.PathLike):
        self.target = os.fspath(target)
        self.store = None
        self.run_id: int | None = None
        self._old_errors: set[tuple[str, int]] = set()
        self.dropped = 0  # stale error items dropped by the last completed pass

    def open(self, config, resume: bool) -> set[tuple[str, int]]:
        from agescan import __version__
        from agescan.store import ResultStore

        self.store = ResultStore(self.target).open()
        self.run_id = self.store.open_run(config.key(), config.model_id, config.model_sha256, config.detector,
                                          __version__)
        self._old_errors = self.store.error_sources(self.run_id)  # those not written again by this pass are stale
        return self.store.done_sources(self.run_id) if resume else set()

    def write(self, result: ImageResult) -> None:
        self._old_errors.discard((result.provenance.source, result.provenance.frame_index))
        self.store.add(self.run_id, [result])

    def completed(self) -> None:
        self.dropped = self.store.drop_items(self.run_id, sorted(self._old_errors))
        self._old_errors = set()

    def write_records(self, records: Iterable[dict]) -> int:
        """Records already in the result schema (a distributed scan's partition files); returns how many were new."""
        return self.store.add_records(self.run_id, records)

    def stored_among(self, sources: Iterable[str]) -> set[tuple[str, int]]:
        """The (source, frame) keys held among ``sources``, an item held under the id an agescan from before
        2026-11-30 wrote (:func:`agescan.io.names.legacy_id`) given under its id now."""
        from agescan.io.names import legacy_id

        sources = list(sources)
        old = {legacy_id(s): s for s in sources if legacy_id(s) != s}
        held = self.store.stored_among(self.run_id, [*sources, *old])
        return {(old.get(s, s), f) for s, f in held}

    def close(self, summary) -> None:
        self.store.finish_run(self.run_id)
        summary.run_id = self.run_id
        summary.held = self.store.counts(self.run_id)
        self.store.close()

    def abort(self) -> None:
        if self.store is not None:
            self.store.close()  # every committed item stays; rerun to resume

