"""A self-contained HTML report of one scan run (opens from disk: no server, no network, no external files).

Files are sorted by their highest P(minor). Face thumbnails are cut from the evidence files (opened
read-only; a file whose sha256 no longer matches the scan is not shown) and embedded as data URIs,
**blurred by default**, revealed one at a time by a click, to spare reviewers needless exposure.
A threshold slider filters the list; identical files (same sha256) are stacked; errors and the run's
provenance are listed. ``items.csv``/``.jsonl`` and ``faces.csv``/``.jsonl`` beside the page export everything.
The database is a SQLite file or a ``postgresql://`` URL, opened read-only.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path

import numpy as np

from agescan.errors import AgescanError, ConfigError
from agescan.io.archives import load_source
from agescan.store import Database, check_schema, connect
from agescan.triage import DEFAULT_CHALLENGE_AGE, DEFAULT_FLAG_THRESHOLD, check_triage, is_flagged

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4;position:sticky;top:0}
.thumb{width:72px;height:72px;margin:2px;filter:blur(10px);cursor:pointer;border:2px solid #999;border-radius:4px}
.thumb.revealed{filter:none;border-color:#c00}
.minor{color:#b00;font-weight:600}.err{color:#a60}.dim{color:#888}
.controls{position:sticky;top:0;background:#fff;padding:.5em 0;z-index:2;border-bottom:1px solid #ccc}
.hist rect{fill:#4a78b0}.hist text{font-size:10px;fill:#333}
code{font-size:12px}
"""

