"""Zip and tar archives read in place: members listed and read without extracting anything to disk.

A member's source id is ``ARCHIVE::MEMBER``. Members are taken by image extension, or by an image signature in
their first bytes (renamed files are found, as in folders), in sorted order. An archive inside an archive is read
in place too, from memory, to ``max_depth`` archive levels (the outer file is level 1): its members are
``OUTER::INNER::MEMBER``. Whatever is found but not read becomes an item with the reason, never a silent gap: an
archive nested deeper than ``max_depth``, a nested archive that cannot be opened or declares more than
``max_bytes``, a video inside an archive (OpenCV reads videos from files only; extract it and scan the file).

Zip and tar both allow several entries with the same name (an appended tar, a zip written twice): none is
dropped. The first keeps its name; the k-th (in the archive's order) is ``NAME [k]`` in its source id, the id
:func:`read_member` and :func:`load_source` read it back by.

A member whose declared size exceeds ``max_bytes`` is refused before it is read (zip-bomb guard); decoded images
still pass the pixel-count guard of :mod:`agescan.io.image`.
"""

from __future__ import annotations

import io
import os
import tarfile
import threading
import zipfile
from collections import OrderedDict
from typing import Iterator

from agescan.errors import DecodeError
from agescan.io.image import DEFAULT_MAX_PIXELS, LoadedImage, decode_bytes, has_image_signature, load_image
from agescan.io.names import os_name, printable, text_name

SEP = "::"
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
#: Largest archive member read (a photo or a frame is far smaller; anything bigger is suspicious). A nested archive
#: is a member too: it is read into memory, so this also bounds the memory one nested archive takes.
DEFAULT_MAX_MEMBER_BYTES = 512 * 1024 * 1024
#: Archive levels opened: 1 = archives named or found in folders only; 3 = also a zip in a zip in a zip.
DEFAULT_ARCHIVE_DEPTH = 3
_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, tarfile.TarError, OSError, EOFError, ValueError,
           NotImplementedError, RuntimeError)
_HEAD = 16  # bytes read to recognise an image without an image extension


def is_archive(path: str) -> bool:
    """True for the archive file names agescan opens (by suffix)."""
    return path.lower().endswith(ARCHIVE_SUFFIXES)


