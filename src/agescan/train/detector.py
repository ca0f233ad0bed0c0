"""Fine-tune a YuNet-family face detector on agescan's training scenes, export it with its card.

    agescan train detector ../shared/data/utkface runs/det/yunet-band --init ../shared/models/detectors/yunet/yunet_s.pth

Targets are assigned as the authors train YuNet (YOLOX's SimOTA: candidates inside a face box or within 2.5 strides
of its centre, a cost of classification and IoU, a dynamic number of points per face); losses: objectness (BCE on
every point), class score (BCE towards the IoU of the predicted box, on assigned points), box (DIoU, weight 5) and
landmarks (smooth L1 in stride units, weight 0.1), each summed and divided by the number of assigned points.

Every ``--eval-every`` steps the network is exported to ONNX with a card and measured *through the inference
detector* (:class:`agescan.detect.yunet.YuNetDetector`) at several score thresholds on UTKFace **val** chips, clean
and with the eye band (placed by the reference detector, as in ``agescan evaluate``), and on face-free synthetic
backgrounds (benchmarks/detection.py's recipe, another seed) for false detections. ``best.onnx`` is the step and
threshold (:func:`choose`) with the highest banded recall whose clean recall stays within ``--max-clean-drop`` of
the starting weights' and whose false detections per background are at most ``--max-false``; the threshold goes
into its card.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from agescan.train import detector_data as dd
from agescan.train.yunet import STRIDES, YuNet, export, load_checkpoint


@dataclass
class DetTrainConfig:
    data: str
    out: str
    init: str = ""
    teacher: str = "yunet-s.wider"
    teacher_threshold: float = 0.5
    landmark_teacher: str = ""
    morph: str = ""
    steps: int = 3000
    batch_size: int = 16
    size: int = 320
    lr: float = 1e-3
    weight_decay: float = 5e-4
    warmup: int = 100
    occlusion: float = 0.5
    min_face: float = 10.0
    max_face: float = 280.0
    eval_every: int = 500
    eval_chips: int = 600
    eval_backgrounds: int = 80
    eval_scenes: int = 60
    min_face_px: float = 12.0
    freeze: int = 0
    l2sp: float = 0.0
    mix: str = "0.5,0.22,0.12,0.16"
    text: float = 0.4
    blobs: float = 0.25
    text_scale_max: float = 6.0
    pebbles: int = 1
    scene_bars: float = 0.3
    bar_text: int = 1
    max_clean_drop: float = 0.005
    max_false: float = 0.05
    threads: int = 1
    workers: int = 1
    seed: int = 0


# -- target assignment and losses -------------------------------------------------------------------------
def grid_points(size_h: int, size_w: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, 2) grid points (x, y in pixels; offset 0 like the authors') and (P,) strides, levels in order."""
    pts, strides = [], []
    for s in STRIDES:
        h, w = size_h // s, size_w // s
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        pts.append(torch.stack([xs.reshape(-1), ys.reshape(-1)], 1).float() * s)
        strides.append(torch.full((h * w,), float(s), device=device))
    return torch.cat(pts), torch.cat(strides)