_JS = """
function applyThreshold(v){
  document.getElementById('thv').textContent=Number(v).toFixed(2);
  let shown=0;
  for(const tr of document.querySelectorAll('tr.item')){
    const ok=parseFloat(tr.dataset.pminor)>=v;
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


def _export(db: Database, query: str, args: tuple, csv_path: Path) -> None:
    """Write the rows of ``query`` as CSV and as JSON Lines (same name, ``.jsonl``), streaming."""
    cur = db.execute(query, args)
    cols = [d[0] for d in cur.description]
    with open(csv_path, "w", newline="", encoding="utf-8") as fc, \
            open(csv_path.with_suffix(".jsonl"), "w", encoding="utf-8") as fj:
        w = csv.writer(fc)
        w.writerow(cols)
        for row in cur:
            w.writerow(row)
            rec = dict(zip(cols, row))
            for k in ("landmarks", "distribution"):
                if isinstance(rec.get(k), str):
                    rec[k] = json.loads(rec[k])
            fj.write(json.dumps(rec, ensure_ascii=False) + "\n")


def write_report(db_path: str | Path, out_dir: str | Path, *, run_id: int | None = None,
                 threshold: float = DEFAULT_FLAG_THRESHOLD, challenge_age: float = DEFAULT_CHALLENGE_AGE,
                 max_items: int = 2000, thumbnails: bool = True) -> Path:
    """Write ``out_dir/index.html``, ``items.csv`` and ``faces.csv`` for one run; returns the page's path.

    Args:
        db_path: a results database written by ``agescan scan --db``.
        out_dir: folder for the report (created).
        run_id: which run (default: the latest).
        threshold: flag faces with P(minor) >= this (the triage rule of :mod:`agescan.triage`); also the
            initial value of the page's filter.
        challenge_age: also flag faces whose point age is under this (0 = off).
        max_items: files listed on the page, highest P(minor) first (the CSVs hold all of them).
        thumbnails: cut blurred face thumbnails from the evidence files.
    """
    check_triage(threshold, challenge_age)
    db = connect(db_path, readonly=True)
    try:
        check_schema(db)
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
        rule = "(f.p_minor >= ? OR f.age < ?)"  # agescan.triage.is_flagged, in SQL
        _export(db, f"SELECT items.*, (SELECT COUNT(*) FROM faces f WHERE f.item_id = items.id AND {rule}) "
                    "AS flagged_faces FROM items WHERE run_id=? ORDER BY COALESCE(max_p_minor, -1) DESC, source",
                (threshold, challenge_age, rid), out / "items.csv")
        _export(db, f"SELECT f.*, i.source, i.sha256, CASE WHEN {rule} THEN 1 ELSE 0 END AS flagged "
                    "FROM faces f JOIN items i ON f.item_id = i.id "
                    "WHERE i.run_id=? ORDER BY f.p_minor DESC, i.source, f.face_index",
                (threshold, challenge_age, rid), out / "faces.csv")
        page = _page(db, run, threshold, challenge_age, max_items, thumbnails)
    finally:
        db.close()
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def _page(db: Database, run: dict, threshold: float, challenge_age: float, max_items: int, thumbnails: bool) -> str:
    rid = run["id"]
    items = db.execute("SELECT id, source, sha256, phash, frame_index, timestamp, width, height, n_faces, max_p_minor "
                       "FROM items "
                       "WHERE run_id=? AND error='' AND n_faces > 0 ORDER BY max_p_minor DESC, source LIMIT ?",
                       (rid, max_items)).fetchall()
    dup = dict(db.execute("SELECT sha256, COUNT(*) FROM items WHERE run_id=? AND sha256 != '' AND frame_index < 0 "
                          "GROUP BY sha256 HAVING COUNT(*) > 1", (rid,)).fetchall())
    near = _near_duplicates(items)
    errors = db.execute("SELECT source, error_type, error FROM items WHERE run_id=? AND error != '' ORDER BY source",
                        (rid,)).fetchall()
    face_rows = db.execute("SELECT f.age, f.p_minor FROM faces f JOIN items i ON f.item_id=i.id WHERE i.run_id=?",
                           (rid,)).fetchall()
    ages = [a for a, _ in face_rows]
    n_flagged = sum(is_flagged(pm, a, threshold, challenge_age) for a, pm in face_rows)
    rule = f"P(minor) &ge; {threshold:g}" + (f" or estimated age &lt; {challenge_age:g}" if challenge_age else "")
    n_items, n_noface = db.execute("SELECT COUNT(*), SUM(CASE WHEN n_faces = 0 AND error = '' THEN 1 ELSE 0 END) "
                                   "FROM items WHERE run_id=?", (rid,)).fetchone()
    n_noface = int(n_noface or 0)
    seen_sha: set[str] = set()
    video_digests: dict[str, str] = {}
    rows = []
    for item_id, source, sha, ph, frame, stamp, w, h, n_faces, pmax in items:
        if (sha in dup and sha in seen_sha) or item_id in near["hidden"]:
            continue  # stacked under the first copy
        seen_sha.add(sha)
        faces = db.execute("SELECT x1, y1, x2, y2, age, interval_lo, interval_hi, p_minor, age_group FROM faces "
                           "WHERE item_id=? ORDER BY face_index", (item_id,)).fetchall()
        thumbs = _item_thumbs(source, sha, frame, faces, video_digests) if thumbnails else [""] * len(faces)
        cells = []
        for (x1, y1, x2, y2, age, lo, hi, pm, group), t in zip(faces, thumbs):
            img = (f"<img class='thumb' src='{t}' alt='face, blurred: click to reveal' title='click to reveal' "
                   f"onclick='reveal(this)'>" if t.startswith("data:") else f"<span class='dim'>{html.escape(t)}</span>")
            flag = is_flagged(pm, age, threshold, challenge_age)
            cls = " class='minor'" if flag else ""
            cells.append(f"<div>{img}<span{cls}>{'FLAGGED: ' if flag else ''}age {age:.1f} ({lo:.0f}-{hi:.0f}), "
                         f"P(minor) {pm:.2f}, {group}</span></div>")
        stack = f"<br><span class='dim'>{dup[sha]} identical copies (sha256)</span>" if sha in dup else ""
        if near["stacks"].get(item_id):
            others = ", ".join(html.escape(s) for s in near["stacks"][item_id][:5])
            stack += (f"<br><span class='dim'>{len(near['stacks'][item_id])} near-duplicate(s) (perceptual hash): "
                      f"{others}</span>")
        where = f", frame {frame} at {stamp:.1f} s" if frame >= 0 else ""
        rows.append(f"<tr class='item' data-pminor='{pmax:.4f}'><td class='{'minor' if pmax >= threshold else ''}'>"
                    f"{pmax:.2f}</td><td><code>{html.escape(source)}</code><br><span class='dim'>{w}x{h}{where}, sha256 "
                    f"{sha[:16]}…</span>{stack}</td><td>{''.join(cells)}</td></tr>")
    err_rows = "".join(f"<tr><td><code>{html.escape(s)}</code></td><td class='err'>{html.escape(t)}</td>"
                       f"<td>{html.escape(e)}</td></tr>" for s, t, e in errors)
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
<p>{n_items} file(s) scanned: {len(ages)} face(s), <b>{n_flagged} flagged for review</b> ({rule}),
{n_noface} file(s) without a face, {len(errors)} error(s).
Faces are <b>blurred</b>; click one to reveal it. Ages are estimates with a 90% interval; P(minor) = P(age &lt; {config.get('minor_age', 18)}).</p>
<h2>Estimated ages</h2>
{_histogram_svg(ages)}
<div class="controls"><label for="th">Show files with highest P(minor) &ge; <span id="thv"></span></label>
<input id="th" type="range" min="0" max="1" step="0.01" value="{threshold}" oninput="applyThreshold(this.value)">
<span id="shown"></span> file(s) shown{f' (the {max_items} highest; all in items.csv)' if len(items) >= max_items else ''}.</div>
<table id="items"><thead><tr><th>P(minor)</th><th>file</th><th>faces</th></tr></thead><tbody>
{''.join(rows)}
</tbody></table>
<h2>Errors ({len(errors)})</h2>
<table id="errors"><thead><tr><th>file</th><th>type</th><th>reason</th></tr></thead><tbody>{err_rows}</tbody></table>
<h2>Provenance</h2>
<table id="provenance">{prov}</table>
<p class="dim">Exports: <a href="items.csv">items.csv</a>, <a href="faces.csv">faces.csv</a>, <a href="items.jsonl">items.jsonl</a>,
<a href="faces.jsonl">faces.jsonl</a> (with the flag of the rule above).</p>
</body></html>
"""


