"""Labelled face sets: one description read by ``agescan train prepare``, ``train fit`` (through its prepared
file), ``train cv`` and ``evaluate``: any CSV of paths and ages, or a folder whose names carry the ages.

Three layouts are read:

- a CSV (``labels.csv`` in the folder, or ``--labels FILE``) with a path column and an age column (names
  configurable); paths are relative to the data folder (the CSV's folder when DATA is the CSV) or absolute;
  optional columns: ``split`` (train/val/test), ``subject`` (one id per person: subject-disjoint folds),
  ``gender`` and a ``group`` column of the user's choice (slices, leave-one-group-out); any other columns
  are kept;
- a folder of age sub-folders: ``DATA/7/img.jpg`` is 7 years old;
- a folder of files whose names start with the age, UTKFace style: ``25_0_1_20170116.jpg`` is 25.

A CSV may give **age bins** instead of ages: with no age column but ``age_low`` and ``age_high`` columns (names
configurable; FairFace's layout, bounds inclusive, e.g. 3 and 9 for "3-9"), each row keeps both bounds and its
``age`` is the bin's middle; the set is then ``binned`` and evaluation reports bin metrics
(:func:`agescan.eval.metrics.binned_metrics`) instead of errors in years.

Presets name the columns of the sets agescan knows (:data:`PRESETS`: ``utkface``, ``morph``); a column a
preset or an option names that the CSV lacks is an error naming it. A row whose age (or bin bound) is not a
number, is not finite (``nan``, ``inf``) or is negative is an error naming the file and row, raised while the CSV is
read (before any image is opened), as is a bin that ends before it starts; a row with an empty age (or both bin
bounds empty), and in a folder without a CSV a file with no age in its
path, is counted (``unlabelled``) and left out, never silently.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from agescan.errors import ConfigError, InputError
from agescan.io import IMAGE_EXTENSIONS

_LEADING_AGE = re.compile(r"^(\d{1,3})(?:[_\-. ]|$)")


@dataclass
class Dataset:
    """Rows (each with ``path`` as given, ``file`` to open, ``age`` as float, and every other column; with a
    subject column also ``subject``) and how they were read (``unlabelled``: rows or files without an age,
    left out; ``unlabelled_examples``: the first few of them)."""

    rows: list[dict]
    source: str
    split: str
    unlabelled: int = 0
    columns: list[str] = field(default_factory=list)
    subject_column: str = ""
    unlabelled_examples: list[str] = field(default_factory=list)
    #: rows carry ``age_low`` and ``age_high`` (inclusive bin bounds, floats) rather than exact ages
    binned: bool = False
    #: the folder relative paths are read from (the data folder, or the CSV's folder when DATA is the CSV)
    root: str = ""

    def subjects(self) -> list[str]:
        """Each row's subject id ('' without a subject column)."""
        return [r.get("subject", "") for r in self.rows]


@dataclass(frozen=True)
class DatasetSpec:
    """How to read one labelled set (the options :func:`add_dataset_arguments` adds); see the module doc.

    ``subject_column``: '' = use a ``subject`` column when there is one; a name = that column, required.
    ``preset``: take the column names of a known set (:data:`PRESETS`) for the options left at their defaults.
    """

    data: str
    labels: str = ""
    path_column: str = "path"
    age_column: str = "age"
    split_column: str = "split"
    subject_column: str = ""
    gender_column: str = ""
    group_column: str = ""
    preset: str = ""

    def resolved(self) -> "DatasetSpec":
        """This spec with its preset's column names filled in where the options were left at their defaults."""
        if not self.preset:
            return self
        if self.preset not in PRESETS:
            raise ConfigError(f"The 'preset' parameter must be one of {sorted(PRESETS)}. Got {self.preset!r}.")
        defaults = DatasetSpec(data="")
        kw = {k: v for k, v in PRESETS[self.preset].items()
              if getattr(self, k) == getattr(defaults, k)}
        return DatasetSpec(**{**self.__dict__, **kw, "preset": ""})

    def read(self, split: str = "all", limit: int = 0, require: tuple[str, ...] = ()) -> "Dataset":
        """The rows of ``split`` (see :func:`read_dataset`); ``require``: roles ('subject', 'gender', 'group',
        'split') whose column must exist."""
        s = self.resolved()
        return read_dataset(s.data, labels=s.labels or None, split=split, limit=limit, path_column=s.path_column,
                            age_column=s.age_column, split_column=s.split_column,
                            subject_column=s.subject_column, gender_column=s.gender_column,
                            group_column=s.group_column, require=require)


#: Column names of the labelled sets agescan knows (``--preset NAME``); UTKFace: agescan's shared copy (path,
#: age, gender, race, split); MORPH: the public subset in shared/data/morph_small (path, age, gender, subject).
PRESETS: dict[str, dict] = {
    "utkface": {"path_column": "path", "age_column": "age", "split_column": "split", "gender_column": "gender",
                "group_column": "race"},
    "morph": {"path_column": "path", "age_column": "age", "subject_column": "subject", "gender_column": "gender"},
}