def decode_boxes(box: torch.Tensor, points: torch.Tensor, strides: torch.Tensor) -> torch.Tensor:
    """Raw (P, 4) box outputs -> xyxy pixels, as :mod:`agescan.detect.yunet` decodes them."""
    s = strides[:, None]
    c = points + box[:, :2] * s
    wh = torch.exp(box[:, 2:].clamp(max=10)) * s
    return torch.cat([c - wh / 2, c + wh / 2], 1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of (N, 4) and (M, 4) xyxy boxes."""
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(2)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(1)
    return inter / (area_a[:, None] + area_b[None] - inter + 1e-9)


def diou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Distance-IoU loss per row of two (N, 4) xyxy boxes."""
    lt = torch.max(pred[:, :2], target[:, :2])
    rb = torch.min(pred[:, 2:], target[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    ap = (pred[:, 2:] - pred[:, :2]).clamp(min=0).prod(1)
    at = (target[:, 2:] - target[:, :2]).clamp(min=0).prod(1)
    iou = inter / (ap + at - inter + 1e-9)
    outer = (torch.max(pred[:, 2:], target[:, 2:]) - torch.min(pred[:, :2], target[:, :2])).pow(2).sum(1) + 1e-9
    centre = ((pred[:, :2] + pred[:, 2:]) / 2 - (target[:, :2] + target[:, 2:]) / 2).pow(2).sum(1)
    return 1 - iou + centre / outer


@torch.no_grad()
def simota(scores: torch.Tensor, boxes: torch.Tensor, points: torch.Tensor, strides: torch.Tensor,
           gt: torch.Tensor, radius: float = 2.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SimOTA for one image: (fg mask (P,), matched face index (P,), IoU of each fg prediction with its face).

    ``scores``: (P,) sqrt(class * objectness) probabilities; ``boxes``: (P, 4) decoded predictions; ``gt``: (G, 4).
    """
    P, G = len(points), len(gt)
    fg = torch.zeros(P, dtype=torch.bool)
    matched = torch.full((P,), -1, dtype=torch.long)
    if G == 0:
        return fg, matched, torch.zeros(0)
    px, py = points[:, 0:1], points[:, 1:2]
    in_box = (px > gt[None, :, 0]) & (px < gt[None, :, 2]) & (py > gt[None, :, 1]) & (py < gt[None, :, 3])
    gc = (gt[:, :2] + gt[:, 2:]) / 2
    r = radius * strides[:, None]
    in_ctr = ((px - gc[None, :, 0]).abs() < r) & ((py - gc[None, :, 1]).abs() < r)
    cand = (in_box | in_ctr).any(1)
    idx = torch.nonzero(cand).squeeze(1)
    if idx.numel() == 0:
        return fg, matched, torch.zeros(0)
    ious = box_iou(boxes[idx], gt)  # (C, G)
    cls_cost = -torch.log(scores[idx].clamp(1e-6, 1.0))[:, None].expand(-1, G)
    cost = cls_cost + 3.0 * -torch.log(ious + 1e-8) + 1e5 * (~(in_box[idx] & in_ctr[idx])).float()
    k = min(10, idx.numel())
    dyn = torch.topk(ious, k, dim=0).values.sum(0).int().clamp(min=1)
    match = torch.zeros_like(cost, dtype=torch.bool)
    for g in range(G):
        kk = int(min(dyn[g], idx.numel()))
        match[torch.topk(cost[:, g], kk, largest=False).indices, g] = True
    multi = match.sum(1) > 1
    if multi.any():
        best = cost[multi].argmin(1)
        match[multi] = False
        match[multi.nonzero().squeeze(1), best] = True
    has = match.any(1)
    sel = idx[has]
    fg[sel] = True
    g_of = match[has].float().argmax(1)
    matched[sel] = g_of
    return fg, matched, ious[has, g_of]


def detection_loss(outputs, gt_boxes: list[torch.Tensor], gt_kps: list[torch.Tensor], size_h: int,
                   size_w: int) -> tuple[torch.Tensor, dict]:
    """The training loss of one batch (``outputs``: :meth:`YuNet.forward`'s levels)."""
    cls = torch.cat([lv[0] for lv in outputs], 1)[..., 0]  # (B, P)
    obj = torch.cat([lv[1] for lv in outputs], 1)[..., 0]
    box = torch.cat([lv[2] for lv in outputs], 1)
    kps = torch.cat([lv[3] for lv in outputs], 1)
    points, strides = grid_points(size_h, size_w)
    obj_t = torch.zeros_like(obj)
    cls_terms, box_terms, kps_terms = [], [], []
    n_fg = 0
    for b in range(cls.shape[0]):
        decoded = decode_boxes(box[b], points, strides)
        scores = torch.sqrt(torch.sigmoid(cls[b]) * torch.sigmoid(obj[b])).detach()
        fg, matched, ious = simota(scores, decoded.detach(), points, strides, gt_boxes[b])
        if not fg.any():
            continue
        obj_t[b, fg] = 1.0
        n_fg += int(fg.sum())
        g = matched[fg]
        cls_terms.append(F.binary_cross_entropy_with_logits(cls[b, fg], ious.to(cls.dtype), reduction="sum"))
        box_terms.append(diou_loss(decoded[fg], gt_boxes[b][g]).sum())
        s = strides[fg][:, None, None]
        target = (gt_kps[b][g] - points[fg][:, None, :]) / s  # (F, 5, 2) in stride units from the point
        kps_terms.append(F.smooth_l1_loss(kps[b, fg].reshape(-1, 5, 2), target, beta=1 / 9, reduction="sum"))
    norm = max(n_fg, 1)
    l_obj = F.binary_cross_entropy_with_logits(obj, obj_t, reduction="sum") / norm
    zero = obj.sum() * 0
    l_cls = sum(cls_terms, zero) / norm
    l_box = 5.0 * sum(box_terms, zero) / norm
    l_kps = 0.1 * sum(kps_terms, zero) / norm
    total = l_obj + l_cls + l_box + l_kps
    parts = {k: float(v.detach()) for k, v in (("obj", l_obj), ("cls", l_cls), ("box", l_box), ("kps", l_kps))}
    return total, {**parts, "fg": n_fg}


# -- data ------------------------------------------------------------------------------------------------------
class _Scenes(torch.utils.data.IterableDataset):
    def __init__(self, sampler: dd.SceneSampler, seed: int):
        self.sampler, self.seed = sampler, seed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info else 0])
        while True:
            img, boxes, kps = self.sampler.sample(rng)
            yield torch.from_numpy(img).permute(2, 0, 1).float(), torch.from_numpy(boxes), torch.from_numpy(kps)


def _collate(batch):
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch], [b[2] for b in batch]


# -- measurement through the inference detector --------------------------------------------------------------
def _val_chips(data: str, n: int) -> list[dict]:
    """The first ``n`` val chips, padded, with the eye band drawn from the reference detector (as evaluate)."""
    import csv

    from agescan.detect import create_detector
    from agescan.eval.run import BAND_REFERENCE, band_chip, pad_chip
    from agescan.io import read_image

    ref = create_detector(BAND_REFERENCE, threads=1)
    with open(Path(data) / "labels.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "val"][:n]
    chips = []
    for r in rows:
        img = read_image(Path(data) / r["path"])
        h, w = img.shape[:2]
        padded = pad_chip(img)
        chips.append({"w": w, "h": h, "age": int(r["age"]), "clean": padded, "eyeband": band_chip(ref, padded, w, h)})
    return chips


def _benchmark_sets(n_backgrounds: int, n_scenes: int, data: str, seed: int = 1):
    """Val backgrounds and scenes drawn with benchmarks/detection.py's recipe (scikit-image photos that training
    never uses, UTKFace **val** faces, another seed than the benchmark's): ``([background], [scene])``. Needs the
    repository's ``benchmarks/`` folder (this is a developer's tool); without it there are none (``[], None``)."""
    root = Path(__file__).resolve().parents[3] / "benchmarks"
    if not (root / "detection.py").is_file():
        print(f"no {root}/detection.py: measuring without val backgrounds and scenes", file=sys.stderr)
        return [], None
    sys.path.insert(0, str(root))
    import detection as bench  # noqa: PLC0415

    textures = bench.load_textures()
    backgrounds = list(bench.empty_scenes(n_backgrounds, seed, textures))
    scenes = [(sc, bench.banded(sc)) for sc in bench.build_scenes(n_scenes, seed, Path(data), textures, "val")]
    return backgrounds, (scenes, bench.match)


#: Score thresholds every measurement reports (the detector runs once at the lowest).
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def measure(path: Path, chips: list[dict], backgrounds: list[np.ndarray], scenes=None) -> dict:
    """At each of :data:`THRESHOLDS`: val chip recall (clean, banded, ages 0-5), false detections per background
    and, with ``scenes`` (``([(scene, banded image)], match)``), the recall of faces in val scenes (12-400 px)."""
    from agescan.detect.yunet import YuNetDetector
    from agescan.eval.run import central_face

    det = YuNetDetector(path, score_threshold=min(THRESHOLDS), threads=1)
    young = np.asarray([c["age"] <= 5 for c in chips])
    dets = {cond: [d for i in range(0, len(chips), 16)
                   for d in det.detect_batch([c[cond] for c in chips[i:i + 16]])] for cond in ("clean", "eyeband")}
    bg = [det.detect(b) for b in backgrounds]
    out = {}
    for t in THRESHOLDS:
        row = {}
        for cond in ("clean", "eyeband"):
            found = np.asarray([central_face(tuple(x for x in d if x.score >= t), c["w"], c["h"]) is not None
                                for c, d in zip(chips, dets[cond])])
            row[cond] = float(found.mean())
            row[f"{cond}_0_5"] = float(found[young].mean()) if young.any() else float("nan")
        row["false_per_background"] = float(np.mean([sum(x.score >= t for x in d) for d in bg])) if bg else 0.0
        out[f"{t:g}"] = row
    if scenes:
        pairs, match = scenes
        for cond, k in (("scene_clean", 0), ("scene_eyeband", 1)):
            found = {t: [] for t in THRESHOLDS}
            for pair in pairs:
                sc = pair[0]
                d_all = det.detect(sc.image if k == 0 else pair[1])
                for t in THRESHOLDS:
                    hit = dict(match(sc.faces, tuple(x for x in d_all if x.score >= t)))
                    found[t] += [i in hit for i in range(len(sc.faces))]
            for t in THRESHOLDS:
                out[f"{t:g}"][cond] = float(np.mean(found[t])) if found[t] else float("nan")
    return out


def choose(history: list[dict], base: dict, max_clean_drop: float, max_false: float) -> tuple[dict, float]:
    """The measurement and threshold with the highest recall (banded chips + clean and banded val-scene faces, equal
    weights) among those whose clean chip recall stays within ``max_clean_drop`` of the starting weights' (at
    their best admissible threshold) and whose false detections per background are at most ``max_false``; ties go
    to higher clean recall, then to the later step."""
    clean_ref = max((r["clean"] for r in base["at"].values()), default=0.0)
    best, best_key = None, None
    for h in history:
        for t, r in h["at"].items():
            if r["false_per_background"] > max_false or r["clean"] < clean_ref - max_clean_drop:
                continue
            key = (r["eyeband"] + r.get("scene_clean", 0.0) + r.get("scene_eyeband", 0.0), r["clean"], h["step"])
            if best_key is None or key > best_key:
                best, best_key = (h, float(t)), key
    if best is None:
        raise SystemExit(f"no measurement kept clean recall within {max_clean_drop} of the start with at most "
                         f"{max_false} false detections per background; see log.jsonl")
    return best


def _card(cfg: DetTrainConfig, step: int, threshold: float = 0.6, extra: dict | None = None):
    from agescan.detect.card import DetectorCard

    return DetectorCard.from_dict({
        "id": Path(cfg.out).name,
        "architecture": "YuNet-s (Wu, Peng and Yu 2023), 54,608 parameters; box + 5 landmarks; fine-tuned by agescan",
        "score_threshold": threshold,
        "min_face_px": cfg.min_face_px,
        "licence": "Apache-2.0 (fine-tuned from the libfacedetection.train checkpoint yunet_s.pth, Apache-2.0). "
                   "Trained on research data with non-commercial terms (see training_data).",
        "training_data": "UTKFace train split (Zhang, Song and Qi 2017; non-commercial research) pasted into "
                         "scikit-image/matplotlib sample photos and procedural backgrounds"
                         + (", MORPH mugshots (academic MORPH subset; non-commercial research)" if cfg.morph else "")
                         + f"; boxes {'' if cfg.landmark_teacher else 'and landmarks '}from {cfg.teacher}"
                         + (f", landmarks from {cfg.landmark_teacher} where it finds the face" if cfg.landmark_teacher
                            else "") + f" on the clean faces; eye covers on "
                         f"{cfg.occlusion:.0%} of faces. Starting weights: WIDER FACE (by the YuNet authors).",
        "training": {"command": "agescan train detector " + " ".join(_argv(cfg)), "step": step, **(extra or {})},
    })


def _argv(cfg: DetTrainConfig) -> list[str]:
    defaults = DetTrainConfig(data="", out="")
    out = [cfg.data, cfg.out]
    for k, v in asdict(cfg).items():
        if k not in ("data", "out") and v != getattr(defaults, k):
            out += [f"--{k.replace('_', '-')}", str(v)]
    return out


def train(cfg: DetTrainConfig) -> dict:
    from agescan.detect import create_detector

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    teacher = create_detector(cfg.teacher, score_threshold=cfg.teacher_threshold, threads=cfg.threads)
    labels = dd.label_faces(dd.utkface_paths(cfg.data, "train"), teacher, out.parent / "labels_utkface_train.json")
    if cfg.morph:
        labels.update(dd.label_faces(dd.morph_paths(cfg.morph), teacher, out.parent / "labels_morph.json",
                                     kind="photo"))
    if cfg.landmark_teacher:
        lm_teacher = create_detector(cfg.landmark_teacher, threads=cfg.threads)
        lm_labels = dd.label_faces(dd.utkface_paths(cfg.data, "train"), lm_teacher,
                                   out.parent / f"labels_utkface_train.{cfg.landmark_teacher}.json")
        if cfg.morph:
            lm_labels.update(dd.label_faces(dd.morph_paths(cfg.morph), lm_teacher,
                                            out.parent / f"labels_morph.{cfg.landmark_teacher}.json", kind="photo"))
        replaced = 0
        for path, lab in labels.items():
            if path in lm_labels:
                lab["kps"] = lm_labels[path]["kps"]
                replaced += 1
        print(f"landmarks of {replaced} of {len(labels)} faces from {cfg.landmark_teacher}", file=sys.stderr)
    faces = dd.load_faces(labels)
    print(f"{len(faces)} labelled faces", file=sys.stderr)
    negatives = dd.Negatives(cfg.text, cfg.blobs, cfg.text_scale_max, bool(cfg.pebbles), cfg.scene_bars,
                             bool(cfg.bar_text))
    mix = tuple(float(v) for v in cfg.mix.split(","))
    sampler = dd.SceneSampler(faces, dd.background_photos(), cfg.size, cfg.occlusion, cfg.min_face, cfg.max_face,
                              mix, negatives)
    loader = torch.utils.data.DataLoader(_Scenes(sampler, cfg.seed), batch_size=cfg.batch_size,
                                         num_workers=cfg.workers, collate_fn=_collate,
                                         persistent_workers=cfg.workers > 0)
    net = YuNet()
    if cfg.init:
        load_checkpoint(net, cfg.init)
    # channels-last is 2x faster for the depthwise convolutions on the CPU; one thread per process avoids the
    # spinning of OpenMP pools that share two cores with the scene workers (measured 0.36 s vs 3.6 s a step).
    net = net.to(memory_format=torch.channels_last)
    for i in range(cfg.freeze):
        stage = getattr(net.backbone, f"model{i}")
        stage.requires_grad_(False)
    start = {k: v.detach().clone() for k, v in net.named_parameters() if v.requires_grad}
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0 if cfg.l2sp else cfg.weight_decay)

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * t))

    chips = _val_chips(cfg.data, cfg.eval_chips)
    backgrounds, scenes = _benchmark_sets(cfg.eval_backgrounds, cfg.eval_scenes, cfg.data)
    log = open(out / "log.jsonl", "a")
    history = []

    def evaluate(step: int) -> dict:
        path = out / f"step{step}.onnx"
        export(net, _card(cfg, step), path)
        m = {"step": step, "at": measure(path, chips, backgrounds, scenes)}
        history.append(m)
        log.write(json.dumps(m) + "\n")
        log.flush()
        print(json.dumps(m), file=sys.stderr)
        train_mode()
        return m

    def train_mode() -> None:
        net.train()
        for i in range(cfg.freeze):  # frozen stages keep their batch-norm statistics
            getattr(net.backbone, f"model{i}").eval()

    base = evaluate(0)
    t0 = time.time()
    train_mode()
    step = 0
    for x, boxes, kps in loader:
        if step >= cfg.steps:
            break
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss, parts = detection_loss(net(x.contiguous(memory_format=torch.channels_last)), boxes, kps,
                                     x.shape[2], x.shape[3])
        if cfg.l2sp:
            loss = loss + cfg.l2sp * sum(((p - start[n]) ** 2).sum() for n, p in net.named_parameters()
                                         if p.requires_grad)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
        opt.step()
        step += 1
        if step % 50 == 0:
            rec = {"step": step, "loss": float(loss.detach()), **parts, "lr": lr_at(step), "s": round(time.time() - t0, 1)}
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(json.dumps(rec), file=sys.stderr)
        if step % cfg.eval_every == 0 or step == cfg.steps:
            torch.save(net.state_dict(), out / f"step{step}.pt")
            evaluate(step)
    best, threshold = choose(history[1:], base, cfg.max_clean_drop, cfg.max_false)
    net.load_state_dict(torch.load(out / f"step{best['step']}.pt", weights_only=True))
    at = best["at"][f"{threshold:g}"]
    export(net, _card(cfg, best["step"], threshold, {"val": {"chips": len(chips), **at},
                                                     "val_backgrounds": len(backgrounds)}), out / "best.onnx")
    summary = {"base": base, "best": best, "threshold": threshold}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary), file=sys.stderr)
    return summary