class _Archive:
    """An open zip or tar archive (a file on disk, or a nested archive's bytes in memory) with O(1) member lookup."""

    def __init__(self, name: str, data: bytes | None = None):
        src = name if data is None else io.BytesIO(data)
        if name.lower().endswith(".zip"):
            self.arc = zipfile.ZipFile(src)
            entries = [(i.filename, i) for i in self.arc.infolist() if not i.is_dir()]
        else:
            # ignore_zeros: archives concatenated one after the other (cat a.tar b.tar) are read whole, as `tar -i`
            self.arc = (tarfile.open(name, "r:*", ignore_zeros=True) if data is None
                        else tarfile.open(fileobj=src, mode="r:*", ignore_zeros=True))
            entries = [(m.name, m) for m in self._tar_members() if m.isfile()]
        self._info, self._names = {}, {}  # member id -> entry, member id -> the name the archive gives it
        self.by_name: dict[str, str] = {}  # the name the archive gives an entry -> its id (the first of a name)
        for member_id, (name_, info) in zip(member_ids([text_name(n) for n, _ in entries]), entries):
            self._info[member_id], self._names[member_id] = info, name_
            self.by_name.setdefault(name_, member_id)

    #: why members after the last one listed may be missing (a tar cut short or damaged), or ""
    damage = ""

    def _tar_members(self) -> list[tarfile.TarInfo]:
        """The tar's members; of a tar cut short or damaged, those before the damage, with :attr:`damage` set."""
        try:
            members = self.arc.getmembers()
        except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
            members = list(self.arc.members)
            if not members:
                raise
            self.damage = (f"archive cut short or damaged after its member {members[-1].name!r} ({exc}): anything "
                           f"after it could not be read")
            return members
        raw = self.arc.fileobj
        if members and isinstance(raw, (io.BufferedReader, io.BytesIO)):  # not compressed: look for the end marker
            last = members[-1]
            raw.seek(last.offset_data + -(-last.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE)
            tail = raw.read(tarfile.BLOCKSIZE)
            if len(tail) < tarfile.BLOCKSIZE or any(tail):
                self.damage = (f"archive ends without tar's end-of-archive marker after its member "
                               f"{members[-1].name!r}: it was cut short, and members after that one may be missing")
        return members

    def members(self) -> list[tuple[str, int]]:
        """(member id, declared size) of every regular file, sorted by id (the id is its name, or ``NAME [k]`` for
        the k-th entry of a repeated name)."""
        return sorted((n, i.file_size if isinstance(self.arc, zipfile.ZipFile) else i.size)
                      for n, i in self._info.items())

    def name(self, member_id: str) -> str:
        """The name the archive gives the member (its extension says what it is)."""
        return self._names[member_id]

    def __contains__(self, name: str) -> bool:
        return name in self._info

    def read(self, name: str, label: str, max_bytes: int, limit: int | None = None) -> bytes:
        """The member's bytes (or its first ``limit`` bytes), refusing one that declares or inflates past
        ``max_bytes``."""
        info = self._info.get(name)
        if info is None:
            raise DecodeError(f"{label}: no such member in the archive.")
        size = info.file_size if isinstance(self.arc, zipfile.ZipFile) else info.size
        if size > max_bytes:
            raise DecodeError(f"{label}: member declares {size:,} bytes, more than the limit of {max_bytes:,} "
                              f"(zip-bomb guard).")
        fh = self.arc.open(info) if isinstance(self.arc, zipfile.ZipFile) else self.arc.extractfile(info)
        if fh is None:
            raise DecodeError(f"{label}: not a regular file.")
        with fh:
            data = fh.read(limit if limit is not None else max_bytes + 1)
        if limit is None and len(data) > max_bytes:
            raise DecodeError(f"{label}: member inflates past {max_bytes:,} bytes (zip-bomb guard).")
        return data

    def close(self) -> None:
        self.arc.close()


def member_ids(names: list[str]) -> list[str]:
    """One id per archive entry, in order: the entry's name (as text: :func:`~agescan.io.names.text_name`), or for
    the k-th entry of a name that repeats
    ``NAME [k]`` (more `` [k]`` while that is the name of another entry), so that no entry hides another."""
    taken, seen, out = set(names), {}, []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        member_id = name
        if seen[name] > 1:
            member_id = f"{name} [{seen[name]}]"
            while member_id in taken:
                member_id = f"{member_id} [{seen[name]}]"
            taken.add(member_id)
        out.append(member_id)
    return out


def list_members(path: str) -> list[tuple[str, int]]:
    """(name, declared size) of every regular file in the archive, sorted by name."""
    arc = _Archive(path)
    try:
        return arc.members()
    finally:
        arc.close()


class _Handles(threading.local):
    """A few open archives per thread (files, and nested archives held in memory), so reading many members does
    not reparse an archive, or re-inflate a nested one, for each member."""

    def __init__(self):
        self.open: OrderedDict[str, _Archive] = OrderedDict()

    def get(self, key: str, make) -> _Archive:
        arc = self.open.pop(key, None) or make()
        self.open[key] = arc
        while len(self.open) > 4:
            self.open.popitem(last=False)[1].close()
        return arc

    def drop(self, prefix: str) -> None:
        for key in [k for k in self.open if k == prefix or k.startswith(prefix + SEP)]:
            self.open.pop(key).close()


_HANDLES = _Handles()


def read_member(archive: str, member: str, max_bytes: int = DEFAULT_MAX_MEMBER_BYTES, *,
                limit: int | None = None) -> bytes:
    """The bytes of one archive member (its first ``limit`` bytes when given), or :class:`DecodeError` saying why
    not.

    ``member`` may name a member of a nested archive, ``INNER::MEMBER`` (any depth): each nested archive on the way
    is read from its parent into memory (with the same size guard) and kept open for the next member.
    """
    label = f"{archive}{SEP}{member}"
    key, rest = archive, member
    try:
        arc = _HANDLES.get(key, lambda: _Archive(os_name(archive)))
        # An id's "::" separates an archive from its member (agescan.io.names escapes a "::" inside a name); an id
        # written before that escape may hold a name with "::": the longest name the archive holds wins.
        while rest not in arc:
            inner, sep, after = rest.partition(SEP)
            if not sep or inner not in arc:
                raise DecodeError(f"{label}: no such member in the archive.")
            parent, key = arc, key + SEP + inner
            arc = _HANDLES.get(key, lambda: _Archive(parent.name(inner), parent.read(inner, key, max_bytes)))
            rest = after
        return arc.read(rest, label, max_bytes, limit=limit)
    except DecodeError:
        raise
    except _ERRORS as exc:
        _HANDLES.drop(archive)  # a broken handle is not reused
        raise DecodeError(f"{label}: cannot read archive member ({exc}).") from exc


def _read_legacy(arc: _Archive, rest: str, label: str, max_bytes: int) -> bytes:
    """A member by the id an agescan from before 2026-11-30 wrote (the names as they are, ``::`` between nested
    archives, a name that holds ``::`` possible): the longest name the archive holds wins."""
    if rest in arc.by_name:
        return arc.read(arc.by_name[rest], label, max_bytes)
    cuts = [i for i in range(len(rest)) if rest.startswith(SEP, i)]
    for i in reversed(cuts):
        inner_id = arc.by_name.get(rest[:i])
        if inner_id is not None and is_archive(rest[:i]):
            inner = _Archive(rest[:i], arc.read(inner_id, label, max_bytes))
            try:
                return _read_legacy(inner, rest[i + len(SEP):], label, max_bytes)
            finally:
                inner.close()
    raise DecodeError(f"{label}: no such member in the archive.")


def _archive_prefix(source_id: str, to_path=os_name) -> tuple[str, str] | None:
    """(archive, member) of ``source_id``: the shortest prefix before a ``::`` whose file system name (``to_path``
    of it) is an archive file, and what follows; None when there is none."""
    start = 0
    while (i := source_id.find(SEP, start)) >= 0:
        head = source_id[:i]
        if is_archive(head) and os.path.isfile(to_path(head)):
            return head, source_id[i + len(SEP):]
        start = i + 1
    return None


def _legacy_bytes(source_id: str) -> bytes:
    """An item's bytes by the id an agescan from before 2026-11-30 wrote (every name as it was): a file, or the
    shortest prefix before a ``::`` that is an archive file, then its member (:func:`_read_legacy`)."""
    if os.path.isfile(source_id):  # an old id of a name holding a backslash
        with open(source_id, "rb") as fh:
            return fh.read()
    found = _archive_prefix(source_id, to_path=str)
    if found is None:
        raise DecodeError(f"{source_id}: no such file.")
    arc = _Archive(found[0])
    try:
        return _read_legacy(arc, found[1], source_id, DEFAULT_MAX_MEMBER_BYTES)
    except _ERRORS as exc:
        raise DecodeError(f"{source_id}: cannot read archive member ({exc}).") from exc
    finally:
        arc.close()


def split_source(source_id: str) -> tuple[str, str]:
    """(archive, member) of an archive member's source id, or (``source_id``, "") for a file. The archive is the
    shortest prefix before a ``::`` that is an archive file (an id escapes the ``::`` of a name, so its first
    ``::`` is the one; an id written before that escape may hold a folder named with ``::``)."""
    return (_archive_prefix(source_id) if SEP in source_id else None) or (source_id, "")


def source_bytes(source_id: str) -> bytes:
    """The bytes of a scanned file or archive member by its source id (one written before 2026-11-30 too)."""
    try:
        archive, member = split_source(source_id)
        if member:
            return read_member(archive, member)
        with open(os_name(source_id), "rb") as fh:
            return fh.read()
    except (DecodeError, OSError) as exc:
        try:
            return _legacy_bytes(source_id)
        except (DecodeError, OSError):
            raise DecodeError(f"{source_id}: cannot be read again ({exc}).") from None


def load_source(source_id: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode a scanned item again by its source id: a file path or ``ARCHIVE::MEMBER`` (``::INNER::MEMBER``...);
    an id written by an agescan from before 2026-11-30 is read too (:func:`agescan.io.names.legacy_id`)."""
    try:
        archive, member = split_source(source_id)
        if member:
            return decode_bytes(read_member(archive, member), source_id, max_pixels=max_pixels)
        return load_image(os_name(source_id), max_pixels=max_pixels)
    except DecodeError as exc:
        if "\\" not in source_id and SEP not in source_id:
            raise
        try:
            if os.path.isfile(source_id):
                return load_image(source_id, max_pixels=max_pixels)
            return decode_bytes(_legacy_bytes(source_id), source_id, max_pixels=max_pixels)
        except DecodeError:
            raise exc from None


def iter_archive(path: str, max_depth: int = DEFAULT_ARCHIVE_DEPTH,
                 max_bytes: int = DEFAULT_MAX_MEMBER_BYTES) -> Iterator[tuple[str, str, str]]:
    """(source id, member, error) for every image member of an archive and of the archives inside it, to
    ``max_depth`` levels; ``member`` is ``INNER::MEMBER`` for a nested one. An archive that cannot be read is one
    row with an empty member and the error; so is anything found but not read (see the module's docstring)."""
    sid = text_name(path)
    try:
        arc = _Archive(path)
    except _ERRORS as exc:
        yield sid, "", printable(f"cannot read archive: {exc}")
        return
    try:
        yield from _walk_archive(arc, sid, "", 1, max_depth, max_bytes)
    finally:
        arc.close()


def _walk_archive(arc: _Archive, sid: str, chain: str, depth: int, max_depth: int,
                  max_bytes: int) -> Iterator[tuple[str, str, str]]:
    from agescan.io.sources import IMAGE_EXTENSIONS
    from agescan.io.video import VIDEO_EXTENSIONS

    for name, _size in arc.members():
        member, member_sid = f"{chain}{name}", f"{sid}{SEP}{name}"
        real = arc.name(name)  # the id of a repeated name has a suffix: its kind is read from the name
        ext = os.path.splitext(real)[1].lower()
        if is_archive(real):
            if depth >= max_depth:
                yield member_sid, "", (f"archive nested {depth + 1} levels deep: not read (archives are read to "
                                       f"{max_depth} levels; raise --archive-depth to read it)")
                continue
            try:
                inner = _Archive(real, arc.read(name, member_sid, max_bytes))
            except DecodeError as exc:
                yield member_sid, "", f"nested archive not read: {str(exc).removeprefix(member_sid + ': ')}"
                continue
            except _ERRORS as exc:
                yield member_sid, "", f"cannot read nested archive: {exc}"
                continue
            try:
                yield from _walk_archive(inner, member_sid, member + SEP, depth + 1, max_depth, max_bytes)
            finally:
                inner.close()
        elif ext in VIDEO_EXTENSIONS:
            yield member_sid, "", "video inside an archive: not read (videos are read from files; extract it and " \
                                  "scan the file)"
        elif ext in IMAGE_EXTENSIONS:
            yield member_sid, member, ""
        else:
            try:
                head = arc.read(name, member_sid, max_bytes, limit=_HEAD)
            except (DecodeError, *_ERRORS):
                continue  # not an image by name; an unreadable head cannot show it is one either
            if has_image_signature(head):
                yield member_sid, member, ""
    if arc.damage:  # what could not be listed is recorded, never a silent gap
        yield sid, "", printable(arc.damage)
