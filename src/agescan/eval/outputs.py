"""The files an evaluation writes, checked before it runs: never an input, never an existing file unless asked.

``agescan evaluate`` writes up to four kinds of output (``--out``, ``--predictions``, ``--markdown``, the PNGs of
``--plots``). :func:`check_outputs` refuses, with one :class:`~agescan.errors.InputError` naming the option and the
file, before any image is processed:

- an output that is one of the evaluation's inputs (the labels file, a listed image, the ``--compare`` baseline,
  the model file), whatever ``overwrite`` says: a report must never replace what it measured;
- an output that already exists, unless ``overwrite``;
- two options naming the same file, an output that is a folder, or one whose folder is a file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from agescan.errors import InputError
from agescan.io.sources import file_identity


def check_outputs(outputs: dict[str, str | os.PathLike], inputs: Iterable[tuple[str, str | os.PathLike]], *,
                  overwrite: bool = False) -> None:
    """Refuse outputs that cannot or must not be written (see the module doc); returns None when all can be.

    ``outputs``: label (e.g. ``'--out'``) -> file to be written. ``inputs``: (what it is, file) pairs, e.g.
    ``('the labels file', 'data/labels.csv')``; those that do not exist are ignored.
    """
    known: dict[tuple[int, int], str] = {}
    for what, path in inputs:
        ident = file_identity(path)
        if ident is not None:
            known.setdefault(ident, what)
    seen: dict[str, str] = {}
    for label, path in outputs.items():
        p = Path(path)
        key = os.path.normcase(os.path.abspath(p))
        if key in seen:
            raise InputError(f"{label} {p}: {seen[key]} names the same file; give each output its own name.")
        seen[key] = label
        if p.is_dir():
            raise InputError(f"{label} {p} is a folder; name a file.")
        ident = file_identity(p)
        if ident is not None and ident in known:
            raise InputError(f"{label} {p} is {known[ident]}, an input of this evaluation; it is never written "
                             "over (not even with --overwrite). Choose another name.")
        if ident is not None and not overwrite:
            raise InputError(f"{label} {p} exists; add --overwrite to replace it, or choose another name.")
        folder = p.absolute().parent
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        if not folder.is_dir():
            raise InputError(f"{label} {p}: {folder} is not a folder.")
