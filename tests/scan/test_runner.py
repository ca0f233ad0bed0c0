"""agescan.scan: the frozen configuration that keys runs (the keys of earlier versions still resume), run_scan into
files and stores, nested archives read in place, and the CLI on top of it."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from agescan import AgeEstimator, InputError
from agescan.io import iter_sources
from agescan.io.archives import load_source
from agescan.results import to_dict
from agescan.scan import FileSink, ScanConfig, StoreSink, run_scan
from agescan.store import connect
from agescan.triage import LEGACY_RULE, is_flagged

#: The results database as agescan wrote it before stored triage flags (schema version 2), verbatim.
SCHEMA_V2 = Path(__file__).parent / "data" / "schema_v2.sql"


def _previous_run_key(est, sources: list[str], recursive: bool, scene_change: float = 0.0) -> dict:
    """The run key as agescan built it before agescan.scan existed: verbatim from ``_scan_db`` in
    src/agescan/cli/main.py at commit 674acdf (``a.detector`` etc. were the parsed options; ``sources`` absolute)."""
    config = {"sources": sources, "recursive": recursive, "model_id": est.model.id, "model_sha256": est.model.sha256,
              "detector": est.detector_name, "min_face_size": est.min_face_size, "minor_age": est.minor_age,
              "interval": est.interval_level, "max_pixels": est.max_pixels, "video_every": est.video_every}
    if scene_change:  # only when used, so the runs of earlier versions resume unchanged
        config["video_scene"] = scene_change
    return config


def _previous_hash(config: dict) -> str:
    """``config_hash`` of src/agescan/store/resultstore.py at commit 674acdf, verbatim."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