#: Height buckets (px at the network input) of the size-dependent thresholds :func:`calibrate` chooses.
SIZE_BUCKETS = (16.0, 32.0)
CALIBRATION_GRID = tuple(round(0.5 + 0.01 * i, 2) for i in range(46))  # 0.50 .. 0.95


def calibrate(path: str | Path, data: str, *, min_face_px: float, scenes: int = 300, backgrounds: int = 400,
              seed: int = 11, max_false: float = 0.05) -> dict:
    """Size-dependent score thresholds for a detector export, chosen on **val**: the most faces found in val scenes
    (clean and banded; benchmarks/detection.py's recipe with UTKFace val faces and another seed than training's
    selection) with at most ``max_false`` false faces per image, counted over face-free val backgrounds and the
    scenes' unmatched detections together.

    Faces and false detections are bucketed by box height at the network input (:data:`SIZE_BUCKETS`); thresholds
    start at the top of :data:`CALIBRATION_GRID` and the bucket whose next step down finds the most faces per
    added false detection is lowered, greedily, while the budget holds. Returns the card fields
    (``score_threshold``, ``size_thresholds``) and the val numbers behind them.
    """
    import dataclasses

    from agescan.detect.yunet import YuNetDetector

    bgs, sets = _benchmark_sets(backgrounds, scenes, data, seed)
    if sets is None:
        raise SystemExit("calibration needs the repository's benchmarks/detection.py (run it from a checkout)")
    pairs, match = sets
    det = YuNetDetector(path, score_threshold=min(CALIBRATION_GRID), threads=1).load()
    det._card = dataclasses.replace(det._card, min_face_px=float(min_face_px))
    edges = (0.0, *SIZE_BUCKETS, float("inf"))

    def bucket(height_px: float) -> int:
        return next(i for i in range(len(edges) - 1) if edges[i] <= height_px < edges[i + 1])

    faces, false_bg, false_scene = [], [], []  # (bucket, score); a face never found has score -1
    for sc, banded in pairs:
        for img in (sc.image, banded):
            s = det.scales(*img.shape[:2])[0]
            dets = det.detect(img)
            hit = dict(match(sc.faces, dets))
            for i in range(len(sc.faces)):
                d = dets[hit[i]] if i in hit else None
                faces.append((bucket(d.box.height * s), d.score) if d else (0, -1.0))
            false_scene += [(bucket(d.box.height * s), d.score) for j, d in enumerate(dets) if j not in hit.values()]
    for bg in bgs:
        s = det.scales(*bg.shape[:2])[0]
        false_bg += [(bucket(d.box.height * s), d.score) for d in det.detect(bg)]
    faces_a, bg_a, sc_a = (np.asarray(x, dtype=np.float64).reshape(-1, 2) for x in (faces, false_bg, false_scene))

    def count(arr: np.ndarray, th: list[float]) -> int:
        return int(sum(((arr[:, 0] == b) & (arr[:, 1] >= t)).sum() for b, t in enumerate(th)))

    # False detections of both kinds share the budget: on empty backgrounds and unmatched ones in the scenes (two
    # images per scene), so that a few dozen background photos do not decide it alone.
    false_a = np.concatenate([bg_a, sc_a])
    n_images = len(bgs) + 2 * len(pairs)

    idx = [len(CALIBRATION_GRID) - 1] * (len(edges) - 1)
    budget = max_false * n_images
    while True:
        th = [CALIBRATION_GRID[i] for i in idx]
        base_f, base_b = count(faces_a, th), count(false_a, th)
        best, best_gain = None, 0.0
        for b in range(len(idx)):
            if idx[b] == 0:
                continue
            trial = list(th)
            trial[b] = CALIBRATION_GRID[idx[b] - 1]
            df, db = count(faces_a, trial) - base_f, count(false_a, trial) - base_b
            if base_b + db > budget:
                continue
            gain = df / (db + 0.5)
            if best is None or gain > best_gain or (gain == best_gain and df > 0):
                best, best_gain = b, gain
        if best is None:
            break
        idx[best] -= 1
    th = [CALIBRATION_GRID[i] for i in idx]
    return {"score_threshold": th[-1], "size_thresholds": [[h, t] for h, t in zip(SIZE_BUCKETS, th[:-1])],
            "val": {"scenes": len(pairs), "faces": int(len(faces_a)), "found": count(faces_a, th),
                    "recall": count(faces_a, th) / max(len(faces_a), 1), "backgrounds": len(bgs),
                    "false_per_background": count(bg_a, th) / max(len(bgs), 1),
                    "unmatched_per_scene_image": count(sc_a, th) / max(2 * len(pairs), 1), "seed": seed}}


