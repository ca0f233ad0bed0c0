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

Most names hold none of these and are their own id. :func:`os_name` reads an id back into the name to open (an id
written by an agescan from before the second and third rules reads back the same way unless it held a
backslash followed by ``x``, ``u`` or another backslash). :func:`printable` makes any message text writable,
touching only its surrogates.
"""

from __future__ import annotations

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
