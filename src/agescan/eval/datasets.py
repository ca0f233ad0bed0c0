"""Labelled face sets for evaluation: any CSV of paths and ages, or a folder whose names carry the ages.

Three layouts are read:

- a CSV (``labels.csv`` in the folder, or ``--labels FILE``) with a path column and an age column (names
  configurable); paths are relative to the CSV's folder or absolute; any other columns (split, gender,
  race, subject, ...) are kept for splits, slices and leave-one-group-out;
- a folder of age sub-folders: ``DATA/7/img.jpg`` is 7 years old;
- a folder of files whose names start with the age, UTKFace style: ``25_0_1_20170116.jpg`` is 25.

A row whose age cannot be read is an error naming the file and row, never silently dropped; in a folder
without a CSV, files with no age in their path are counted (``unlabelled``) and left out.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from agescan.errors import ConfigError
from agescan.io import IMAGE_EXTENSIONS

_LEADING_AGE = re.compile(r"^(\d{1,3})(?:[_\-. ]|$)")


@dataclass
class Dataset:
    """Rows (each with ``path`` as given, ``file`` to open, ``age`` as float, and every other column) and
    how they were read."""

    rows: list[dict]
    source: str
    split: str
    unlabelled: int = 0
    columns: list[str] = field(default_factory=list)


def _age_from_path(path: Path, root: Path) -> float | None:
    parent = path.parent
    if parent != root and parent.name.isdigit():
        return float(parent.name)
    m = _LEADING_AGE.match(path.stem)
    return float(m.group(1)) if m else None


def _read_csv(labels: Path, root: Path, path_column: str, age_column: str) -> tuple[list[dict], list[str]]:
    try:
        with open(labels, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = list(reader.fieldnames or [])
            missing = [c for c in (path_column, age_column) if c not in columns]
            if missing:
                raise ConfigError(f"{labels}: no column {', '.join(map(repr, missing))} (columns: {columns}). "
                                  "Name them with --path-column and --age-column.")
            rows = []
            for line, r in enumerate(reader, start=2):
                try:
                    age = float(r[age_column])
                except (TypeError, ValueError):
                    raise ConfigError(f"{labels}, line {line}: age {r[age_column]!r} of {r[path_column]!r} is not "
                                      "a number. Fix or remove the row.") from None
                p = Path(r[path_column])
                rows.append({**r, "path": r[path_column], "age": age, "file": p if p.is_absolute() else root / p})
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{labels}: not UTF-8 text ({exc.reason}). Save the CSV as UTF-8.") from None
    return rows, columns


def read_dataset(data: str | Path, *, labels: str | Path | None = None, split: str = "test", limit: int = 0,
                 path_column: str = "path", age_column: str = "age", split_column: str = "split") -> Dataset:
    """The labelled rows of ``data`` (see the module doc), restricted to ``split`` when the set has a split
    column (``'all'``: every row; a set without a split column is used whole, and ``split`` says so)."""
    data = Path(data)
    labels_path = Path(labels) if labels else data / "labels.csv"
    root = data if data.is_dir() else labels_path.parent
    unlabelled = 0
    if labels_path.is_file():
        rows, columns = _read_csv(labels_path, root, path_column, age_column)
        source = str(labels_path)
    elif labels:
        raise ConfigError(f"{labels_path}: no such labels file.")
    elif data.is_dir():
        rows, columns = [], ["path", "age"]
        for f in sorted(p for p in data.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()):
            age = _age_from_path(f, data)
            if age is None:
                unlabelled += 1
                continue
            rows.append({"path": str(f.relative_to(data)), "age": age, "file": f})
        if not rows:
            raise ConfigError(f"{data}: no labels.csv and no image whose folder or file name starts with an age "
                              "(e.g. 7/img.jpg or 25_0_1_x.jpg). Give --labels FILE with path and age columns.")
        source = f"{data} (ages from folder and file names)"
    else:
        raise ConfigError(f"{data}: no such folder. Give a folder with labels.csv, age-named files or "
                          "sub-folders, or --labels FILE.")
    if split == "all":
        used = "all"
    elif split_column in columns:
        rows = [r for r in rows if r.get(split_column, "") == split]
        used = split
        if not rows:
            raise ConfigError(f"{source}: no rows with {split_column}={split!r}. Use --split VALUE or --split all.")
    else:
        used = f"all (no {split_column!r} column)"
    rows = rows[:limit] if limit else rows
    if not rows:
        raise ConfigError(f"{source}: no labelled rows.")
    return Dataset(rows=rows, source=source, split=used, unlabelled=unlabelled, columns=columns)