def publish(run: str | Path, out: str | Path, detector_id: str, *, min_face_px: float, max_face_px: float,
            metrics: dict | None = None, notes: str = "", thresholds: dict | None = None) -> tuple[Path, str]:
    """Write ``run``'s ``best.onnx`` as ``out/<detector_id>.onnx`` with its card completed (id, the face-size range
    measured on val, metrics, notes) and a Markdown card beside it; returns the path and the file's sha256."""
    import hashlib

    import onnxruntime as ort

    from agescan.detect.card import DETECTOR_CARD_KEY, DetectorCard
    from agescan.detect.yunet import read_detector_card
    from agescan.export import embed_card

    src = Path(run) if str(run).endswith(".onnx") else Path(run) / "best.onnx"
    data = src.read_bytes()
    card = read_detector_card(ort.InferenceSession(data, providers=["CPUExecutionProvider"]), str(src))
    fields = card.to_dict()
    fields.update(id=detector_id, min_face_px=float(min_face_px), max_face_px=float(max_face_px),
                  metrics={**card.metrics, **(metrics or {})}, notes=notes or card.notes)
    if thresholds:
        fields.update(score_threshold=thresholds["score_threshold"], size_thresholds=thresholds["size_thresholds"])
        fields["training"] = {**card.training, "threshold_calibration": thresholds.get("val", {})}
    card = DetectorCard.from_dict(fields)
    data = embed_card(data, card, DETECTOR_CARD_KEY)
    path = Path(out) / f"{detector_id}.onnx"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    (Path(out) / f"{detector_id}.md").write_text(card_markdown(card, sha, len(data)), encoding="utf-8")
    return path, sha