@pytest.fixture()
def folder(tmp_path, astronaut_path):
    d = tmp_path / "evidence"
    d.mkdir()
    im = Image.open(astronaut_path).convert("RGB")
    for i in range(4):
        im.rotate(i * 4).save(d / f"photo {i}.jpg", quality=90)
    (d / "zz broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 30)
    return d


#: The settings of the previous version's default scan: MTCNN, and the triage rule of that time (the rule it never
#: stored, which a run key without one means).
PREVIOUS = {"detector": "mtcnn", "flag_threshold": LEGACY_RULE[0], "challenge_age": LEGACY_RULE[1], "profile_yaw": 90}


def test_the_run_key_is_the_key_earlier_versions_wrote(folder):
    est = AgeEstimator(**PREVIOUS)
    cfg = ScanConfig.of(est, [folder])
    legacy = _previous_run_key(est, [str(folder)], True)
    assert cfg.key() == legacy and cfg.key_hash() == _previous_hash(legacy)
    # settings that change speed, not results, are not part of the key; nor is the archive depth (what is found)
    fast = AgeEstimator(**PREVIOUS, workers=2, batch_size=8, threads=1)
    assert ScanConfig.of(fast, [folder], archive_depth=1).key_hash() == cfg.key_hash()
    # a setting added later enters the key only when it differs from what earlier versions did without it
    scenes = AgeEstimator(**PREVIOUS, video_scene=0.15)
    assert ScanConfig.of(scenes, [folder]).key() == _previous_run_key(scenes, [str(folder)], True, 0.15)
    other = ScanConfig.of(AgeEstimator(flag_threshold=0.3, challenge_age=25), [folder]).key()
    assert (other["flag_threshold"], other["challenge_age"]) == (0.3, 25.0)
    # pictures in a privacy condition (the card's thresholds for it) are another run, named in the key
    assert ScanConfig.of(AgeEstimator(**PREVIOUS, condition="eye-mosaic"), [folder]).key()["condition"] == "eye-mosaic"
    # pose-aware framing (some faces framed from their box) is another run; 90 (always warp) is what earlier did
    assert ScanConfig.of(AgeEstimator(**{**PREVIOUS, "profile_yaw": 45}), [folder]).key()["profile_yaw"] == 45
    # today's defaults (another detector, another threshold) are another run: its results would differ
    assert ScanConfig.of(AgeEstimator(), [folder]).key_hash() != cfg.key_hash()
    # relative and absolute spellings of a source are one run
    rel = os.path.relpath(folder)
    assert ScanConfig.of(est, rel).key_hash() == cfg.key_hash()
    with pytest.raises(InputError, match="'archive_depth' parameter of ScanConfig"):
        ScanConfig.of(est, [folder], archive_depth=0)


def _previous_version_database(target: str, key: dict, results) -> None:
    """A results database exactly as the previous version left it after an interrupted scan: schema 2, the run
    keyed by its key, the first results stored by its statements (verbatim from ResultStore._add_one at 674acdf)."""
    db = connect(target)
    with db.transaction():
        db.script(SCHEMA_V2.read_text())
        db.execute("INSERT INTO meta VALUES ('schema_version', '2'), ('result_schema', 'agescan.result/2')")
        run = db.execute("INSERT INTO runs (config_hash, config, agescan_version, model_id, model_sha256, "
                         "detector_id, started) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                         (_previous_hash(key), json.dumps(key, sort_keys=True), "0.1.0", key["model_id"],
                          key["model_sha256"], key["detector"], 0.0)).fetchone()[0]
        for r in results:
            d = to_dict(r, include_distribution=True)
            item_id = db.execute(
                "INSERT INTO items (run_id, source, frame_index, timestamp, sha256, pdq, pdq_mirror, pdq_quality, "
                "width, height, n_faces, max_p_minor, error, error_type, scanned) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (run_id, source, frame_index) DO NOTHING RETURNING id",
                (run, d["source"], d["frame_index"], d["timestamp"], d["sha256"], d["pdq"], d["pdq_mirror"],
                 d["pdq_quality"], d["width"], d["height"], len(d["faces"]),
                 max((f["p_minor"] for f in d["faces"]), default=None), d["error"], d["error_type"],
                 0.0)).fetchone()[0]
            db.executemany(
                "INSERT INTO faces (item_id, face_index, x1, y1, x2, y2, landmarks, detector_score, age, "
                "interval_lo, interval_hi, interval_level, p_minor, minor_age, age_group, model_id, distribution) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(item_id, i, *f["box"], json.dumps(f["landmarks"]), f["detector_score"], f["age"], *f["interval"],
                  f["interval_level"], f["p_minor"], f["minor_age"], f["age_group"], f["model_id"],
                  json.dumps(f["distribution"])) for i, f in enumerate(d["faces"])])
    db.close()


