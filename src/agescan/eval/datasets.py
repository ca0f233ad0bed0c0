"""Labelled face sets for evaluation: any CSV of paths and ages, or a folder whose names carry the ages.

Three layouts are read:

- a CSV (``labels.csv`` in the folder, or ``--labels FILE``) with a path column and an age column (names
  configurable); paths are relative to the CSV's folder or absolute; any other columns (split, gender,
  race, subject, ...) are kept for splits, slices and leave-one-group-out;
- a folder of age sub-folders: ``DATA/7/img.jpg`` is 7 years old;
- a folder of files whose names start with the age, UTKFace style: ``25_0_1_20170116.jpg`` is 25.

A CSV may give **age bins** instead of ages: with no age column but ``age_low`` and ``age_high`` columns (names
configurable; FairFace's layout, bounds inclusive, e.g. 3 and 9 for "3-9"), each row keeps both bounds and its
``age`` is the bin's middle; the set is then ``binned`` and evaluation reports bin metrics
(:func:`agescan.eval.metrics.binned_metrics`) instead of errors in years.

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
    #: rows carry ``age_low`` and ``age_high`` (inclusive bin bounds, floats) rather than exact ages
    binned: bool = False


def _age_from_path(path: Path, root: Path) -> float | None:
    parent = path.parent
    if parent != root and parent.name.isdigit():
        return float(parent.name)
    m = _LEADING_AGE.match(path.stem)
    return float(m.group(1)) if m else None


def _number(labels: Path, line: int, r: dict, column: str, path_column: str) -> float:
    try:
        return float(r[column])
    except (TypeError, ValueError):
        raise ConfigError(f"{labels}, line {line}: {column} {r[column]!r} of {r[path_column]!r} is not a number. "
                          "Fix or remove the row.") from None


def _read_csv(labels: Path, root: Path, path_column: str, age_column: str,
              bin_columns: tuple[str, str] = ("age_low", "age_high")) -> tuple[list[dict], list[str], bool]:
    low_column, high_column = bin_columns
    try:
        with open(labels, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = list(reader.fieldnames or [])
            binned = age_column not in columns and low_column in columns and high_column in columns
            needed = (path_column, low_column, high_column) if binned else (path_column, age_column)
            missing = [c for c in needed if c not in columns]
            if missing:
                raise ConfigError(f"{labels}: no column {', '.join(map(repr, missing))} (columns: {columns}). "
                                  "Name them with --path-column and --age-column (or give age bins as "
                                  f"{low_column!r} and {high_column!r} columns).")
            rows = []
            for line, r in enumerate(reader, start=2):
                p = Path(r[path_column])
                row = {**r, "path": r[path_column], "file": p if p.is_absolute() else root / p}
                if binned:
                    lo = _number(labels, line, r, low_column, path_column)
                    hi = _number(labels, line, r, high_column, path_column)
                    if hi < lo:
                        raise ConfigError(f"{labels}, line {line}: bin {lo:g}-{hi:g} of {r[path_column]!r} ends "
                                          "before it starts. Fix the row.")
                    row.update(age_low=lo, age_high=hi, age=(lo + hi) / 2)
                else:
                    row["age"] = _number(labels, line, r, age_column, path_column)
                rows.append(row)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{labels}: not UTF-8 text ({exc.reason}). Save the CSV as UTF-8.") from None
    return rows, columns, binned


def read_dataset(data: str | Path, *, labels: str | Path | None = None, split: str = "test", limit: int = 0,
                 path_column: str = "path", age_column: str = "age", split_column: str = "split",
                 bin_columns: tuple[str, str] = ("age_low", "age_high")) -> Dataset:
    """The labelled rows of ``data`` (see the module doc), restricted to ``split`` when the set has a split
    column (``'all'``: every row; a set without a split column is used whole, and ``split`` says so).
    ``bin_columns``: the inclusive bounds of age bins, read when the CSV has no ``age_column``."""
    data = Path(data)
    labels_path = Path(labels) if labels else data / "labels.csv"
    root = data if data.is_dir() else labels_path.parent
    unlabelled = 0
    binned = False
    if labels_path.is_file():
        rows, columns, binned = _read_csv(labels_path, root, path_column, age_column, bin_columns)
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
    return Dataset(rows=rows, source=source, split=used, unlabelled=unlabelled, columns=columns, binned=binned)
