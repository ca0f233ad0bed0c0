"""A self-contained HTML report of one scan run (opens from disk: no server, no network, no external files).

Files with a flagged face come first, then the others, each by its highest P(minor). Each face shows the triage flag the scan stored with it (decided once,
when the face was estimated, by :mod:`agescan.triage`; a database from before stored flags is read with the rule
of that time). Face thumbnails are cut from the evidence files (opened
read-only; a file whose sha256 no longer matches the scan is not shown) and embedded as data URIs,
**blurred by default**, revealed one at a time by a click, to spare reviewers needless exposure.
A threshold slider filters the list: it adds files whose highest P(minor) reaches it, and never hides a file with a
flagged face (a face can be flagged with a low P(minor): by its interval or the challenge age). Nothing is hidden on similarity: only byte-identical files (same sha256)
share a row, which names every copy; near-duplicates (PDQ hashes, :mod:`agescan.io.phash`) are *grouped*: each
keeps its own row, faces, ages and flag, next to the others of its group and marked with the group. Files
without a face, errors and the run's provenance are listed. ``items.csv``/``.jsonl`` and ``faces.csv``/``.jsonl``
beside the page export everything.
The database is a SQLite file or a ``postgresql://`` URL, opened read-only.
"""

from __future__ import annotations

import base64
import csv
import html
import json
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np

