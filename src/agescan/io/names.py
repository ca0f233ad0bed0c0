"""File names as text: the source ids agescan records, and the file system names they are opened by.

POSIX file names are bytes. Python gives a name that is not valid UTF-8 (a Latin-1 ``caf\\xe9.jpg`` from an old
camera card, a tar member written on another system) as a ``str`` holding lone surrogates, which no UTF-8 writer
(SQLite, PostgreSQL, JSON, CSV, a terminal) accepts. A source id therefore writes each undecodable byte as
``\\xNN`` (and any other lone surrogate as ``\\uNNNN``): :func:`text_name`. Valid names are unchanged.
:func:`os_name` turns such an id back into the name to open: the id itself when a file has that name, else the
name with its ``\\xNN`` escapes decoded back into the bytes they stand for.
"""

from __future__ import annotations

import os
import re

_ESCAPED = re.compile(r"\\x([89a-fA-F][0-9a-fA-F])")


def text_name(name: str) -> str:
    """``name`` with each undecodable byte (a surrogate-escaped ``\\udcNN``) written ``\\xNN`` and any other lone
    surrogate ``\\uNNNN``: text every UTF-8 writer accepts. Names that are valid text are returned unchanged."""
    if not any(0xD800 <= ord(c) <= 0xDFFF for c in name):
        return name
    return "".join(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF
                   else f"\\u{ord(c):04x}" if 0xD800 <= ord(c) <= 0xDFFF else c for c in name)


def os_name(source_id: str) -> str:
    """The file system name a source id made by :func:`text_name` stands for: the id itself when something exists
    by that name (or it has no escape), else the id with its ``\\xNN`` escapes back as the bytes they were."""
    if "\\x" not in source_id or os.path.lexists(source_id):
        return source_id
    return _ESCAPED.sub(lambda m: chr(0xDC00 + int(m.group(1), 16)), source_id)