@pytest.mark.slow
def test_a_run_written_by_the_previous_version_resumes(store_target, folder):
    est = AgeEstimator(**PREVIOUS)
    files = sorted(str(p) for p in folder.iterdir())
    first = [est.predict(p) for p in files[:2]]
    _previous_version_database(store_target, _previous_run_key(est, [str(folder)], True), first)
    # the previous version's command, with the settings that were its defaults named
    out = subprocess.run([sys.executable, "-m", "agescan", "scan", str(folder), "--db", store_target, "--no-progress",
                          "--detector", PREVIOUS["detector"], "--flag-threshold", str(PREVIOUS["flag_threshold"]),
                          "--profile-yaw", str(PREVIOUS["profile_yaw"])],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stderr  # the broken file
    assert f"resuming: 2 of 5 file(s) already in {store_target}" in out.stderr
    assert "scanned 3 new or retried file(s)" in out.stderr and "run 1 now holds 5 file(s), 4 face(s), 1 error(s)" in out.stderr
    db = connect(store_target, readonly=True)
    assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1
    rows = db.execute("SELECT source, COUNT(*) FROM items GROUP BY source ORDER BY source").fetchall()
    assert [s for s, _ in rows] == files and all(c == 1 for _, c in rows)
    flags = db.execute("SELECT i.source, f.p_minor, f.age, f.flagged FROM faces f JOIN items i ON f.item_id = i.id "
                       "ORDER BY i.source").fetchall()
    # the faces stored by the previous version were flagged by its rule when the database was upgraded; the new
    # ones by the estimator (the same rule: the run's key holds none other)
    assert [bool(f) for *_, f in flags] == [is_flagged(p, a, *LEGACY_RULE) for _, p, a, _ in flags]
    db.close()


def test_run_scan_into_a_file_and_a_store(tmp_path, folder):
    est = AgeEstimator(workers=2, flag_threshold=0.3)
    jsonl = tmp_path / "out.jsonl"
    s = run_scan(est, [folder], FileSink(jsonl))
    recs = [json.loads(x) for x in jsonl.read_text(encoding="utf-8").splitlines()]
    assert (s.files, s.items, s.faces, s.errors) == (5, 5, 4, 1) and len(recs) == 5
    assert s.flagged == sum(f["flagged"] for r in recs for f in r["faces"])
    assert all(f["flagged"] == (f["p_minor"] >= 0.3) for r in recs for f in r["faces"])
    assert all(r["provenance"]["flag_threshold"] == 0.3 for r in recs)
    assert not Path(str(jsonl) + ".partial").exists()
    with pytest.raises(InputError, match="exists; pass --overwrite"):
        run_scan(est, [folder], FileSink(jsonl))
    with pytest.raises(InputError, match="output format"):
        FileSink(tmp_path / "out.txt")

    db = str(tmp_path / "case.sqlite")
    s2 = run_scan(est, [folder], StoreSink(db))
    assert s2.counts() == s.counts()
    assert s2.held == {"items": 5, "files": 5, "faces": 4, "flagged": s.flagged, "errors": 1}
    again = run_scan(est, [folder], StoreSink(db))  # a rerun resumes: nothing left to do but the broken file
    assert (again.files, again.skipped, again.errors, again.run_id) == (1, 4, 1, s2.run_id) and again.held == s2.held
    stored = connect(db, readonly=True).execute("SELECT source, flagged FROM faces f JOIN items i "
                                                "ON f.item_id = i.id ORDER BY source").fetchall()
    assert [(s, bool(fl)) for s, fl in stored] == [(r["source"], f["flagged"]) for r in recs for f in r["faces"]]


def _astronaut_jpeg(astronaut_path):
    """A function of a size giving the astronaut as a square JPEG of that size: one picture per size, so that an
    item read back by its id shows which file it came from."""
    def picture(size: int) -> bytes:
        buf = io.BytesIO()
        Image.open(astronaut_path).convert("RGB").resize((size, size)).save(buf, format="JPEG", quality=90)
        return buf.getvalue()

    return picture


def _zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tar(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture()
def nested(tmp_path, astronaut_path):
    png = astronaut_path.read_bytes()
    deepest = _zip({"d.png": png})
    deeper = _tar({"c.png": png, "deepest.zip": deepest})
    inner = _zip({"b.png": png, "deeper.tar.gz": deeper})
    case = tmp_path / "case"
    case.mkdir()
    (case / "outer.zip").write_bytes(_zip({"a.png": png, "inner.zip": inner, "clip.mp4": b"\x00" * 100,
                                           "broken inner.zip": b"PK\x03\x04 not a zip", "renamed.dat": png,
                                           "notes.txt": b"not an image"}))
    return case


def test_nested_archives_are_read_in_place_to_a_bounded_depth(nested, astronaut_path):
    outer = str(nested / "outer.zip")
    items = list(iter_sources(nested))
    ids = [i.path.removeprefix(outer + "::") for i in items]
    assert ids == ["a.png", "broken inner.zip", "clip.mp4", "inner.zip::b.png", "inner.zip::deeper.tar.gz::c.png",
                   "inner.zip::deeper.tar.gz::deepest.zip", "renamed.dat"]
    errors = {i.path.removeprefix(outer + "::"): i.error for i in items if i.error}
    assert errors["broken inner.zip"].startswith("cannot read nested archive")
    assert errors["clip.mp4"].startswith("video inside an archive: not read")
    assert errors["inner.zip::deeper.tar.gz::deepest.zip"].startswith("archive nested 4 levels deep: not read")
    assert [i.member for i in items if not i.error] == ["a.png", "inner.zip::b.png", "inner.zip::deeper.tar.gz::c.png",
                                                       "renamed.dat"]
    shallow = [(i.path.removeprefix(outer + "::"), i.error[:31]) for i in iter_sources(nested, archive_depth=1)]
    assert ("inner.zip", "archive nested 2 levels deep: n") in shallow
    assert len(list(iter_sources(nested, archive_depth=4))) == 7  # deepest.zip::d.png instead of its record
    # the estimator reads every member in place, from memory; nothing is written beside the evidence
    before = sorted(os.listdir(nested))
    results = {r.source.removeprefix(outer + "::"): r for r in AgeEstimator(workers=2).stream(nested)}
    sha = hashlib.sha256(astronaut_path.read_bytes()).hexdigest()
    for name in ("a.png", "inner.zip::b.png", "inner.zip::deeper.tar.gz::c.png", "renamed.dat"):
        assert len(results[name].faces) == 1 and results[name].provenance.sha256 == sha, name
    assert results["clip.mp4"].error_type == "DecodeError" and "video inside an archive" in results["clip.mp4"].error
    assert sorted(os.listdir(nested)) == before
    # a report cuts thumbnails by source id, at any depth
    assert load_source(outer + "::inner.zip::deeper.tar.gz::c.png").image.shape == (512, 512, 3)


@pytest.mark.slow
def test_estimate_prints_each_result_as_it_is_ready(tmp_path, astronaut_path):
    """The second input is a named pipe nobody writes yet: the first result must be printed before it is read."""
    fifo = tmp_path / "later.png"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-m", "agescan", "estimate", "--json", "--batch-size", "1",
                             str(astronaut_path), str(fifo)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first: list[str] = []
    reader = threading.Thread(target=lambda: first.append(proc.stdout.readline()))
    reader.start()
    reader.join(timeout=120)
    try:
        assert first and json.loads(first[0])["source"] == str(astronaut_path)
        assert proc.poll() is None  # still waiting for the second input
    finally:
        with open(fifo, "wb") as fh:  # unblock it: not an image
            fh.write(b"not an image")
        rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "not a recognised image" in json.loads(rest.splitlines()[-1])["error"]


def test_names_that_are_not_utf8_and_folders_named_with_the_archive_separator(tmp_path, astronaut_path):
    """POSIX names are bytes: a Latin-1 file, folder, archive and tar member name used to end the scan with a
    UnicodeEncodeError at the first write (SQLite, JSON Lines and CSV alike, every later file never scanned), and a
    folder named with "::" made the report read its archive's members from the wrong file. Now each is recorded as
    text (undecodable bytes as \\xNN), resumes, and its report shows its face."""
    from agescan.io.names import os_name, text_name

    picture = _astronaut_jpeg(astronaut_path)

    root = tmp_path / "case"
    latin = os.fsdecode(b"caf\xe9")  # str with a surrogate escape, as os.listdir gives it
    (root / "a").mkdir(parents=True)
    (root / "a" / "first.jpg").write_bytes(picture(300))
    (root / f"{latin}.jpg").write_bytes(picture(310))
    (root / f"dir {latin}").mkdir()
    (root / f"dir {latin}" / "inside.jpg").write_bytes(picture(320))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT, encoding="utf-8",
                      errors="surrogateescape") as tf:
        data = picture(330)
        info = tarfile.TarInfo(f"member {latin}.jpg")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    (root / f"{latin}.tar").write_bytes(buf.getvalue())
    (root / "case::2").mkdir()
    (root / "case::2" / "b.zip").write_bytes(_zip({"m.jpg": picture(340)}))
    (root / "z.jpg").write_bytes(picture(350))
    assert text_name(latin) == "caf\\xe9" and os_name(str(root / "caf\\xe9.jpg")) == str(root / f"{latin}.jpg")

    expected = sorted(str(root) + "/" + s for s in (  # a name's "::" is escaped: "::" only separates a member
        "a/first.jpg", "caf\\xe9.jpg", "caf\\xe9.tar::member caf\\xe9.jpg", "case\\x3a\\x3a2/b.zip::m.jpg",
        "dir caf\\xe9/inside.jpg", "z.jpg"))
    est = AgeEstimator()
    for out in ("out.jsonl", "out.csv"):
        s = run_scan(est, [root], FileSink(tmp_path / out))
        assert (s.files, s.faces, s.errors) == (6, 6, 0), out
    recs = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(r["source"] for r in recs) == expected
    assert all(len(r["faces"]) == 1 for r in recs)
    db = str(tmp_path / "case.sqlite")
    s = run_scan(est, [root], StoreSink(db))
    assert (s.files, s.faces, s.errors) == (6, 6, 0)
    again = run_scan(est, [root], StoreSink(db))  # resumes: every item is found under the id it was stored by
    assert (again.files, again.skipped) == (0, 6)
    assert sorted(r[0] for r in connect(db, readonly=True).execute("SELECT source FROM items")) == expected
    for sid in expected:  # what the report opens to cut thumbnails
        assert load_source(sid).image.shape[:2] in {(300 + 10 * k, 300 + 10 * k) for k in range(6)}, sid
    rep = subprocess.run([sys.executable, "-m", "agescan", "report", "--db", db, "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=300)
    assert rep.returncode == 0, rep.stderr
    page = (tmp_path / "r" / "index.html").read_text(encoding="utf-8")
    assert page.count("class='thumb'") == 6 and "source unreadable" not in page


def test_a_rerun_tries_errors_again_and_drops_those_no_longer_listed(tmp_path, astronaut_path, store_target):
    """An item stored with an error is not done: a file that was incomplete when first scanned (still being copied,
    a share that dropped) is read by the rerun, its result replacing the error; an archive that could not be opened
    and now can has its members scanned, and its own stale error record is dropped when the rerun completes. Before,
    errors were skipped as done forever."""
    good = astronaut_path.read_bytes()
    case = tmp_path / "case"
    case.mkdir()
    (case / "a.png").write_bytes(good)
    (case / "copying.png").write_bytes(good[:200])  # truncated
    (case / "b.zip").write_bytes(b"PK\x03\x04 half written")
    (case / "broken.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 20)  # stays broken
    db = store_target
    est = AgeEstimator()
    first = run_scan(est, [case], StoreSink(db))
    assert (first.files, first.faces, first.errors) == (4, 1, 3)

    (case / "copying.png").write_bytes(good)
    (case / "b.zip").write_bytes(_zip({"m.png": good}))
    sink = StoreSink(db)
    again = run_scan(est, [case], sink)
    assert (again.skipped, again.files, again.faces, again.errors) == (1, 3, 2, 1)  # a.png skipped; 3 tried
    assert sink.dropped == 1 and again.run_id == first.run_id
    con = connect(db, readonly=True)
    rows = con.execute("SELECT source, n_faces, error_type FROM items ORDER BY source").fetchall()
    assert [(Path(s).name, n, t) for s, n, t in rows] == [
        ("a.png", 1, ""), ("b.zip::m.png", 1, ""), ("broken.jpg", 0, "DecodeError"), ("copying.png", 1, "")]
    assert again.held == {"items": 4, "files": 4, "faces": 3, "flagged": again.held["flagged"], "errors": 1}
    con.close()
    third = run_scan(est, [case], StoreSink(db))  # only the broken file is tried again; nothing is added
    assert (third.skipped, third.files, third.errors) == (3, 1, 1) and third.held["items"] == 4


def test_one_id_names_one_file(tmp_path, astronaut_path):
    """Ids that two different pictures used to share (one was then silently dropped, or read for the other): a
    file literally named caf\\xe9.jpg beside a Latin-1 caf<E9>.jpg; a file named a.zip::k.jpg beside a.zip holding
    k.jpg; a zip member named in.zip::k.jpg beside a nested in.zip holding k.jpg. Each picture is its own item, read
    back by its id, and the scan holds all of them."""
    picture = _astronaut_jpeg(astronaut_path)

    root = tmp_path / "case"
    root.mkdir()
    (root / "caf\\xe9.jpg").write_bytes(picture(300))
    (root / os.fsdecode(b"caf\xe9.jpg")).write_bytes(picture(310))
    (root / "a.zip").write_bytes(_zip({"k.jpg": picture(320)}))
    (root / "a.zip::k.jpg").write_bytes(picture(330))
    (root / "b.zip").write_bytes(_zip({"in.zip": _zip({"k.jpg": picture(340)}), "in.zip::k.jpg": picture(350)}))
    items = list(iter_sources(root))
    ids = [i.path.replace(str(root) + "/", "") for i in items]
    assert len(set(ids)) == len(ids) == 6, ids
    sizes = sorted(load_source(i.path).image.shape[0] for i in items)
    assert sizes == [300, 310, 320, 330, 340, 350]  # each id reads back its own picture
    db = str(tmp_path / "case.sqlite")
    s = run_scan(AgeEstimator(), [root], StoreSink(db))
    assert (s.files, s.faces, s.errors) == (6, 6, 0) and s.held["items"] == 6


def test_a_run_stored_with_the_ids_of_before_resumes_and_reads_back(tmp_path, astronaut_path):
    """Before 2026-11-30 a name was its own id: a folder named case::one, a file named a\\x41.jpg, a zip member
    named m::k.jpg were stored as they are. Such a run resumes without storing anything twice (it stored each
    file again under its new id), and its ids still read back (the report showed 'source unreadable')."""
    from agescan.io.names import legacy_id

    picture = _astronaut_jpeg(astronaut_path)

    root = tmp_path / "case::one"
    root.mkdir()
    (root / "a\\x41.jpg").write_bytes(picture(300))
    (root / "b\\\\c.jpg").write_bytes(picture(310))
    (root / "arc.zip").write_bytes(_zip({"m::k.jpg": picture(320), "back\\slash.jpg": picture(330),
                                         "in.zip": _zip({"x::y.jpg": picture(340)})}))
    db = str(tmp_path / "case.sqlite")
    est = AgeEstimator()
    first = run_scan(est, [root], StoreSink(db))
    assert (first.files, first.faces) == (5, 5)
    con = connect(db)  # the same run as an agescan of before would have stored it
    ids = [s for (s,) in con.execute("SELECT source FROM items")]
    with con.transaction():
        con.executemany("UPDATE items SET source=? WHERE source=?", [(legacy_id(s), s) for s in ids])
    old = sorted(s for (s,) in con.execute("SELECT source FROM items"))
    con.close()
    assert old == sorted(str(root) + "/" + s for s in (
        "a\\x41.jpg", "b\\\\c.jpg", "arc.zip::m::k.jpg", "arc.zip::back\\slash.jpg", "arc.zip::in.zip::x::y.jpg"))
    again = run_scan(est, [root], StoreSink(db))
    assert (again.files, again.skipped) == (0, 5) and again.held["items"] == 5
    assert sorted(load_source(s).image.shape[0] for s in old) == [300, 310, 320, 330, 340]
    rep = subprocess.run([sys.executable, "-m", "agescan", "report", "--db", db, "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=300)
    page = (tmp_path / "r" / "index.html").read_text(encoding="utf-8")
    assert rep.returncode == 0 and page.count("class='thumb'") == 5 and "source unreadable" not in page
