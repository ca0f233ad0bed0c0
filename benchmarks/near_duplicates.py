"""Near-duplicate grouping (PDQ, `agescan.io.phash`): recall on altered copies, false groupings of distinct photos.

    python benchmarks/near_duplicates.py --split val  --scenes 2000 --scene-seed 1 --json runs/bench/neardup-val.json
    python benchmarks/near_duplicates.py --split test --scenes 2000 --scene-seed 0 --json runs/bench/neardup-test.json

Two kinds of originals, each a set of distinct photos: the UTKFace face chips of one split (200x200, aligned:
the hard case, since all share one layout) and full scenes made by ``make_scan_corpus.make_photo`` (crops of
scikit-image scenes with 0-3 UTKFace test faces pasted). Each original gets one altered copy per kind: JPEG
re-encoded at quality 50-95; resized 0.5-2x; cropped (up to 10% off each side's length, at a random place);
brightness/contrast changed (gain 0.7-1.3, offset -40..40); a text overlay; mirrored left-right. Every copy but
the re-encoded one is saved as JPEG quality 90, and every picture is decoded by ``agescan.read_image`` as a scan
would. Then all originals and copies of one kind are grouped together, as the report groups the files it lists.

* recall (per alteration): share of copies in the same group as their original;
* distinct pairs grouped: pairs of *originals* that end in one group (directly or through a chain of copies),
  per 100,000 pairs of originals.

The sweep over distances (with and without mirror matching) is for choosing on val; the final row at the
library's own settings comes from ``near_duplicate_groups`` itself.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time

import cv2
import numpy as np

from _common import machine, md_table, utkface_dir, write_json

ALTERATIONS = ("jpeg", "resize", "crop", "brightness", "text", "mirror")
WORDS = ("IMG_2041", "(c) 2019", "lol", "Summer camp", "DSC 0045", "#tbt", "private", "agescan", "2023-07-14")


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    from agescan import read_image

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return read_image(buf.tobytes())


def alter(image: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """An altered copy of an RGB image, as decoded from the file a copier would have written."""
    h, w = image.shape[:2]
    if kind == "jpeg":
        return _jpeg(image, int(rng.integers(50, 96)))
    if kind == "resize":
        s = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
        out = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))),
                         interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    elif kind == "crop":
        cw, ch = round(w * rng.uniform(0.90, 1.0)), round(h * rng.uniform(0.90, 1.0))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        out = image[y:y + ch, x:x + cw]
    elif kind == "brightness":
        out = cv2.convertScaleAbs(image, alpha=rng.uniform(0.7, 1.3), beta=rng.uniform(-40, 40))
    elif kind == "text":
        out = image.copy()
        text = WORDS[int(rng.integers(0, len(WORDS)))]
        scale = w / 400 * rng.uniform(0.6, 1.2)
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, max(1, round(2 * scale)))
        org = (int(rng.integers(0, max(1, w - tw))), int(rng.integers(th, max(th + 1, h))))
        colour = (255, 255, 255) if rng.random() < 0.5 else (0, 0, 0)
        cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, max(1, round(2 * scale)), cv2.LINE_AA)
    elif kind == "mirror":
        out = image[:, ::-1]
    else:
        raise ValueError(kind)
    return _jpeg(out, 90)


def utkface_originals(split: str, limit: int | None):
    root = utkface_dir()
    with open(root / "labels.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == split][:limit]
    from agescan import read_image

    for r in rows:
        yield r["path"], read_image(root / r["path"]), None


def scene_originals(n: int, seed: int):
    import make_scan_corpus as msc

    root = utkface_dir()
    with open(root / "labels.csv", newline="") as fh:
        faces = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    rng, bgs = np.random.default_rng(seed), msc.scenes()
    for i in range(n):
        photo, _, framing = msc.make_photo(rng, bgs, faces, root)
        yield f"scene_{i:05d}", _jpeg(photo, 88), framing  # as the corpus stores it: JPEG quality 88


def hash_kind(originals, seed: int) -> dict:
    """PDQ hashes of the originals and their copies: lists aligned with ``origin`` (index of the original)."""
    from agescan.io.phash import pdq

    rng = np.random.default_rng(seed)
    hashes, origin, kind, names, framings = [], [], [], [], []
    t0, n = time.perf_counter(), 0
    for name, image, framing in originals:
        o = len(names)
        names.append(name)
        framings.append(framing)
        hashes.append(pdq(image))
        origin.append(o)
        kind.append("original")
        for k in ALTERATIONS:
            hashes.append(pdq(alter(image, k, rng)))
            origin.append(o)
            kind.append(k)
        n += 1
        if n % 500 == 0:
            print(f"  {n} originals hashed ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    return {"hashes": hashes, "origin": np.array(origin), "kind": np.array(kind), "names": names,
            "framings": framings}


def close_pairs(hashes, limit: int, chunk: int = 1024):
    """(i, j, plain distance, distance allowing a mirror) for i < j, for every pair within ``limit`` either way."""
    from agescan.io.phash import _signs

    plain, mirror = _signs([h.hash for h in hashes]), _signs([h.mirror for h in hashes])
    out = []
    for s in range(0, len(hashes), chunk):
        r, c = slice(s, s + chunk), slice(s, None)
        d = (256 - plain[r] @ plain[c].T) / 2
        dm = np.minimum(d, np.minimum((256 - plain[r] @ mirror[c].T) / 2, (256 - mirror[r] @ plain[c].T) / 2))
        a, b = np.nonzero(np.triu(dm <= limit, k=1))
        out += zip((a + s).tolist(), (b + s).tolist(), d[a, b].astype(int).tolist(), dm[a, b].astype(int).tolist())
    return out


def groups_from_pairs(n: int, pairs, ok) -> np.ndarray:
    parent = np.arange(n)

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        if ok[i] and ok[j]:
            ri, rj = root(i), root(j)
            if ri != rj:
                parent[max(ri, rj)] = min(ri, rj)
    return np.array([root(i) for i in range(n)])


def score(data: dict, labels: np.ndarray) -> dict:
    """Recall per alteration and distinct pairs of originals grouped (count, per 100,000 pairs)."""
    origin, kind = data["origin"], data["kind"]
    orig_idx = np.nonzero(kind == "original")[0]
    out = {}
    for k in ALTERATIONS:
        idx = np.nonzero(kind == k)[0]
        out[f"recall_{k}"] = float(np.mean(labels[idx] == labels[orig_idx[origin[idx]]]))
    copies = kind != "original"
    out["recall_all"] = float(np.mean(labels[copies] == labels[orig_idx[origin[copies]]]))
    copies_nm = copies & (kind != "mirror")
    out["recall_all_but_mirror"] = float(np.mean(labels[copies_nm] == labels[orig_idx[origin[copies_nm]]]))
    _, counts = np.unique(labels[orig_idx], return_counts=True)
    false = int(sum(c * (c - 1) // 2 for c in counts))
    n = len(orig_idx)
    out["distinct_pairs"] = n * (n - 1) // 2
    out["distinct_pairs_grouped"] = false
    out["per_100k"] = false / out["distinct_pairs"] * 1e5
    out["false_groups"] = [[data["names"][origin[i]] for i in orig_idx if labels[i] == g]
                           for g, c in zip(*np.unique(labels[orig_idx], return_counts=True)) if c > 1]
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", default="val", help="UTKFace split of the face originals (choose on val, report test)")
    p.add_argument("--limit", type=int, default=None, help="at most this many face originals")
    p.add_argument("--scenes", type=int, default=2000, help="scene originals (make_scan_corpus.make_photo)")
    p.add_argument("--scene-seed", type=int, default=1, help="seed of the scenes (the scan corpus uses 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the alterations")
    p.add_argument("--distances", default="8,12,16,20,24,28,31,36,40,48")
    p.add_argument("--min-quality", type=int, default=None, help="default: agescan.io.phash.MIN_QUALITY")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    from agescan.io.phash import MIN_QUALITY, NEAR_DUPLICATE_DISTANCE, near_duplicate_groups

    min_q = MIN_QUALITY if a.min_quality is None else a.min_quality
    distances = [int(x) for x in a.distances.split(",")]
    kinds = {"faces": lambda: utkface_originals(a.split, a.limit), "scenes": lambda: scene_originals(a.scenes, a.scene_seed)}
    payload: dict = {"machine": machine(), "args": vars(a), "min_quality": min_q, "kinds": {}}
    for name, originals in kinds.items():
        t0 = time.perf_counter()
        data = hash_kind(originals(), a.seed)
        t_hash = time.perf_counter() - t0
        quality = np.array([h.quality for h in data["hashes"]])
        ok = quality >= min_q
        pairs = close_pairs(data["hashes"], max(distances))
        n = len(data["hashes"])
        sweep = []
        for d in distances:
            for mirror in (False, True):
                labels = groups_from_pairs(n, [(i, j) for i, j, dp, dm in pairs if (dm if mirror else dp) <= d], ok)
                s = score(data, labels)
                s.pop("false_groups")
                sweep.append({"distance": d, "mirror": mirror, **s})
        t0 = time.perf_counter()
        final = score(data, np.array(near_duplicate_groups(data["hashes"], min_quality=min_q)))
        t_group = time.perf_counter() - t0
        low = {k: float(np.mean(~ok[data["kind"] == k])) for k in ("original", *ALTERATIONS)}
        payload["kinds"][name] = {"originals": len(data["names"]), "pictures": n, "hash_seconds": t_hash,
                                  "group_seconds": t_group, "low_quality_share": low, "sweep": sweep,
                                  "final": {"distance": NEAR_DUPLICATE_DISTANCE, "mirror": True, **final}}
        print(f"\n## {name}: {len(data['names'])} originals, {n} pictures ({a.split if name == 'faces' else 'seed %d' % a.scene_seed}); "
              f"hashing {t_hash:.0f} s, grouping {t_group:.1f} s; quality < {min_q}: "
              + ", ".join(f"{k} {v:.1%}" for k, v in low.items()))
        head = ["distance", "mirror", *[f"recall {k}" for k in ALTERATIONS], "recall all", "distinct pairs grouped",
                "per 100k"]
        rows = [[r["distance"], "yes" if r["mirror"] else "no", *[f"{r['recall_' + k]:.2%}" for k in ALTERATIONS],
                 f"{r['recall_all']:.2%}", f"{r['distinct_pairs_grouped']} / {r['distinct_pairs']:,}",
                 f"{r['per_100k']:.3f}"] for r in (*sweep, payload["kinds"][name]["final"])]
        rows[-1][0] = f"**{NEAR_DUPLICATE_DISTANCE} (library)**"
        print(md_table(head, rows))
        if final["false_groups"]:
            print("false groups (library settings):", final["false_groups"][:20])
    write_json(a.json, payload)


if __name__ == "__main__":
    main()
