"""What a published model card says about its training data: which set it was, how many rows each split held,
whether the set has subject ids, and under which terms the data (and so the weights) may be used.

Everything is read from the prepared file the run trained on (``agescan train prepare`` records the source labels,
every image's path and the detector), never assumed. A set is recognised by a folder name on its images' paths (or,
for files made by older versions that record neither, on the prepared file's own path): a folder named
``utkface...`` is UTKFace, ``morph...`` MORPH (:data:`KNOWN_SETS`). Both are non-commercial research data. For any
other set agescan cannot know the terms: ``agescan train publish`` then needs them stated (``--data-licence``) and
the card quotes them as stated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePath

import numpy as np

from agescan.errors import InputError


@dataclass(frozen=True)
class KnownSet:
    """A labelled set agescan knows: ``key`` names its metrics in cards (``utkface-val-clean``), ``folder`` the
    prefix of its folder's name, ``name`` how a card cites it, ``short`` how a licence line names it, ``terms``
    its terms of use, and ``fixed_split`` how a card names its own split (agescan made UTKFace's)."""

    key: str
    folder: str
    name: str
    short: str
    terms: str
    licence_terms: str
    fixed_split: str = "the split column of its labels.csv"


#: How a card names the split of labels other than a known set's own labels.csv.
OWN_SPLIT = "the split column of {source}"


KNOWN_SETS: dict[str, KnownSet] = {
    "utkface": KnownSet("utkface", "utkface", "UTKFace 'aligned & cropped' (Zhang, Song and Qi, CVPR 2017)", "UTKFace",
                        "Non-commercial research licence", "non-commercial research licence",
                        fixed_split="agescan's fixed split"),
    "morph": KnownSet("morph", "morph", "MORPH (an academic subset of the MORPH album of mugshots)", "MORPH",
                      "Academic MORPH subset: non-commercial research only",
                      "academic MORPH subset: non-commercial research only"),
}

#: How a card names the detector that found the prepared faces (others by their registered name).
DETECTOR_NAMES = {"mtcnn": "MTCNN"}

WEIGHTS_NC = "Weights: CC BY-NC 4.0-style non-commercial research use only, because they were trained on"
CODE = "agescan code: Apache-2.0."


def set_of_path(path: str) -> str:
    """The :data:`KNOWN_SETS` key of the set a file or folder path lies in ('' when none is recognised): the
    nearest folder (or file) name that is a known set's name, alone or followed by a digit or ``_-. ``
    (``utkface``, ``UTKFace``, ``morph_small``, ``MORPH2``; not ``morphology``)."""
    for part in PurePath(str(path)).parts[::-1]:
        for s in KNOWN_SETS.values():
            if re.match(rf"{s.folder}(?:[0-9_\-. ]|$)", part.lower()):
                return s.key
    return ""


def sets_of_paths(paths) -> list[str]:
    """The known sets of ``paths`` in the order first met, with '' once when some path lies in none of them."""
    found: list[str] = []
    folders: set[str] = set()
    for p in paths:
        folder = str(PurePath(str(p)).parent)
        if folder in folders:  # one decision per folder: a set of 20,000 images has a handful
            continue
        folders.add(folder)
        key = set_of_path(folder)
        if key not in found:
            found.append(key)
    return found


def _keys(d) -> list[str]:
    return list(d.files) if hasattr(d, "files") else list(d)


def prepared_sets(d, npz: str) -> list[str]:
    """The sets a prepared file's rows come from: by their images' paths (``image_path``), else by the labels it
    was made from (``source``), else by the prepared file's own path (files made before agescan recorded either)."""
    keys = _keys(d)
    if "image_path" in keys and len(d["image_path"]):
        return sets_of_paths(d["image_path"].tolist())
    if "source" in keys:
        return sets_of_paths([str(d["source"])])
    return [set_of_path(npz)]


def source_of(d, npz: str) -> str:
    """The labels a prepared file was made from (its ``source``), or the prepared file itself."""
    return str(d["source"]) if "source" in _keys(d) else str(npz)


def metric_key(data: str, ds=None) -> str:
    """The prefix of a card's metric names for the labelled set ``data`` that ``publish --data`` evaluates (``ds``:
    its rows, :class:`agescan.eval.datasets.Dataset`, when already read): a known set's key (``utkface``) when every
    image lies in it, else a slug of the set's name (``my-faces`` for ``my_faces.csv``)."""
    path = Path(data)
    found = sets_of_paths([str(r["file"]) for r in ds.rows]) if ds is not None else [set_of_path(str(path))]
    if len(found) == 1 and found[0]:
        return found[0]
    name = path.stem if path.suffix.lower() == ".csv" else path.resolve().name
    if name == "labels":
        name = path.resolve().parent.name
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "data"


def _names(sets: list[str], data_name: str, source: str) -> list[str]:
    return [KNOWN_SETS[s].short if s else (data_name or source) for s in sets]


def licence(sets: list[str], data_licence: str = "", data_name: str = "", source: str = "",
            require: bool = True) -> str:
    """The licence line of weights trained on ``sets`` (:func:`prepared_sets`): for known sets their terms
    (UTKFace alone gives the shipped models' line); a set agescan does not know needs ``data_licence``, the
    terms as the publisher states them (an :class:`InputError` saying so when ``require``; otherwise the line
    says they were not stated)."""
    known = [KNOWN_SETS[s] for s in sets if s]
    if not any(s == "" for s in sets):
        line = f"{WEIGHTS_NC} " + " and ".join(f"{s.short} ({s.licence_terms})" for s in known) + f". {CODE}"
        return line + (f" Terms stated by the publisher: {data_licence}." if data_licence else "")
    unknown = data_name or source or "an unnamed set"
    if not data_licence:
        if require:
            raise InputError(f"the training data ({unknown}) is not a set agescan knows the terms of (it knows "
                             f"{', '.join(s.short for s in KNOWN_SETS.values())}): state its licence or terms with "
                             "--data-licence TEXT (e.g. --data-licence 'CC BY 4.0'); the card quotes them.")
        stated = "whose licence or terms were not stated: find them out before any use of these weights"
    else:
        stated = f"whose licence or terms, as stated by the publisher, are: {data_licence}"
    parts = [f"{s.short} ({s.licence_terms})" for s in known]
    return (f"Weights: trained on {' and '.join(parts + [unknown])}, {stated}. The weights may be used only as "
            f"every set they were trained on allows. {CODE}")


def _count(n: int) -> str:
    return f"{n:,}"


def _protocol(cfg, sets: list[str], source: str, recorded: bool) -> str:
    if cfg.fold:
        i, _, k = cfg.fold.partition("/")
        by = f" by {cfg.fold_by} (subject-disjoint)" if cfg.fold_by else " by row"
        return f"fold {i} of a seeded {k}-fold partition{by} (fold seed {cfg.fold_seed}) held out"
    if cfg.holdout:
        return f"{cfg.holdout} held out"
    # a known set's own split: its labels.csv, or a prepared file too old to record its labels
    own_labels = not recorded or (Path(source).name == "labels.csv" and set_of_path(source) == sets[0])
    own = (KNOWN_SETS[sets[0]].fixed_split if len(sets) == 1 and sets[0] and own_labels
           else OWN_SPLIT.format(source=source))
    if cfg.val_share:
        return f"{own}, its train and val rows redrawn (a seeded {cfg.val_share:g} of them as val, --val-share)"
    return own


def _subjects(d, split: np.ndarray) -> str:
    if "subject" not in _keys(d) or (np.asarray(d["subject"]) == "").all():
        return "No subject ids: the same person may appear in several splits."
    subj = np.asarray(d["subject"]).astype(str)
    used = split != ""
    people = len(set(subj[used & (subj != "")].tolist()))
    sides = [set(subj[(split == s) & (subj != "")].tolist()) for s in ("train", "val", "test")]
    shared = (sides[0] & sides[1]) | (sides[0] & sides[2]) | (sides[1] & sides[2])
    if not shared:
        return f"Subject ids: {_count(people)} people, none of them in two splits."
    return f"Subject ids: {_count(people)} people, {_count(len(shared))} of them in more than one split."


def training_data(d, cfg, split: np.ndarray, sets: list[str], *, data_name: str = "", data_licence: str = "",
                  npz: str = "") -> str:
    """The card's training-data sentence for a run of ``cfg`` on the prepared rows ``d`` split as ``split``
    (:func:`agescan.train.loop.protocol_split`): the set, the protocol, the real row count of each split, the
    terms, the detector that found the faces, and subject ids. For UTKFace's full fixed split it is the text the
    shipped models' cards carry."""
    source = source_of(d, npz or cfg.data)
    names = [KNOWN_SETS[s].name if s else (data_name or source) for s in sets]
    n = {s: int((split == s).sum()) for s in ("train", "val", "test")}
    rows = f"trained on train ({_count(n['train'])}), selected on val ({_count(n['val'])})"
    if cfg.fold or cfg.holdout:
        rows += f", held out ({_count(n['test'])})"
    elif n["test"]:
        rows += f", reported on test ({_count(n['test'])})"
    terms = [KNOWN_SETS[s].terms for s in sets if s]
    if any(s == "" for s in sets):
        terms.append(f"{data_name or source}: licence or terms as stated by the publisher: {data_licence}"
                     if data_licence else f"{data_name or source}: licence or terms not stated")
    detector = str(d["detector"]) if "detector" in _keys(d) else "mtcnn"
    recorded = "source" in _keys(d)
    protocol = _protocol(cfg, sets, source, recorded)
    return (f"{' and '.join(names)}, {protocol}: {rows}. {'; '.join(terms)}; faces re-detected with "
            f"{DETECTOR_NAMES.get(detector, detector)} and re-aligned with agescan's own aligner. "
            f"{_subjects(d, split)}")