def card_markdown(card, sha: str, size: int) -> str:
    """A human-readable card for a detector file (the same facts as the card inside it)."""
    metrics = "\n".join(f"- **{k}**: {json.dumps(v)}" for k, v in card.metrics.items()) or "- (none recorded)"
    sizes = "".join(f" ({t:g} below {h:g} px)" for h, t in card.size_thresholds)
    return f"""# Detector card: {card.id}

- **Architecture**: {card.architecture}
- **Input**: {card.colour_order} pixels x {card.scale:g}, any size (padded to a multiple of {card.alignment}); outputs
  decoded as `{card.output_format}` at strides {list(card.strides)}; landmarks {list(card.landmark_order)}.
- **Use**: score threshold {card.score_threshold:g}{sizes}, NMS IoU {card.nms_iou:g}, then containment
  {card.nms_containment:g} (a box that holds or lies in that share of a higher-scored one's is dropped); finds faces
  from {card.min_face_px:g} to {card.max_face_px:g} px tall at the network input: an image is scaled so that `min_face_size` maps to
  {card.min_face_px:g} px, with a coarser pass for larger faces.
- **File**: `{card.id}.onnx`, {size:,} bytes, sha256 `{sha}`. The card is embedded in the ONNX metadata.
- **Licence**: {card.licence}
- **Training data**: {card.training_data}
- **Training**: `{card.training.get('command', '')}`; step {card.training.get('step', '')}.

## Metrics

{metrics}

{card.notes}
"""