#: dHash bits that may differ for two pictures to stack as near-duplicates (re-encoded or resized copies
#: differ by a few bits; unrelated photos by about 32).
NEAR_DUPLICATE_BITS = 6


def _near_duplicates(items: list) -> dict:
    """Greedy stacks of listed still images whose perceptual hashes are within NEAR_DUPLICATE_BITS.

    Identical files (same sha256) are stacked separately; video frames are never stacked.
    """
    from agescan.io.phash import hamming

    heads: list[tuple[int, str, str]] = []
    stacks: dict[int, list[str]] = {}
    hidden: set[int] = set()
    for item_id, source, sha, ph, frame, *_ in items:
        if not ph or frame >= 0:
            continue
        for head_id, head_ph, head_sha in heads:
            if sha != head_sha and hamming(ph, head_ph) <= NEAR_DUPLICATE_BITS:
                stacks.setdefault(head_id, []).append(source)
                hidden.add(item_id)
                break
        else:
            heads.append((item_id, ph, sha))
    return {"stacks": stacks, "hidden": hidden}


def _utc(t: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _item_thumbs(source: str, sha: str, frame: int, faces: list, video_digests: dict[str, str]) -> list[str]:
    try:
        if frame >= 0:
            from agescan.io.video import file_sha256, read_frame

            # A video is hashed once per report, not once per listed frame (it may be gigabytes).
            if source not in video_digests:
                video_digests[source] = file_sha256(source)
            digest, image = video_digests[source], read_frame(source, frame)
        else:
            loaded = load_source(source)
            digest, image = loaded.sha256, loaded.image
    except (AgescanError, OSError) as exc:
        return [f"source unreadable: {exc}"] * len(faces)
    if sha and digest != sha:
        return ["source changed since the scan (sha256 differs): not shown"] * len(faces)
    return [_thumb(image, f[:4]) for f in faces]
