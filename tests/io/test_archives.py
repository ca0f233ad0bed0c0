"""Zip and tar archives read in place, through iter_sources, the estimator, the CLI and the report."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import zipfile

import pytest

from agescan import AgeEstimator, DecodeError
from agescan.io import iter_sources
from agescan.io.archives import load_source, read_member


@pytest.fixture()
def archives(tmp_path, astronaut_path):
    png = astronaut_path.read_bytes()
    z = tmp_path / "case.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("b/second.png", png)
        zf.writestr("a/first photo.png", png)
        zf.writestr("notes.txt", "not an image")
        zf.writestr("broken.jpg", b"\xff\xd8\xff\xe0" + b"\x00" * 30)
    t = tmp_path / "case.tar.gz"
    with tarfile.open(t, "w:gz") as tf:
        for name, data in (("x.png", png), ("dir/y.jpg", b"garbage")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 this is not a zip")
    return tmp_path


def test_members_listed_in_order_and_unreadable_archives_recorded(archives):
    items = list(iter_sources(archives))
    ids = [i.path.replace(str(archives) + "/", "") for i in items]
    assert ids == ["bad.zip", "case.tar.gz::dir/y.jpg", "case.tar.gz::x.png", "case.zip::a/first photo.png",
                   "case.zip::b/second.png", "case.zip::broken.jpg"]
    assert items[0].error.startswith("cannot read archive") and not items[0].member
    assert all(i.error == "" and i.member for i in items[1:])


def test_estimator_reads_members_in_place(archives, astronaut_path):
    before = {p.name: p.read_bytes() for p in archives.iterdir()}
    out = list(AgeEstimator(workers=2).stream(archives))
    by_id = {r.source.replace(str(archives) + "/", ""): r for r in out}
    assert len(by_id["case.zip::a/first photo.png"].faces) == 1
    assert by_id["case.zip::a/first photo.png"].provenance.sha256 == __import__("hashlib").sha256(
        astronaut_path.read_bytes()).hexdigest()
    assert len(by_id["case.tar.gz::x.png"].faces) == 1
    assert by_id["case.zip::broken.jpg"].error_type == "DecodeError"
    assert "case.tar.gz::dir/y.jpg" in by_id["case.tar.gz::dir/y.jpg"].error
    assert by_id["bad.zip"].error_type == "DecodeError"
    assert {p.name: p.read_bytes() for p in archives.iterdir()} == before


def test_member_size_guard_and_missing_member(archives):
    with pytest.raises(DecodeError, match="zip-bomb guard"):
        read_member(str(archives / "case.zip"), "a/first photo.png", max_bytes=1000)
    with pytest.raises(DecodeError, match="no such member"):
        read_member(str(archives / "case.zip"), "nope.png")
    assert load_source(str(archives / "case.zip") + "::b/second.png").image.shape == (512, 512, 3)


def test_cli_scan_of_an_archive_into_the_store(archives, tmp_path):
    db = tmp_path / "case.sqlite"
    out = subprocess.run([sys.executable, "-m", "agescan", "scan", str(archives / "case.zip"), "--db", str(db),
                          "--no-progress"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stderr  # the broken member is an error item
    assert "3 file(s), 2 face(s), 1 error(s)" in out.stderr
    rep = subprocess.run([sys.executable, "-m", "agescan", "report", "--db", str(db), "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=300)
    assert rep.returncode == 0 and (tmp_path / "r" / "index.html").read_text().count("class='thumb'") == 1
    assert "2 identical copies" in (tmp_path / "r" / "index.html").read_text()
    jsonl = tmp_path / "x.jsonl"
    subprocess.run([sys.executable, "-m", "agescan", "scan", str(archives / "case.zip"), "--out", str(jsonl),
                    "--no-progress"], capture_output=True, timeout=300)
    assert [json.loads(l)["source"].split("::")[1] for l in jsonl.read_text().splitlines()] == [
        "a/first photo.png", "b/second.png", "broken.jpg"]


def test_repeated_member_names_are_all_read(tmp_path, astronaut_path):
    """Zip and tar allow several entries with one name: each is its own item (``NAME [k]``), read back by that id;
    before this, only the last was scanned and the others were silently missing."""
    import hashlib
    import warnings

    from PIL import Image

    def png(size: int) -> bytes:
        buf = io.BytesIO()
        Image.open(astronaut_path).convert("RGB").resize((size, size)).save(buf, format="PNG")
        return buf.getvalue()

    pictures = [png(s) for s in (300, 320, 340, 360)]
    z = tmp_path / "case.zip"
    with warnings.catch_warnings(), zipfile.ZipFile(z, "w") as zf:
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate name it is asked to write
        zf.writestr("photo.png", pictures[0])
        zf.writestr("photo.png", pictures[1])
        zf.writestr("photo.png [2]", pictures[2])  # a real entry named like the second one's id
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("face.png", pictures[3])
    t = tmp_path / "case.tar"
    with tarfile.open(t, "w") as tf:
        for name, data in (("inner.zip", b"PK\x05\x06" + b"\x00" * 18), ("inner.zip", inner.getvalue())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    items = list(iter_sources(tmp_path))
    ids = [i.path.replace(str(tmp_path) + "/", "") for i in items]
    assert ids == ["case.tar::inner.zip [2]::face.png", "case.zip::photo.png", "case.zip::photo.png [2]",
                   "case.zip::photo.png [2] [2]"]  # the empty first inner.zip has no member
    digests = {i.path.replace(str(tmp_path) + "/", ""): hashlib.sha256(load_source(i.path).image.tobytes()).hexdigest()
               for i in items}
    assert len(set(digests.values())) == 4
    assert read_member(str(z), "photo.png") == pictures[0] and read_member(str(z), "photo.png [2] [2]") == pictures[1]
    assert read_member(str(z), "photo.png [2]") == pictures[2]
    assert read_member(str(t), "inner.zip [2]::face.png") == pictures[3]
    out = list(AgeEstimator().stream(tmp_path))
    assert [r.source.replace(str(tmp_path) + "/", "") for r in out] == ids
    assert all(len(r.faces) == 1 for r in out)
    assert len({r.provenance.sha256 for r in out}) == 4


def test_a_tar_cut_short_keeps_what_it_holds_and_says_what_is_missing(tmp_path, astronaut_path):
    """A tar cut short (an interrupted copy, recovered evidence): the members before the cut are scanned and one item
    records that the rest is missing. Before, a cut .tar.gz was one error (its whole members lost) and a cut .tar
    silently lost the members after the cut."""
    from PIL import Image

    pictures = []
    for k in range(6):
        buf = io.BytesIO()
        Image.open(astronaut_path).convert("RGB").resize((120 + 10 * k, 120 + 10 * k)).save(buf, format="JPEG")
        pictures.append(buf.getvalue())
    for name, mode in (("whole.tar", "w"), ("cut.tar", "w"), ("cut.tar.gz", "w:gz")):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode=mode) as tf:
            for k, data in enumerate(pictures):
                info = tarfile.TarInfo(f"p{k}.jpg")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        data = buf.getvalue()
        (tmp_path / name).write_bytes(data if name == "whole.tar" else data[: int(len(data) * 0.6)])
    items = {i.path.replace(str(tmp_path) + "/", ""): i for i in iter_sources(tmp_path)}
    whole = [k for k in items if k.startswith("whole.tar")]
    assert whole == [f"whole.tar::p{k}.jpg" for k in range(6)] and all(not items[k].error for k in whole)
    for name in ("cut.tar", "cut.tar.gz"):
        members = [k for k in items if k.startswith(name + "::")]
        assert 2 <= len(members) < 6, (name, members)
        assert "cut short" in items[name].error and not items[name].member  # the archive's own item says so
    out = {r.source.replace(str(tmp_path) + "/", ""): r for r in AgeEstimator().stream(tmp_path)}
    for name in ("cut.tar", "cut.tar.gz"):
        read = [k for k, r in out.items() if k.startswith(name + "::") and not r.error]
        assert len(read) >= 2 and all(len(out[k].faces) == 1 for k in read)
        assert out[name].error_type == "DecodeError"


def test_tars_concatenated_are_read_whole(tmp_path, astronaut_path):
    """`cat a.tar b.tar`: the second archive's members lie after the first one's end marker; they were never
    listed (nothing recorded, exit 0). Read whole, as `tar -i` reads it."""
    parts = []
    for name in ("first.png", "second.png"):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            data = astronaut_path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        parts.append(buf.getvalue())
    (tmp_path / "both.tar").write_bytes(b"".join(parts))
    items = [(i.path.replace(str(tmp_path) + "/", ""), i.error) for i in iter_sources(tmp_path)]
    assert items == [("both.tar::first.png", ""), ("both.tar::second.png", "")]
    assert load_source(str(tmp_path / "both.tar") + "::second.png").image.shape == (512, 512, 3)
