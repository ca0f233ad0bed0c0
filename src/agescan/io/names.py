"""File names as text: the source ids agescan records, and the file system names they are opened by.

POSIX file names are bytes. Python gives a name that is not valid UTF-8 (a Latin-1 ``caf\\xe9.jpg`` from an old
camera card, a tar member written on another system) as a ``str`` holding lone surrogates, which no UTF-8 writer
(SQLite, PostgreSQL, JSON, CSV, a terminal) accepts. A source id is therefore written so that it is text, one id
names one file, and ``ARCHIVE::MEMBER`` can always be told apart from a name that holds ``::``
(:func:`text_name`):

- each byte that is not UTF-8 is written ``\\xNN`` (any other lone surrogate ``\\uNNNN``);
- a backslash is written ``\\\\`` (so that a file literally named ``caf\\xe9.jpg`` keeps an id of its own);
- in a name holding ``::``, each ``:`` is written ``\\x3a`` (so that ``::`` in an id only ever separates an
  archive from its member).

Most names hold none of these and are their own id. :func:`os_name` reads an id back into the name to open.
agescan before 2026-11-30 wrote every name as it was (:func:`legacy_id`): a resumed run matches an item by either id,
and :func:`fs_path` (like :func:`agescan.io.archives.load_source`) reads an old id back when the new reading names
nothing. :func:`printable` makes any message text writable, touching only its surrogates.
"""

from __future__ import annotations

import os
import re

_ESCAPE = re.compile(r"\\(?:\\|x([0-9a-fA-F]{2})|u([0-9a-fA-F]{4}))")


def _surrogate(c: str) -> str:
    o = ord(c)
    return f"\\x{o - 0xDC00:02x}" if 0xDC80 <= o <= 0xDCFF else f"\\u{o:04x}"


def text_name(name: str) -> str:
    """The source id of a file system path or an archive member's name (see the module's docstring)."""
    surrogates = any(0xD800 <= ord(c) <= 0xDFFF for c in name)
    if not surrogates and "\\" not in name and "::" not in name:
        return name
    out = "".join("\\\\" if c == "\\" else _surrogate(c) if 0xD800 <= ord(c) <= 0xDFFF else c for c in name)
    return out.replace(":", "\\x3a") if "::" in name else out


def os_name(source_id: str) -> str:
    """The file system name (or archive member name) a source id made by :func:`text_name` stands for."""
    if "\\" not in source_id:
        return source_id

    def back(m: re.Match) -> str:
        if m.group(1):
            b = int(m.group(1), 16)
            return chr(b) if b < 0x80 else chr(0xDC00 + b)  # a byte of a name that is not UTF-8
        if m.group(2):
            return chr(int(m.group(2), 16))
        return "\\"

    return _ESCAPE.sub(back, source_id)


def printable(text: str) -> str:
    """``text`` (a message that may quote a file name) with only its lone surrogates escaped: writable anywhere."""
    if not any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        return text
    return "".join(_surrogate(c) if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


def legacy_id(source_id: str) -> str:
    """The id agescan wrote for the same file before 2026-11-30: every name as it is, ``::`` between an archive and
    its member (equal to ``source_id`` for most names)."""
    if "\\" not in source_id:
        return source_id
    return "::".join(os_name(part) for part in source_id.split("::"))


def fs_path(source_id: str) -> str:
    """The file a file's id names: :func:`os_name`'s reading, or the id itself when only that exists (an id written
    before 2026-11-30 of a name holding a backslash)."""
    path = os_name(source_id)
    if path != source_id and not os.path.lexists(path) and os.path.lexists(source_id):
        return source_id
    return path