def add_preset_argument(p) -> None:
    """``--preset``: the column names of a known set (:data:`PRESETS`); options given explicitly win."""
    p.add_argument("--preset", default="", choices=["", *sorted(PRESETS)],
                   help="column names of a known set: " + "; ".join(
                       f"{k}: {', '.join(v[c] for c in v if c != 'path_column')}" for k, v in PRESETS.items())
                   + " (options given explicitly win)")


def add_dataset_arguments(p, *, data_help: str = "folder with labels.csv, a CSV, or age-named sub-folders or "
                                                  "files") -> None:
    """The dataset options shared by ``agescan evaluate``, ``train prepare`` and ``train cv``."""
    p.add_argument("data", help=data_help)
    p.add_argument("--labels", metavar="CSV", default="",
                   help="labels file (default: DATA/labels.csv); paths relative to DATA")
    add_preset_argument(p)
    p.add_argument("--path-column", default="path", help="column of image paths (default: path)")
    p.add_argument("--age-column", default="age", help="column of true ages (default: age)")
    p.add_argument("--split-column", default="split",
                   help="column of split names train/val/test (default: split; optional)")
    p.add_argument("--subject-column", default="",
                   help="column of subject (person) ids for subject-disjoint folds (default: 'subject' when present)")
    p.add_argument("--gender-column", default="", help="column of gender (default: 'gender' when present)")
    p.add_argument("--group-column", default="",
                   help="column of groups for slices and leave-one-group-out (e.g. race)")


def spec_from_args(a) -> DatasetSpec:
    """The :class:`DatasetSpec` of parsed :func:`add_dataset_arguments` options."""
    return DatasetSpec(data=str(a.data), labels=a.labels or "", path_column=a.path_column, age_column=a.age_column,
                       split_column=a.split_column, subject_column=a.subject_column,
                       gender_column=a.gender_column, group_column=a.group_column, preset=a.preset)


def _age_from_path(path: Path, root: Path) -> float | None:
    parent = path.parent
    if parent != root and parent.name.isdigit():
        return float(parent.name)
    m = _LEADING_AGE.match(path.stem)
    return float(m.group(1)) if m else None


def _number(labels: Path, line: int, r: dict, column: str, path_column: str) -> float:
    """The age (or bin bound) in ``column`` of CSV row ``r``: a finite number of years, 0 or more; ConfigError naming
    the file, the line and the value otherwise (``nan``, ``inf`` and ``-5`` parse as floats but are no age)."""
    try:
        value = float(r[column])
    except (TypeError, ValueError):
        raise ConfigError(f"{labels}, line {line}: {column} {r[column]!r} of {r[path_column]!r} is not a number. "
                          "Fix or remove the row.") from None
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{labels}, line {line}: {column} {r[column]!r} of {r[path_column]!r} is not an age (a "
                          "finite number of years, 0 or more). Fix the row, or leave it empty to leave the row "
                          "out.")
    return value