def build_parser(prog: str = "agescan train detector") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", help="UTKFace folder (labels.csv with a split column): train faces, val chips")
    p.add_argument("out", help="run folder; its name becomes the detector id in the exported cards")
    helps = {"init": "starting weights (yunet_s.pth or a state dict of ours)",
             "teacher": "registered detector that labels the clean faces (box + landmarks)",
             "teacher_threshold": "teacher's score threshold",
             "landmark_teacher": "registered detector whose landmarks replace the teacher's where it finds the face "
                                 "(mtcnn: the convention every shipped age model was trained with); empty: the teacher's", "morph": "MORPH folder (labels.csv) to add real photos",
             "steps": "optimiser steps", "batch_size": "scenes per step", "size": "scene side in pixels",
             "lr": "peak AdamW learning rate (cosine schedule)", "weight_decay": "AdamW weight decay",
             "warmup": "linear warm-up steps", "occlusion": "share of faces whose eyes are covered",
             "min_face": "smallest pasted face height (px)", "max_face": "largest pasted face height (px)",
             "eval_every": "steps between measurements", "eval_chips": "val chips measured", "eval_backgrounds": "val backgrounds for false detections",
             "eval_scenes": "val scenes (12-400 px faces) for recall",
             "min_face_px": "card's smallest face (px at the network input): sets the detection scale",
             "freeze": "keep the first N backbone stages (model0..) at their starting weights",
             "l2sp": "weight of the L2 pull towards the starting weights (L2-SP: keeps what WIDER FACE taught)",
             "mix": "shares of scene, chip, photo and empty samples", "text": "share of backgrounds with text",
             "blobs": "share of backgrounds with soft blobs", "text_scale_max": "largest font scale of the text",
             "pebbles": "1: procedural backgrounds include pebbles (shaded discs)",
             "scene_bars": "share of scene backgrounds with black bars under the faces",
             "bar_text": "1: half the bars carry light text or an emblem (name tags, badges)",
             "max_clean_drop": "best export: clean recall may fall at most this much below the start",
             "max_false": "best export: false detections per background at most this, at its threshold",
             "threads": "torch threads (1 is fastest on 2 cores with a scene worker)", "workers": "scene-drawing processes", "seed": "random seed"}
    for name, default in asdict(DetTrainConfig(data="", out="")).items():
        if name in ("data", "out"):
            continue
        p.add_argument("--" + name.replace("_", "-"), type=type(default), default=default,
                       help=f"{helps.get(name, name)} (default: {default})")
    return p


