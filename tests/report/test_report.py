"""The HTML report: built from a real scan database, checked as a file and in a real headless Chromium."""

from __future__ import annotations

import csv
import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agescan import DEFAULT_MODEL, read_image
from tests.conftest import UTKFACE, lookalike_paths, utkface_rows

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory, astronaut_path):
    import cv2

    rows = utkface_rows("test")
    child = next(r for r in rows if r["age"] == "3")
    tmp = tmp_path_factory.mktemp("report")
    ev = tmp / "evidence"
    (ev / "sub").mkdir(parents=True)
    (ev / "astronaut.png").write_bytes(astronaut_path.read_bytes())
    (ev / "sub" / "astronaut copy.png").write_bytes(astronaut_path.read_bytes())
    Image.open(astronaut_path).convert("RGB").resize((300, 300)).save(ev / "astronaut small.jpg", quality=75)
    Image.open(astronaut_path).convert("RGB").save(ev / "astronaut q60.jpg", quality=60)
    for name, path in [("child.jpg", UTKFACE / child["path"])] + [(f"lookalike {i}.jpg", p)
                                                                  for i, p in enumerate(lookalike_paths())]:
        chip = cv2.copyMakeBorder(read_image(path), 80, 80, 80, 80, cv2.BORDER_REPLICATE)
        Image.fromarray(chip).save(ev / name, quality=95)
    Image.new("RGB", (120, 90), (90, 140, 60)).save(ev / "lawn.png")
    (ev / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)
    db = tmp / "case #1 (copy?).sqlite"  # characters that break naive sqlite URIs
    run = [sys.executable, "-m", "agescan"]
    # A threshold between the child's P(minor) (> 0.9) and the adult astronaut's (0.1-0.25 with the default
    # pipeline): at the default model card's threshold the triage rightly sends this adult to review too, as it
    # does about 30% of adults.
    scan = subprocess.run([*run, "scan", str(ev), "--db", str(db), "--no-progress", "--flag-threshold", "0.3"],
                          capture_output=True, text=True)
    assert scan.returncode == 1, scan.stderr
    rep = subprocess.run([*run, "report", "--db", str(db), "--out", str(tmp / "report")],  # filter starts at 0.3
                         capture_output=True, text=True)
    assert rep.returncode == 0, rep.stderr
    return tmp / "report"


def _rows(page: str) -> list[tuple[str, str, str]]:
    """(group number or '', P(minor), first file name) of each row of the page's file table, in order."""
    return re.findall(r"<tr class='item[^']*'(?: data-group='(\d+)')? data-pminor='([0-9.]+)'[^>]*>.*?<code>([^<]+)</code>",
                      page)