from agescan._validation import check_number
from agescan.errors import AgescanError, ConfigError, InputError
from agescan.io.archives import load_source
from agescan.io.frames import read_picture_frame
from agescan.io.names import fs_path
from agescan.io.video import is_video
from agescan.io.phash import PDQHash, near_duplicate_groups
from agescan.scan.config import triage_rule
from agescan.store import Database, check_schema, connect
from agescan.triage import LEGACY_RULE, is_flagged

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4;position:sticky;top:0}
.thumb{width:72px;height:72px;margin:2px;filter:blur(10px);cursor:pointer;border:2px solid #999;border-radius:4px}
.thumb.revealed{filter:none;border-color:#c00}
.minor{color:#b00;font-weight:600}.err{color:#a60}.dim{color:#888}
.profile{background:#eef;color:#336;border-radius:3px;padding:0 4px;margin-left:4px;font-size:90%}
.controls{position:sticky;top:0;background:#fff;padding:.5em 0;z-index:2;border-bottom:1px solid #ccc}
tr.grouped td:first-child{border-left:4px solid #7a5cc0}.group{color:#5a3ca0;font-weight:600}
.hist rect{fill:#4a78b0}.hist text{font-size:10px;fill:#333}
code{font-size:12px}
"""

_JS = """
function applyThreshold(v){
  document.getElementById('thv').textContent=Number(v).toFixed(2);
  let shown=0;
  for(const tr of document.querySelectorAll('tr.item')){
    const ok=tr.dataset.flagged==='1'||parseFloat(tr.dataset.pminor)>=v;
    tr.style.display=ok?'':'none'; if(ok) shown++;
  }
  document.getElementById('shown').textContent=shown;
}
function reveal(img){img.classList.toggle('revealed');}
document.addEventListener('DOMContentLoaded',()=>applyThreshold(document.getElementById('th').value));
"""


def _thumb(image: np.ndarray, box: tuple[float, float, float, float], side: int = 96) -> str:
    import cv2

    x1, y1, x2, y2 = box
    m = 0.15 * max(x2 - x1, y2 - y1)
    h, w = image.shape[:2]
    xa, ya, xb, yb = (int(max(0, x1 - m)), int(max(0, y1 - m)), int(min(w, x2 + m)), int(min(h, y2 + m)))
    crop = image[ya:yb, xa:xb]
    if crop.size == 0:
        return ""
    scale = side / max(crop.shape[:2])
    crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
                      interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(crop[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 80])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode() if ok else ""


def _histogram_svg(ages: list[float], width: int = 600, height: int = 120) -> str:
    if not ages:
        return "<p class='dim'>No faces.</p>"
    counts, edges = np.histogram(np.clip(ages, 0, 100), bins=20, range=(0, 100))
    top = max(int(counts.max()), 1)
    bw = width / len(counts)
    bars = []
    for i, c in enumerate(counts):
        bh = (height - 20) * c / top
        bars.append(f"<rect x='{i * bw + 1:.1f}' y='{height - 15 - bh:.1f}' width='{bw - 2:.1f}' height='{bh:.1f}'>"
                    f"<title>{int(edges[i])}-{int(edges[i + 1]) - 1} years: {int(c)} face(s)</title></rect>")
        if i % 2 == 0:
            bars.append(f"<text x='{i * bw + 2:.1f}' y='{height - 3}'>{int(edges[i])}</text>")
    return (f"<svg class='hist' role='img' aria-label='histogram of estimated ages' width='{width}' "
            f"height='{height}' viewBox='0 0 {width} {height}'>{''.join(bars)}</svg>")


def _export(db: Database, query: str, args: tuple, csv_path: Path, extra: tuple[str, Callable] | None = None) -> None:
    """Write the rows of ``query`` as CSV and as JSON Lines (same name, ``.jsonl``), streaming; ``extra`` (name,
    function of the row's dict) adds a column."""
    cur = db.execute(query, args)
    cols = [d[0] for d in cur.description] + ([extra[0]] if extra else [])
    with open(csv_path, "w", newline="", encoding="utf-8") as fc, \
            open(csv_path.with_suffix(".jsonl"), "w", encoding="utf-8") as fj:
        w = csv.writer(fc)
        w.writerow(cols)
        for row in cur:
            if extra:
                row = (*row, extra[1](dict(zip(cols, row))))
            w.writerow(row)
            rec = dict(zip(cols, row))
            for k in ("landmarks", "distribution"):
                if isinstance(rec.get(k), str):
                    rec[k] = json.loads(rec[k])
            fj.write(json.dumps(rec, ensure_ascii=False) + "\n")


def write_report(db_path: str | Path, out_dir: str | Path, *, run_id: int | None = None,
                 threshold: float | None = None, max_items: int = 2000, thumbnails: bool = True) -> Path:
    """Write ``out_dir/index.html``, ``items.csv`` and ``faces.csv`` for one run; returns the page's path.

    Args:
        db_path: a results database written by ``agescan scan --db``.
        out_dir: folder for the report (created).
        run_id: which run (default: the latest).
        threshold: the page filter's starting P(minor) (default: the run's flag threshold). Which faces are flagged
            is the scan's decision, stored with each face: rescan with other triage settings to change it.
        max_items: files listed on the page, those with a flagged face first, then by highest P(minor) (the CSVs
            hold all of them).
        thumbnails: cut blurred face thumbnails from the evidence files.
    """
    if threshold is not None:
        check_number(threshold, "threshold", "write_report", lo=0.0, hi=1.0)
    _check_out(Path(out_dir))
    db = connect(db_path, readonly=True)
    try:
        version = check_schema(db)
        if run_id is None:
            run_id = db.execute("SELECT MAX(id) FROM runs").fetchone()[0]
        cur = db.execute("SELECT * FROM runs WHERE id = ?", (run_id if run_id is not None else -1,))
        row = cur.fetchone()
        if row is None:
            raise ConfigError(f"{db.name}: no run {run_id if run_id is not None else ''} in this database.")
        run = dict(zip([d[0] for d in cur.description], row))
        rid = run["id"]
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        rule = triage_rule(json.loads(run["config"]))
        flags = _Flags(db, version, rid, rule)
        order = "ORDER BY COALESCE(max_p_minor, -1) DESC, source"
        if version >= 3:
            _export(db, "SELECT items.*, (SELECT COALESCE(SUM(f.flagged), 0) FROM faces f WHERE f.item_id = items.id) "
                        f"AS flagged_faces FROM items WHERE run_id=? {order}", (rid,), out / "items.csv")
        else:
            _export(db, f"SELECT items.* FROM items WHERE run_id=? {order}", (rid,), out / "items.csv",
                    ("flagged_faces", lambda r: flags.per_item.get(r["id"], 0)))
        faces = ("SELECT f.*, i.source, i.sha256 FROM faces f JOIN items i ON f.item_id = i.id "
                 "WHERE i.run_id=? ORDER BY f.p_minor DESC, i.source, f.face_index")
        _export(db, faces, (rid,), out / "faces.csv", None if version >= 3 else ("flagged", lambda r: int(flags(r))))
        page = _page(db, run, version, rule, rule[0] if threshold is None else threshold, flags, max_items,
                     thumbnails)
    finally:
        db.close()
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def _check_out(out: Path) -> None:
    """Refuse a report folder that cannot be one (a file, a path under a file, an index.html that is a folder)
    before anything is read, with what to do (InputError)."""
    up = next((p for p in (out, *out.parents) if p.exists()), None)
    if up is not None and not up.is_dir():
        raise InputError(f"--out {out}: {up} is a file; name a folder for the report.")
    for name in ("index.html", "items.csv", "faces.csv", "items.jsonl", "faces.jsonl"):
        if (out / name).is_dir():
            raise InputError(f"--out {out}: {out / name} is a folder; name another folder for the report.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--out {out}: cannot create the folder ({exc.strerror or exc}).") from None


class _Flags:
    """Each face's triage flag: the stored one (schema 3), or for a database from before stored flags (read as it
    is) the rule of that time, :data:`agescan.triage.LEGACY_RULE`, applied by :func:`agescan.triage.is_flagged`."""

    def __init__(self, db: Database, version: int, run_id: int, rule: tuple[float, float]):
        self.stored, self.rule, self.per_item = version >= 3, rule, Counter()
        if not self.stored:
            for item_id, p_minor, age in db.execute("SELECT f.item_id, f.p_minor, f.age FROM faces f JOIN items i "
                                                    "ON f.item_id = i.id WHERE i.run_id=?", (run_id,)):
                self.per_item[item_id] += is_flagged(p_minor, age, *rule)

    @property
    def column(self) -> str:
        return "f.flagged" if self.stored else "0"

    @property
    def item_sql(self) -> str:
        """SQL, over a row of ``items``: 1 when the item has a flagged face (with :attr:`item_args`)."""
        if self.stored:
            return "EXISTS (SELECT 1 FROM faces f WHERE f.item_id = items.id AND f.flagged != 0)"
        return "EXISTS (SELECT 1 FROM faces f WHERE f.item_id = items.id AND (f.p_minor >= ? OR f.age < ?))"

    @property
    def item_args(self) -> tuple:
        return () if self.stored else (float(self.rule[0]), float(self.rule[1]))

    def __call__(self, face: dict) -> bool:
        return bool(face["flagged"]) if self.stored else is_flagged(face["p_minor"], face["age"], *self.rule)


def _page(db: Database, run: dict, version: int, rule: tuple[float, float], threshold: float, flags: _Flags,
          max_items: int, thumbnails: bool) -> str:
    rid = run["id"]
    # A version 1 database (read as it is) has no PDQ hashes: nothing is grouped.
    pdq_cols = "pdq, pdq_mirror, pdq_quality" if version >= 2 else "'' AS pdq, '' AS pdq_mirror, 0 AS pdq_quality"
    # Before version 4 no pose was stored and every face was aligned.
    pose_cols = "f.yaw, f.framing" if version >= 4 else "0.0 AS yaw, 'aligned' AS framing"
    # Files with a flagged face first (a face can be flagged with a low P(minor)), so that the page's limit never
    # leaves one of them out, then by highest P(minor).
    items = db.execute(f"SELECT id, source, sha256, frame_index, timestamp, width, height, max_p_minor, {pdq_cols} "
                       f"FROM items WHERE run_id=? AND error='' AND n_faces > 0 ORDER BY {flags.item_sql} DESC, "
                       "max_p_minor DESC, source LIMIT ?", (rid, *flags.item_args, max_items)).fetchall()
    # Byte-identical still images (same sha256) share one row, which names every copy.
    copies: dict[str, list[str]] = {}
    for sha, source in db.execute(
            "SELECT sha256, source FROM items WHERE run_id=? AND frame_index < 0 AND error='' AND n_faces > 0 "
            "AND sha256 IN (SELECT sha256 FROM items WHERE run_id=? AND sha256 != '' AND frame_index < 0 "
            "AND error='' AND n_faces > 0 GROUP BY sha256 HAVING COUNT(*) > 1) ORDER BY source", (rid, rid)):
        copies.setdefault(sha, []).append(source)
    seen_sha: set[str] = set()
    listed = []
    for it in items:
        sha, frame = it[2], it[3]
        if frame < 0 and sha in copies:
            if sha in seen_sha:
                continue  # named in its first copy's row
            seen_sha.add(sha)
        listed.append(it)
    # Near-duplicates: grouped, never removed; video frames are not grouped (their video already groups them).
    labels = near_duplicate_groups([PDQHash(ph, pm, q) if ph and frame < 0 else None
                                    for _, _, _, frame, *_, ph, pm, q in listed])
    sizes = Counter(labels)
    order = sorted(range(len(listed)), key=lambda i: (labels[i], i))  # a group at its highest-P(minor) member
    group_no: dict[int, int] = {}
    unhashed = sum(1 for *_, ph, _, _ in listed if not ph)
    errors = db.execute("SELECT source, error_type, error FROM items WHERE run_id=? AND error != '' ORDER BY source",
                        (rid,)).fetchall()
    noface = db.execute("SELECT source, frame_index, timestamp FROM items WHERE run_id=? AND error = '' AND n_faces = 0 "
                        "ORDER BY source, frame_index LIMIT ?", (rid, max_items)).fetchall()
    face_rows = db.execute(f"SELECT f.age, f.p_minor, {flags.column} FROM faces f JOIN items i ON f.item_id=i.id "
                           "WHERE i.run_id=?", (rid,)).fetchall()
    ages = [a for a, _, _ in face_rows]
    n_flagged = sum(flags({"age": a, "p_minor": pm, "flagged": fl}) for a, pm, fl in face_rows)
    rule_text = f"P(minor) &ge; {rule[0]:g}" + (f" or estimated age &lt; {rule[1]:g}" if rule[1] else "")
    if run["model_sha256"] and rule != LEGACY_RULE:  # the refer interval of a calibrated card (agescan.decisions)
        rule_text += (f", or an interval of level {1 - 2 * rule[0]:.1%} reaching below the minor age if the model's "
                      "card asks")
    n_items, n_files, n_noface = db.execute(
        "SELECT COUNT(*), SUM(CASE WHEN frame_index <= 0 THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN n_faces = 0 AND error = '' THEN 1 ELSE 0 END) FROM items WHERE run_id=?", (rid,)).fetchone()
    n_noface, n_files = int(n_noface or 0), int(n_files or 0)
    scanned = f"{n_files} file(s) scanned" + (f" ({n_items} items with the sampled frames of videos and the frames "
                                              "of animated or multi-page pictures)" if n_items != n_files else "")
    video_digests: dict[str, str] = {}
    rows = []
    for i in order:
        item_id, source, sha, frame, stamp, w, h, pmax, *_ = listed[i]
        faces = db.execute(f"SELECT x1, y1, x2, y2, age, interval_lo, interval_hi, p_minor, age_group, {flags.column}, "
                           f"{pose_cols} FROM faces f WHERE item_id=? ORDER BY face_index", (item_id,)).fetchall()
        thumbs = _item_thumbs(source, sha, frame, faces, video_digests) if thumbnails else [""] * len(faces)
        cells, any_flag = [], False
        for (x1, y1, x2, y2, age, lo, hi, pm, group, fl, yaw, framing), t in zip(faces, thumbs):
            img = (f"<img class='thumb' src='{t}' alt='face, blurred: click to reveal' title='click to reveal' "
                   f"onclick='reveal(this)'>" if t.startswith("data:") else f"<span class='dim'>{html.escape(t)}</span>")
            flag = flags({"age": age, "p_minor": pm, "flagged": fl})
            any_flag |= flag
            cls = " class='minor'" if flag else ""
            # a turned face framed from its box: its estimate comes from a harder view, the reviewer should know
            profile = (f" <span class='profile' title='turned {abs(yaw):.0f}&deg;: framed from its box, not aligned'>"
                       "profile</span>" if framing == "box" else "")
            cells.append(f"<div>{img}<span{cls}>{'FLAGGED: ' if flag else ''}age {age:.1f} ({lo:.0f}-{hi:.0f}), "
                         f"P(minor) {pm:.2f}, {group}</span>{profile}</div>")
        notes, attrs = "", "class='item'"
        if frame < 0 and sha in copies:
            others = ", ".join(f"<code>{html.escape(c)}</code>" for c in copies[sha] if c != source)
            notes += f"<br><span class='dim'>{len(copies[sha])} identical copies (sha256); also: {others}</span>"
        if sizes[labels[i]] > 1:
            n = group_no.setdefault(labels[i], len(group_no) + 1)
            notes += f"<br><span class='group'>near-duplicate group {n} ({sizes[labels[i]]} files, PDQ hash)</span>"
            attrs = f"class='item grouped' data-group='{n}'"
        where = _frame_text(frame, stamp)
        rows.append(f"<tr {attrs} data-pminor='{pmax:.4f}' data-flagged='{int(any_flag)}'>"
                    f"<td class='{'minor' if any_flag else ''}'>{pmax:.2f}</td><td><code>{html.escape(source)}</code>"
                    f"<br><span class='dim'>{w}x{h}{where}, sha256 {sha[:16]}…</span>{notes}</td>"
                    f"<td>{''.join(cells)}</td></tr>")
    err_rows = "".join(f"<tr><td><code>{html.escape(s)}</code></td><td class='err'>{html.escape(t)}</td>"
                       f"<td>{html.escape(e.removeprefix(f'{s}: '))}</td></tr>" for s, t, e in errors)  # named once
    noface_rows = "".join(f"<li><code>{html.escape(s)}</code>{_frame_text(f, t)}</li>" for s, f, t in noface)
    more_noface = f" (the first {max_items}; all in items.csv)" if n_noface > len(noface) else ""
    grouping = (f" {unhashed} listed file(s) have no PDQ hash (scanned by an agescan that did not store it) and "
                "are not grouped." if unhashed else "")
    config = json.loads(run["config"])
    prov = "".join(f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(str(v))}</code></td></tr>" for k, v in (
        ("run", rid), ("agescan version", run["agescan_version"]), ("model", run["model_id"]),
        ("model sha256", run["model_sha256"]), ("detector", run["detector_id"]), ("configuration", json.dumps(config)),
        ("config sha256", run["config_hash"]), ("started", _utc(run["started"])),
        ("finished", _utc(run["finished"]) if run["finished"] else "not finished")))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>agescan report: run {rid}</title><style>{_CSS}</style><script>{_JS}</script></head>
<body>
<h1>agescan report: run {rid}</h1>
<p>{scanned}: {len(ages)} face(s), <b>{n_flagged} flagged for review</b> ({rule_text}, decided by the scan),
{n_noface} picture(s) or frame(s) without a face, {len(errors)} error(s).
Faces are <b>blurred</b>; click one to reveal it. Ages are estimates with a 90% interval; P(minor) = P(age &lt; {config.get('minor_age', 18)}).
Every file has its own row; only byte-identical copies share one. Near-duplicates (by PDQ hash: the same picture
re-encoded, resized, retouched or mirrored) are grouped side by side, never hidden.{grouping}</p>
<h2>Estimated ages</h2>
{_histogram_svg(ages)}
<div class="controls"><label for="th">Show every file with a flagged face, and files with highest P(minor) &ge;
<span id="thv"></span></label>
<input id="th" type="range" min="0" max="1" step="0.01" value="{threshold}" oninput="applyThreshold(this.value)">
<span id="shown"></span> file(s) shown{f' (the {max_items} highest; all in items.csv)' if len(items) >= max_items else ''}.</div>
<table id="items"><thead><tr><th>P(minor)</th><th>file</th><th>faces</th></tr></thead><tbody>
{''.join(rows)}
</tbody></table>
<h2>Pictures and frames without a face ({n_noface})</h2>
<details><summary>list{more_noface}: not estimated; a face the detector missed is not flagged</summary>
<ul id="noface">{noface_rows}</ul></details>
<h2>Errors ({len(errors)})</h2>
<table id="errors"><thead><tr><th>file</th><th>type</th><th>reason</th></tr></thead><tbody>{err_rows}</tbody></table>
<h2>Provenance</h2>
<table id="provenance">{prov}</table>
<p class="dim">Exports: <a href="items.csv">items.csv</a>, <a href="faces.csv">faces.csv</a>, <a href="items.jsonl">items.jsonl</a>,
<a href="faces.jsonl">faces.jsonl</a> (with the flag of the rule above).</p>
</body></html>
"""


def _frame_text(frame: int, stamp: float) -> str:
    """Where in its file an item is: a video's or an animation's frame and time, a page's frame number."""
    if frame < 0:
        return ""
    return f", frame {frame} at {stamp:.1f} s" if stamp >= 0 else f", frame {frame}"


def _utc(t: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _item_thumbs(source: str, sha: str, frame: int, faces: list, video_digests: dict[str, str]) -> list[str]:
    try:
        if frame >= 0 and not is_video(source):  # a later frame of an animated or multi-page picture
            image, digest = read_picture_frame(source, frame)
        elif frame >= 0:
            from agescan.io.video import file_sha256, read_frame

            # A video is hashed once per report, not once per listed frame (it may be gigabytes).
            if source not in video_digests:
                video_digests[source] = file_sha256(fs_path(source))
            digest, image = video_digests[source], read_frame(fs_path(source), frame)
        else:
            loaded = load_source(source)
            digest, image = loaded.sha256, loaded.image
    except (AgescanError, OSError) as exc:
        return [f"source unreadable: {exc}"] * len(faces)
    if sha and digest != sha:
        return ["source changed since the scan (sha256 differs): not shown"] * len(faces)
    return [_thumb(image, f[:4]) for f in faces]
