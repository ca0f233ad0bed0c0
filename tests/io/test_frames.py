"""Pictures with several frames (animated GIF, multi-page TIFF): every frame is read, not only the first."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile

import pytest
from PIL import Image

from agescan import AgeEstimator
from agescan.io.frames import HEAD_BYTES, MAX_FRAMES, later_frames, may_have_frames
from agescan.scan import StoreSink, run_scan
from agescan.store import connect


@pytest.fixture()
def pictures(tmp_path, astronaut_path):
    """A GIF whose face is on its second frame only (the third is blank again), as a file and inside a zip, and a
    TIFF whose face is on its second page (the third page repeats it)."""
    face = Image.open(astronaut_path).convert("RGB").resize((320, 320))
    blank = Image.new("RGB", (320, 320), (120, 120, 120))
    case = tmp_path / "case"
    case.mkdir()
    blank.save(case / "anim.gif", save_all=True, append_images=[face, blank], duration=[300, 400, 300], loop=0)
    blank.save(case / "pages.tif", save_all=True, append_images=[face, face])
    blank.save(case / "still.png")
    with zipfile.ZipFile(case / "c.zip", "w") as zf:
        zf.writestr("in.gif", (case / "anim.gif").read_bytes())
    return case


def test_every_frame_is_read_with_its_index_and_time(pictures):
    head = {p.name: p.read_bytes()[:HEAD_BYTES] for p in pictures.iterdir()}
    assert may_have_frames(head["pages.tif"]) and may_have_frames(head["anim.gif"])
    assert not may_have_frames(head["still.png"]) and not may_have_frames(head["c.zip"])
    out = list(AgeEstimator().stream(pictures))
    got = [(r.source.replace(str(pictures) + "/", ""), r.provenance.frame_index, round(r.provenance.timestamp, 2),
            len(r.faces), r.error) for r in out]
    # the first frame is the picture's own item (-1, as before); later frames that differ from the one before
    # them follow, with their time (the TIFF's third page repeats its second: not read twice; a page has no time)
    assert got == [("anim.gif", -1, -1.0, 0, ""), ("anim.gif", 1, 0.3, 1, ""), ("anim.gif", 2, 0.7, 0, ""),
                   ("c.zip::in.gif", -1, -1.0, 0, ""), ("c.zip::in.gif", 1, 0.3, 1, ""),
                   ("c.zip::in.gif", 2, 0.7, 0, ""), ("pages.tif", -1, -1.0, 0, ""), ("pages.tif", 1, -1.0, 1, ""),
                   ("still.png", -1, -1.0, 0, "")]
    sha = {r.source: r.provenance.sha256 for r in out if r.provenance.frame_index < 0}
    assert all(r.provenance.sha256 == sha[r.source] for r in out)  # every frame names its file's sha256


def test_a_broken_later_frame_is_recorded(tmp_path, astronaut_path):
    from PIL import ImageOps

    face = Image.open(astronaut_path).convert("RGB").resize((320, 320))
    buf = io.BytesIO()
    Image.new("RGB", (320, 320), (120, 120, 120)).save(buf, format="GIF", save_all=True, loop=0,
                                                       append_images=[face, ImageOps.mirror(face)])
    cut = buf.getvalue()[: int(len(buf.getvalue()) * 0.8)]  # inside the third frame
    got = [(getattr(f, "frame_index", None), type(f).__name__) for f in later_frames(cut, "x.gif", "", 10**8)]
    assert got == [(1, "VideoFrame"), (2, "FrameError"), (3, "FrameError")]  # frame 2 broken; nothing past it
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "cut.gif").write_bytes(cut)
    out = list(AgeEstimator().stream(tmp_path / "cut"))
    assert [(r.provenance.frame_index, len(r.faces), r.error_type) for r in out] == [
        (-1, 0, ""), (1, 1, ""), (2, 0, "DecodeError"), (3, 0, "DecodeError")]
    assert "frame 2 cannot be decoded" in out[2].error and "cannot be read past frame 2" in out[3].error
    assert MAX_FRAMES >= 1000


def test_scan_resume_report_and_cli(tmp_path, pictures):
    db = str(tmp_path / "case.sqlite")
    s = run_scan(AgeEstimator(), [pictures], StoreSink(db))
    assert (s.files, s.items, s.faces, s.errors) == (4, 9, 3, 0)  # a picture counts once, whatever its frames
    again = run_scan(AgeEstimator(), [pictures], StoreSink(db))
    assert (again.files, again.skipped) == (0, 9)
    con = connect(db, readonly=True)
    assert con.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 9
    con.close()
    rep = subprocess.run([sys.executable, "-m", "agescan", "report", "--db", db, "--out", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=300)
    assert rep.returncode == 0, rep.stderr
    page = (tmp_path / "r" / "index.html").read_text(encoding="utf-8")
    assert page.count("class='thumb'") == 3 and "source unreadable" not in page
    assert "<p>4 file(s) scanned (9 items with the sampled frames of videos and the frames of animated" in page
    assert ", frame 1 at 0.3 s" in page and "pages.tif</code><br><span class='dim'>320x320, frame 1," in page
    est = subprocess.run([sys.executable, "-m", "agescan", "estimate", str(pictures / "pages.tif")],
                         capture_output=True, text=True, timeout=300)
    assert est.returncode == 0 and "pages.tif#1" in est.stdout and "no face found" in est.stdout


def test_frames_are_found_by_content_in_renamed_and_repeated_files(tmp_path, astronaut_path):
    """A GIF renamed .jpg or without an extension, a TIFF named .jpg, a camera MPO .jpg, and the second of two
    archive entries named anim.gif (its id 'anim.gif [2]' hides the extension): each has its later frames read.
    (They used to be chosen by extension: a face on frame 2 was missed, exit 0.)"""
    import warnings

    face = Image.open(astronaut_path).convert("RGB").resize((320, 320))
    blank = Image.new("RGB", (320, 320), (120, 120, 120))
    case = tmp_path / "case"
    case.mkdir()
    gif, tif = io.BytesIO(), io.BytesIO()
    blank.save(gif, format="GIF", save_all=True, append_images=[face], duration=[300, 300], loop=0)
    blank.save(tif, format="TIFF", save_all=True, append_images=[face])
    (case / "gif.jpg").write_bytes(gif.getvalue())
    (case / "gif").write_bytes(gif.getvalue())
    (case / "tif.jpg").write_bytes(tif.getvalue())
    blank.save(case / "camera.jpg", format="MPO", save_all=True, append_images=[face])
    with warnings.catch_warnings(), zipfile.ZipFile(case / "d.zip", "w") as zf:
        warnings.simplefilter("ignore")
        zf.writestr("anim.gif", gif.getvalue())
        zf.writestr("anim.gif", gif.getvalue()[::-1])  # not an image: the first entry's frames are its own
        zf.writestr("anim.gif", gif.getvalue())
    found = {(r.source.replace(str(case) + "/", ""), r.provenance.frame_index): len(r.faces)
             for r in AgeEstimator().stream(case)}
    for name in ("gif.jpg", "gif", "tif.jpg", "camera.jpg", "d.zip::anim.gif", "d.zip::anim.gif [3]"):
        assert found.get((name, -1)) == 0 and found.get((name, 1)) == 1, (name, found)


def test_a_frame_bomb_is_cut_at_the_picture_budget(astronaut_path):
    """Every frame under the per-picture limit, but many of them: the frames past FRAME_BUDGET x max_pixels are
    recorded as not read (a 43 KB GIF of 20 frames of 6000x6000 took 25 s and 1.9 GB)."""
    frames = [Image.new("RGB", (300, 300), (10 * k, 0, 0)) for k in range(12)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    got = list(later_frames(buf.getvalue(), "x.gif", "", 100_000))  # 90,000 pixels a frame; budget 400,000
    assert [f.frame_index for f in got] == [1, 2, 3, 4] and type(got[-1]).__name__ == "FrameError"
    assert "past the 400,000 pixels" in got[-1].error


def test_an_oversized_first_frame_is_recorded_once(tmp_path, astronaut_path):
    """The picture's own item records a first frame over the limit; its later frames are still read, and frame 0
    is not recorded a second time (it was: two errors, the picture counted as two files)."""
    big = Image.new("RGB", (700, 700), (90, 90, 90))
    face = Image.open(astronaut_path).convert("RGB").resize((320, 320))
    big.save(tmp_path / "t.tif", save_all=True, append_images=[face])
    out = [(r.provenance.frame_index, r.error_type, len(r.faces))
           for r in AgeEstimator(max_pixels=400_000).stream(tmp_path)]
    assert out == [(-1, "TooManyPixelsError", 0), (1, "", 1)]