def main(argv: list[str] | None = None) -> None:
    a = build_parser().parse_args(argv)
    train(DetTrainConfig(**vars(a)))


def publish_main(argv: list[str] | None = None) -> None:
    """``agescan train publish-detector RUN OUT --id NAME --min-face-px PX --max-face-px PX [--metrics JSON]``."""
    p = argparse.ArgumentParser(prog="agescan train publish-detector",
                                description="Write a detector run's best.onnx with its completed card (id, "
                                            "face-size range and metrics measured on val/test) into OUT.")
    p.add_argument("run", help="run folder of `agescan train detector` (holds best.onnx), or one of its .onnx exports")
    p.add_argument("out", help="folder to write ID.onnx and ID.md into (the package's detect/weights)")
    p.add_argument("--id", required=True, help="registry name, e.g. yunet-s-ocl.utkface")
    p.add_argument("--min-face-px", type=float, required=True, help="smallest face height found reliably (px)")
    p.add_argument("--max-face-px", type=float, required=True, help="largest face height found reliably (px)")
    p.add_argument("--metrics", help="JSON file of metrics to record in the card")
    p.add_argument("--notes", default="", help="free text for the card")
    p.add_argument("--calibrate", metavar="DATA", help="UTKFace folder: choose size-dependent score thresholds on "
                                                       "val scenes and backgrounds (see calibrate)")
    p.add_argument("--max-false", type=float, default=0.05, help="with --calibrate: false faces per background")
    a = p.parse_args(argv)
    metrics = json.loads(Path(a.metrics).read_text()) if a.metrics else None
    thresholds = None
    if a.calibrate:
        src = a.run if a.run.endswith(".onnx") else str(Path(a.run) / "best.onnx")
        thresholds = calibrate(src, a.calibrate, min_face_px=a.min_face_px, max_false=a.max_false)
        print(json.dumps(thresholds), file=sys.stderr)
    path, sha = publish(a.run, a.out, a.id, min_face_px=a.min_face_px, max_face_px=a.max_face_px,
                        metrics=metrics, notes=a.notes, thresholds=thresholds)
    print(f"{path}: sha256 {sha}")


if __name__ == "__main__":
    main()