def test_report_page_and_exports(report_dir):
    page = (report_dir / "index.html").read_text(encoding="utf-8")
    ev = report_dir.parent / "evidence"
    files = sorted(str(p) for p in ev.rglob("*") if p.is_file())
    # every scanned file is named exactly once on the page (its row, its identical copy's row, the faceless
    # list or the errors) and in each export
    assert all(page.count(html.escape(f)) == 1 for f in files), [f for f in files if page.count(html.escape(f)) != 1]
    items = list(csv.DictReader(open(report_dir / "items.csv", encoding="utf-8")))
    jsonl = [json.loads(x) for x in (report_dir / "items.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(i["source"] for i in items) == sorted(r["source"] for r in jsonl) == files
    rows = _rows(page)
    names = [Path(n).name for _, _, n in rows]
    # 8 rows: the child, four different people whose old 64-bit dHashes were 1-2 bits apart (each its own row,
    # never grouped), and the astronaut's 3 near-duplicates (one row per file, side by side, one group)
    assert len(rows) == 8 and names[0] == "child.jpg" and float(rows[0][1]) > 0.9
    assert sorted(n for n in names if n.startswith("lookalike")) == [f"lookalike {i}.jpg" for i in range(4)]
    assert all(g == "" for (g, _, _), n in zip(rows, names) if not n.startswith("astronaut"))
    astro = [i for i, n in enumerate(names) if n.startswith("astronaut")]
    # (in the order of their P(minor), which the three versions' slightly different pixels set)
    assert sorted(names[i] for i in astro) == ["astronaut q60.jpg", "astronaut small.jpg", "astronaut.png"]
    assert astro == list(range(astro[0], astro[0] + 3)) and {rows[i][0] for i in astro} == {"1"}
    assert "near-duplicate group 1 (3 files, PDQ hash)" in page
    assert "2 identical copies (sha256); also: <code>" in page and "astronaut copy.png" in page
    # Files with a flagged face first, then the others, each by descending P(minor); a group sits at its first
    # member's place, its members right after it
    flagged_rows = re.findall(r"<tr class='item[^']*'[^>]* data-flagged='([01])'>", page)
    assert len(flagged_rows) == len(rows)
    leaders = [(int(f), float(p)) for k, ((g, p, _), f) in enumerate(zip(rows, flagged_rows))
               if g == "" or g != rows[k - 1][0]]
    assert leaders == sorted(leaders, reverse=True)
    in_group = [float(rows[i][1]) for i in astro]
    assert in_group == sorted(in_group, reverse=True)
    assert page.count("class='thumb'") == 8 and "revealed" not in page.split("<body>")[1].split("<script")[0]
    assert "broken.jpg" in page and "DecodeError" in page and "Pictures and frames without a face (1)" in page
    assert "http://" not in page and "https://" not in page
    # the provenance table names what produced these results: the model by id and the sha256 of its file, the
    # detector, and the configuration with the triage rule of the scan
    prov = dict(re.findall(r"<tr><th>([^<]+)</th><td><code>([^<]*)</code></td></tr>",
                           page.split("<table id=\"provenance\">")[1].split("</table>")[0]))
    from agescan.detect import DEFAULT_DETECTOR
    from agescan.models import create_model

    assert prov["model"] == DEFAULT_MODEL and prov["model sha256"] == create_model(DEFAULT_MODEL).sha256
    assert prov["detector"] == DEFAULT_DETECTOR and prov["finished"] != "not finished"
    assert json.loads(html.unescape(prov["configuration"]))["flag_threshold"] == 0.3
    assert len(items) == 11 and float(items[0]["max_p_minor"]) > 0.9
    assert all(len(i["pdq"]) == 64 for i in items if i["error"] == "")
    faces = list(csv.DictReader(open(report_dir / "faces.csv", encoding="utf-8")))
    assert len(faces) == 9
    lines = [json.loads(x) for x in (report_dir / "faces.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["source"] for r in lines] == [r["source"] for r in faces]
    assert len(lines[0]["distribution"]["probs"]) == 101 and len(lines[0]["landmarks"]) == 5
    # triage at the scan's threshold 0.3, per face, by the refer rule of agescan.decisions: flagged unless
    # P(minor) < 0.3 and the interval of level 1 - 2 x 0.3 lies at or above 18 (the child first)
    from agescan import AgeEstimator

    decider = AgeEstimator().decider
    probs = np.array([r["distribution"]["probs"] for r in lines])
    low = decider.refer_low(probs, [r["age"] for r in lines], 0.3)
    expected = [str(int(float(f["p_minor"]) >= 0.3 or lo < 18)) for f, lo in zip(faces, low)]
    assert [f["flagged"] for f in faces] == expected
    assert faces[0]["flagged"] == "1" and faces[-1]["flagged"] == "0"
    n_flagged = sum(f["flagged"] == "1" for f in faces)
    assert f"{n_flagged} flagged for review" in page
    assert int(items[0]["flagged_faces"]) == 1


def _summary(folder: Path) -> list[tuple]:
    rows = csv.DictReader(open(folder / "items.csv", encoding="utf-8"))
    return [(r["source"], r["sha256"], r["n_faces"], round(float(r["max_p_minor"] or -1), 4), r["error_type"])
            for r in rows]


def test_the_same_scan_into_postgresql_gives_the_same_report(report_dir, postgres_server):
    url = postgres_server()
    run = [sys.executable, "-m", "agescan"]
    scan = subprocess.run([*run, "scan", str(report_dir.parent / "evidence"), "--db", url, "--no-progress"],
                          capture_output=True, text=True)
    assert scan.returncode == 1 and "11 file(s), 9 face(s), 1 error(s)" in scan.stderr, scan.stderr
    out = report_dir.parent / "report-pg"
    rep = subprocess.run([*run, "report", "--db", url, "--out", str(out)], capture_output=True, text=True)
    assert rep.returncode == 0, rep.stderr
    assert _summary(out) == _summary(report_dir)
    # the flags are the scan's, stored with each face: here the default rule, the default model card's threshold T
    # with its refer interval (level 1 - 2T)
    from agescan import AgeEstimator

    est = AgeEstimator()
    T = est.flag_threshold
    faces = list(csv.DictReader(open(out / "faces.csv", encoding="utf-8")))
    lines = [json.loads(x) for x in (out / "faces.jsonl").read_text(encoding="utf-8").splitlines()]
    low = est.decider.refer_low(np.array([r["distribution"]["probs"] for r in lines]), [r["age"] for r in lines], T)
    assert [f["flagged"] for f in faces] == [str(int(float(f["p_minor"]) >= T or lo < 18)) for f, lo in zip(faces, low)]
    # a scan with a challenge age of 99 is another run (its rule is part of the run key) that flags every face,
    # and the report of that run shows the flags and the rule the scan used
    scan = subprocess.run([*run, "scan", str(report_dir.parent / "evidence"), "--db", url, "--no-progress",
                           "--challenge-age", "99"], capture_output=True, text=True)
    assert "run 2 now holds 11 file(s), 9 face(s), 1 error(s), 9 face(s) flagged" in scan.stderr, scan.stderr
    rep = subprocess.run([*run, "report", "--db", url, "--out", str(out)], capture_output=True, text=True)
    assert rep.returncode == 0, rep.stderr
    assert [f["flagged"] for f in csv.DictReader(open(out / "faces.csv", encoding="utf-8"))] == ["1"] * 9
    page = (out / "index.html").read_text(encoding="utf-8")
    assert f"9 flagged for review</b> (P(minor) &ge; {T:g} or estimated age &lt; 99" in page
    pages = [(d / "index.html").read_text(encoding="utf-8") for d in (out, report_dir)]
    assert [(g, n) for g, _, n in _rows(pages[0])] == [(g, n) for g, _, n in _rows(pages[1])]  # same rows, groups


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_report_in_headless_chromium(report_dir, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (test extra) is not installed")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page()
        requests, problems = [], []
        page.on("request", lambda r: requests.append(r.url))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto((report_dir / "index.html").as_uri())
        thumbs = page.locator("img.thumb")
        assert thumbs.count() == 8
        assert "blur" in thumbs.first.evaluate("e => getComputedStyle(e).filter")
        # at the report's threshold 0.3: the child, the girl of 16 and one adult (P(minor) 0.39), and every file
        # with a flagged face whatever its P(minor) (two adults whose intervals reach under 18: hidden at load
        # before this was fixed)
        rows = page.locator("tr.item")
        state = [rows.nth(i).evaluate("e => [e.dataset.flagged, parseFloat(e.dataset.pminor), e.offsetParent !== null]")
                 for i in range(rows.count())]
        assert all(visible for flagged, _, visible in state if flagged == "1")
        assert [visible for _, _, visible in state] == [flagged == "1" or p >= 0.3 for flagged, p, _ in state]
        assert sum(p >= 0.3 for _, p, _ in state) == 3 and sum(f == "1" and p < 0.3 for f, p, _ in state) == 2
        assert page.locator("#shown").inner_text() == "5"
        thumbs.first.click()
        assert thumbs.first.evaluate("e => getComputedStyle(e).filter") == "none"
        assert "blur" in thumbs.nth(1).evaluate("e => getComputedStyle(e).filter")  # one at a time
        page.locator("#th").fill("0")
        assert page.locator("#shown").inner_text() == "8"
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 10_000
    assert problems == []
    assert all(u.startswith(("file:", "data:")) for u in requests), requests


def test_a_profile_face_is_marked_in_the_page_and_its_pose_exported(tmp_path, estimator, astronaut_path):
    """A real turned face (fairface270, CC BY 4.0) is framed from its box and the report says "profile"; the frontal
    astronaut is not marked."""
    from agescan.report import write_report
    from agescan.store import ResultStore
    from tests.conftest import FAIRFACE, fairface_rows

    fairface_rows()
    profile = FAIRFACE / "images" / "fairface_0375.jpg"
    results = [estimator.predict(profile), estimator.predict(astronaut_path)]
    assert any(f.framing == "box" for f in results[0].faces) and results[1].faces[0].framing == "aligned"
    with ResultStore(str(tmp_path / "case.sqlite")) as store:
        store.add(store.open_run({"t": 1}, "m", "sha", "d", "0"), results)
    page = write_report(str(tmp_path / "case.sqlite"), tmp_path / "r", thumbnails=False).read_text(encoding="utf-8")
    n_box = sum(f.framing == "box" for f in results[0].faces)
    assert page.count("class='profile'") == n_box and "framed from its box" in page
    with open(tmp_path / "r" / "faces.csv", newline="", encoding="utf-8") as fh:
        faces = list(csv.DictReader(fh))
    assert sorted(r["framing"] for r in faces).count("box") == n_box and all(r["yaw"] != "" for r in faces)
