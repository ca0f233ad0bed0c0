"""Files and folders -> one lazy iterator of :class:`SourceItem`, in a deterministic order.

Folders are walked recursively in sorted (code-point) order. A file is taken when its extension is an
image extension or its first bytes carry an image signature (renamed files are found); zip and tar
archives are opened in place and their image members listed (:mod:`agescan.io.archives`); videos (by
extension) are items whose frames the estimator samples (:mod:`agescan.io.video`). Errors met on
the way (permission denied, vanished entries, broken links) become items with ``error`` set, never
exceptions, so one bad folder cannot end a long scan. Nothing is listed twice: a folder reached again (a symbolic
link loop, a link to a folder the scan walks under its own name, sources that overlap) is not walked again, and a
file named as a source is not listed again by a folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Iterator

from agescan.io.archives import DEFAULT_ARCHIVE_DEPTH, is_archive, iter_archive
from agescan.io.image import has_image_signature
from agescan.io.names import text_name
from agescan.io.video import VIDEO_EXTENSIONS

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".gif", ".tif", ".tiff",
                              ".webp", ".ppm", ".pgm", ".pbm", ".pnm", ".ico", ".jp2", ".j2k", ".tga", ".heic"})


@dataclass(frozen=True)
class SourceItem:
    """One input found by :func:`iter_sources`: a file path (``ARCHIVE::MEMBER`` for a member of a zip or tar
    archive, with ``archive`` and ``member`` set; ``member`` is ``INNER::MEMBER`` inside a nested archive), and an
    error string when it cannot be used. Every field is text: a name that is not valid UTF-8 is written with
    ``\\xNN`` escapes (:func:`agescan.io.names.text_name`; :func:`~agescan.io.names.os_name` opens it)."""

    path: str
    error: str = ""
    archive: str = ""
    member: str = ""


def _file_items(path: str, archive_depth: int) -> Iterator[SourceItem]:
    """A file, or every image member of an archive (and of the archives inside it), as items."""
    if is_archive(path):
        for sid, member, error in iter_archive(path, archive_depth):
            yield SourceItem(sid, error, archive=text_name(path) if member else "", member=member)
    else:
        yield SourceItem(text_name(path))


def _looks_like_image(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return True  # let the reader record the precise error
    return has_image_signature(head)


def file_identity(path: str | os.PathLike) -> tuple[int, int] | None:
    """(device, inode) of an existing file, following links: the same file under any name; None when there is none
    (vanished since it was listed: its reading will say so)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _inside(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


class _Walk:
    """What one listing has covered, so that nothing is listed twice: folders walked (by device and inode: a
    folder reached again, through a symbolic link, a loop or a source that overlaps another, is not walked again;
    its files are listed under the first path), the real paths of the folders named as sources (a symbolic link to
    a folder inside them is an alias, not walked: the folder is listed under its own path), and the files named
    as sources (not listed again by a folder's walk)."""

    def __init__(self, roots: list[str], named: set[tuple[int, int]], recursive: bool, archive_depth: int):
        self.roots, self.recursive, self.archive_depth = roots, recursive, archive_depth
        self.folders: set[tuple[int, int]] = set()
        self.named = named  # (device, inode) of the files named as sources
        self.listed: set[tuple[int, int]] = set()  # those of them listed so far

    def first_time(self, key: tuple[int, int] | None) -> bool:
        """False for a file named as a source that was listed already (as a source or in a folder)."""
        if key is None or key not in self.named:
            return True
        if key in self.listed:
            return False
        self.listed.add(key)
        return True


def _walk(root: str, walk: _Walk) -> Iterator[SourceItem]:
    recursive, archive_depth = walk.recursive, walk.archive_depth
    try:
        st = os.stat(root)
    except OSError as exc:
        yield SourceItem(text_name(root), f"cannot open folder: {exc.strerror or exc}")
        return
    key = (st.st_dev, st.st_ino)
    if key in walk.folders:
        return  # listed already, under the path that reached it first
    walk.folders.add(key)
    try:
        with os.scandir(root) as it:
            entries = sorted(it, key=lambda e: e.name)
    except PermissionError:
        yield SourceItem(text_name(root), "cannot open folder: permission denied")
        return
    except OSError as exc:
        yield SourceItem(text_name(root), f"cannot open folder: {exc.strerror or exc}")
        return
    for e in entries:
        path = os.path.join(root, e.name)
        try:
            is_dir = e.is_dir()  # follows symlinks; a folder reached again is not walked again (_Walk)
            is_file = not is_dir and e.is_file()
        except OSError as exc:
            yield SourceItem(text_name(path), f"cannot stat: {exc.strerror or exc}")
            continue
        if is_dir:
            if recursive and not (e.is_symlink() and _inside(os.path.realpath(path), walk.roots)):
                yield from _walk(path, walk)
        elif is_file:
            if is_archive(path):
                if not walk.named or walk.first_time(file_identity(path)):
                    yield from _file_items(path, archive_depth)
            elif (os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS | VIDEO_EXTENSIONS
                  or _looks_like_image(path)):
                if not walk.named or walk.first_time(file_identity(path)):
                    yield SourceItem(text_name(path))
        elif e.is_symlink():
            yield SourceItem(text_name(path), "broken symbolic link")


def iter_sources(sources: str | os.PathLike | Iterable[str | os.PathLike], recursive: bool = True,
                 archive_depth: int = DEFAULT_ARCHIVE_DEPTH) -> Iterator[SourceItem]:
    """Yield a :class:`SourceItem` for every image file under ``sources``, lazily and in order.

    Files named explicitly are always yielded (whatever their extension); missing ones carry an error. Archives are
    read to ``archive_depth`` levels of nesting (1: archives inside archives are recorded, not read).

    Example:
        >>> items = list(iter_sources("photos/"))  # doctest: +SKIP
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    sources = [os.fspath(s) for s in sources]
    named = {key for p in sources if os.path.isfile(p) and (key := file_identity(p)) is not None}
    walk = _Walk([os.path.realpath(p) for p in sources if os.path.isdir(p)], named, recursive, archive_depth)
    for path in sources:
        if os.path.isdir(path):
            yield from _walk(path, walk)
        elif os.path.exists(path):
            if walk.first_time(file_identity(path)):  # not named twice, nor listed by a folder named before it
                yield from _file_items(path, archive_depth)
        else:
            yield SourceItem(text_name(path), "no such file or folder")
