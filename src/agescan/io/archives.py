"""Zip and tar archives read in place: members listed and read without extracting anything to disk.

A member's source id is ``ARCHIVE::MEMBER``. Members are taken by image extension, in sorted order;
nested archives are not opened. A member whose declared size exceeds ``max_bytes`` is refused before
it is read (zip-bomb guard); decoded images still pass the pixel-count guard of :mod:`agescan.io.image`.
"""

from __future__ import annotations

import os
import tarfile
import threading
import zipfile
from collections import OrderedDict
from typing import Iterator

from agescan.errors import DecodeError
from agescan.io.image import DEFAULT_MAX_PIXELS, LoadedImage, decode_bytes, load_image

SEP = "::"
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
#: Largest archive member read (a photo or a frame is far smaller; anything bigger is suspicious).
DEFAULT_MAX_MEMBER_BYTES = 512 * 1024 * 1024
_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, OSError, EOFError, ValueError,
           NotImplementedError, RuntimeError)


def is_archive(path: str) -> bool:
    """True for the archive file names agescan opens (by suffix)."""
    return path.lower().endswith(ARCHIVE_SUFFIXES)


def _open(path: str):
    if path.lower().endswith(".zip"):
        return zipfile.ZipFile(path)
    return tarfile.open(path, "r:*")


def list_members(path: str) -> list[tuple[str, int]]:
    """(name, declared size) of every regular file in the archive, sorted by name."""
    with _open(path) as arc:
        if isinstance(arc, zipfile.ZipFile):
            out = [(i.filename, i.file_size) for i in arc.infolist() if not i.is_dir()]
        else:
            out = [(m.name, m.size) for m in arc.getmembers() if m.isfile()]
    return sorted(out)


class _Handles(threading.local):
    """A few open archives per thread, so reading many members does not reparse the archive each time."""

    def __init__(self):
        self.open: OrderedDict[str, object] = OrderedDict()

    def get(self, path: str):
        arc = self.open.pop(path, None) or _open(path)
        self.open[path] = arc
        while len(self.open) > 4:
            self.open.popitem(last=False)[1].close()
        return arc


_HANDLES = _Handles()


def read_member(archive: str, member: str, max_bytes: int = DEFAULT_MAX_MEMBER_BYTES) -> bytes:
    """The bytes of one archive member, or :class:`DecodeError` saying why not."""
    label = f"{archive}{SEP}{member}"
    try:
        arc = _HANDLES.get(archive)
        if isinstance(arc, zipfile.ZipFile):
            size = arc.getinfo(member).file_size
            if size > max_bytes:
                raise DecodeError(f"{label}: member declares {size:,} bytes, more than the limit of {max_bytes:,} "
                                  f"(zip-bomb guard).")
            with arc.open(member) as fh:
                data = fh.read(max_bytes + 1)
        else:
            info = arc.getmember(member)
            if info.size > max_bytes:
                raise DecodeError(f"{label}: member declares {info.size:,} bytes, more than the limit of "
                                  f"{max_bytes:,} (zip-bomb guard).")
            fh = arc.extractfile(info)
            if fh is None:
                raise DecodeError(f"{label}: not a regular file.")
            data = fh.read(max_bytes + 1)
    except DecodeError:
        raise
    except KeyError as exc:
        raise DecodeError(f"{label}: no such member in the archive.") from exc
    except _ERRORS as exc:
        _HANDLES.open.pop(archive, None)  # a broken handle is not reused
        raise DecodeError(f"{label}: cannot read archive member ({exc}).") from exc
    if len(data) > max_bytes:
        raise DecodeError(f"{label}: member inflates past {max_bytes:,} bytes (zip-bomb guard).")
    return data


def load_source(source_id: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode a scanned item again by its source id: a file path or ``ARCHIVE::MEMBER``."""
    if SEP in source_id and not os.path.exists(source_id):
        archive, member = source_id.split(SEP, 1)
        return decode_bytes(read_member(archive, member), source_id, max_pixels=max_pixels)
    return load_image(source_id, max_pixels=max_pixels)


def iter_archive(path: str) -> Iterator[tuple[str, str, str]]:
    """(source id, member name, error) for every image member of an archive; one error row if unreadable."""
    from agescan.io.sources import IMAGE_EXTENSIONS

    try:
        members = list_members(path)
    except _ERRORS as exc:
        yield path, "", f"cannot read archive: {exc}"
        return
    for name, _size in members:
        if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
            yield f"{path}{SEP}{name}", name, ""