def _read_csv(labels: Path, root: Path, path_column: str, age_column: str, skipped: list[str],
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
                    if not (r.get(low_column) or "").strip() and not (r.get(high_column) or "").strip():
                        skipped.append(f"line {line}: {r.get(path_column)!r}")  # no bin: counted, reported, left out
                        continue
                    lo = _number(labels, line, r, low_column, path_column)
                    hi = _number(labels, line, r, high_column, path_column)
                    if hi < lo:
                        raise ConfigError(f"{labels}, line {line}: bin {lo:g}-{hi:g} of {r[path_column]!r} ends "
                                          "before it starts. Fix the row.")
                    row.update(age_low=lo, age_high=hi, age=(lo + hi) / 2)
                else:
                    if (r.get(age_column) or "").strip() == "":
                        skipped.append(f"line {line}: {r.get(path_column)!r}")  # no age: counted, reported, left out
                        continue
                    row["age"] = _number(labels, line, r, age_column, path_column)
                rows.append(row)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{labels}: not UTF-8 text ({exc.reason}). Save the CSV as UTF-8.") from None
    return rows, columns, binned


def read_dataset(data: str | Path, *, labels: str | Path | None = None, split: str = "test", limit: int = 0,
                 path_column: str = "path", age_column: str = "age", split_column: str = "split",
                 subject_column: str = "", gender_column: str = "", group_column: str = "",
                 require: tuple[str, ...] = (), bin_columns: tuple[str, str] = ("age_low", "age_high")) -> Dataset:
    """The labelled rows of ``data`` (see the module doc), restricted to ``split`` when the set has a split
    column (``'all'``: every row; a set without a split column is used whole, and ``split`` says so).

    ``subject_column`` / ``gender_column`` / ``group_column``: a named column must exist (ConfigError naming it);
    left empty, ``subject`` and ``gender`` are used when present. Each row gets ``subject``, ``gender`` and
    ``group`` keys ('' when the set has no such column). ``require``: roles among 'subject', 'gender', 'group'
    and 'split' whose column must exist (the protocol needs them). ``bin_columns``: the inclusive bounds of age
    bins, read when the CSV has no ``age_column``. ``limit``: the first ``limit`` rows of the split (0: all; a
    negative one is an InputError)."""
    if limit < 0:
        raise InputError(f"The 'limit' parameter must be 0 (every row) or a positive number of rows. Got {limit}.")
    data = Path(data)
    if labels is None and data.is_file() and data.suffix.lower() == ".csv":
        labels = data  # DATA given as the CSV itself
    labels_path = Path(labels) if labels else data / "labels.csv"
    root = data if data.is_dir() else labels_path.parent
    unlabelled = 0
    skipped: list[str] = []
    binned = False
    if labels_path.is_file():
        rows, columns, binned = _read_csv(labels_path, root, path_column, age_column, skipped, bin_columns)
        unlabelled = len(skipped)
        source = str(labels_path)
        roles = {"subject": subject_column, "gender": gender_column, "group": group_column}
        options = {"subject": "--subject-column", "gender": "--gender-column", "group": "--group-column"}
        for role, col in roles.items():
            if col and col not in columns:
                raise ConfigError(f"{labels_path}: no column {col!r} for the {role} ({options[role]}); the columns "
                                  f"are {columns}. Name the right one with {options[role]}.")
        roles = {k: (v or (k if k in ("subject", "gender") and k in columns else "")) for k, v in roles.items()}
        for role in require:
            col = split_column if role == "split" else roles.get(role, "")
            if not col or col not in columns:
                wanted = col or role
                raise ConfigError(f"{labels_path}: no column {wanted!r} for the {role}, which this protocol needs; "
                                  f"the columns are {columns}. Add it, or name it with --{role}-column.")
        for r in rows:
            for role, col in roles.items():
                r[role] = (r.get(col) or "").strip() if col else ""
        subject_column = roles["subject"]
    elif labels:
        raise ConfigError(f"{labels_path}: no such labels file.")
    elif data.is_dir():
        rows, columns = [], ["path", "age"]
        for f in sorted(p for p in data.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()):
            age = _age_from_path(f, data)
            if age is None:
                unlabelled += 1
                skipped.append(str(f.relative_to(data)))
                continue
            rows.append({"path": str(f.relative_to(data)), "age": age, "file": f, "subject": "", "gender": "",
                         "group": ""})
        if require:
            raise ConfigError(f"{data}: ages from file names carry no {', '.join(require)} column, which this "
                              "protocol needs. Give a labels CSV with those columns (--labels FILE).")
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
    return Dataset(rows=rows, source=source, split=used, unlabelled=unlabelled, columns=columns,
                   subject_column=subject_column, unlabelled_examples=skipped[:5], binned=binned, root=str(root))


def unreadable_files(rows: list[dict]) -> dict[str, list[str]]:
    """The rows' ``path`` of each file that cannot be read, by reason: ``empty`` (no path at all),
    ``missing`` (no such file), ``folder``, and ``not a picture`` (its header is no image format Pillow reads: an
    empty file, a CSV, ...). Only headers are read; a picture damaged further in fails when it is decoded."""
    from PIL import Image, UnidentifiedImageError

    out: dict[str, list[str]] = {"empty": [], "missing": [], "folder": [], "not a picture": []}
    for r in rows:
        f = Path(r["file"])
        if not str(r["path"]).strip():
            out["empty"].append(r["path"])
        elif not f.exists():
            out["missing"].append(r["path"])
        elif not f.is_file():
            out["folder"].append(r["path"])
        else:
            try:
                with Image.open(f):
                    pass
            except Image.DecompressionBombError:
                pass  # a picture, refused or not by the reader's own pixel limit
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
                out["not a picture"].append(r["path"])
    return {k: v for k, v in out.items() if v}


def check_files(ds: Dataset) -> None:
    """ConfigError when any listed image is missing, a folder or not a picture (:func:`unreadable_files`), with the
    count and the first few of each kind: raised before any image is processed, never after a long run."""
    bad = unreadable_files(ds.rows)
    if not bad:
        return
    said = {"empty": ("has an empty path", "have an empty path"), "missing": ("does not exist", "do not exist"),
            "folder": ("is a folder", "are folders"), "not a picture": ("is not a picture", "are not pictures")}
    parts = "; ".join(f"{len(v)} {said[k][len(v) > 1]}" + ("" if k == "empty" else
                                                            f" (first: {', '.join(map(repr, v[:3]))})")
                      for k, v in bad.items())
    n = sum(map(len, bad.values()))
    raise ConfigError(f"{ds.source}: {n} of {len(ds.rows)} listed images cannot be read: {parts}. Fix the paths "
                      f"(relative to {ds.root or '.'}) or remove those rows.")
