"""`agescan anonymize` and `agescan estimate --transform`, run as a user runs them: a subprocess, real pictures."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from agescan import AgeEstimator, read_image
from agescan.privacy import get_transform


def agescan(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agescan", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def _digest(folder) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def evidence(tmp_path, astronaut):
    """A folder with the astronaut (PNG), the astronaut stored sideways in a JPEG with an EXIF rotation, a picture
    without a face, a text file and a corrupt file."""
    d = tmp_path / "in put"
    (d / "sub").mkdir(parents=True)
    Image.fromarray(astronaut).save(d / "astronaut.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise
    Image.fromarray(np.rot90(astronaut, k=1).copy()).save(d / "sub" / "sideways.jpg", quality=95, exif=exif.tobytes())
    Image.fromarray(np.full((200, 300, 3), 120, np.uint8)).save(d / "sub" / "wall.png")
    (d / "notes.txt").write_text("not a picture")
    (d / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)
    return d


def test_anonymize_a_folder_with_the_eye_mosaic(tmp_path, evidence, astronaut):
    before = _digest(evidence)
    out = tmp_path / "out"
    r = agescan("anonymize", evidence, "--method", "eye-mosaic", "--out", out, "--seed", "3")
    assert r.returncode == 1, r.stderr  # one unreadable file: reported, the others written
    assert _digest(evidence) == before  # inputs untouched, byte for byte
    assert "broken.jpg: cannot read it" in r.stderr and "wall.png: no face found: not written" in r.stderr
    assert "2 of 4 file(s) written" in r.stderr
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["in put/astronaut.png", "in put/sub/sideways.jpg"]
    est = AgeEstimator().load()
    (face,) = est.detect(astronaut)
    expected = get_transform("eye-mosaic").apply(astronaut, [face], seed=3)
    assert np.array_equal(read_image(out / "in put" / "astronaut.png"), expected)  # the library's pixels, PNG
    upright = Image.open(out / "in put" / "sub" / "sideways.jpg")
    assert upright.size == (astronaut.shape[1], astronaut.shape[0])  # EXIF orientation applied to the pixels
    assert not upright.getexif()  # and no metadata copied
    # the eyes are hidden, the mouth is not: compare with the original where the landmarks are
    got = read_image(out / "in put" / "sub" / "sideways.jpg").astype(int)
    (lx, ly), _, _, (mx, my), _ = [tuple(int(round(v)) for v in p) for p in face.landmarks.points]
    assert np.abs(got[ly - 3:ly + 4, lx - 3:lx + 4] - astronaut[ly - 3:ly + 4, lx - 3:lx + 4]).mean() > 8
    assert np.abs(got[my - 3:my + 4, mx - 3:mx + 4] - astronaut[my - 3:my + 4, mx - 3:mx + 4]).mean() < 6
    again = agescan("anonymize", evidence, "--method", "eye-mosaic", "--out", out, "--seed", "3")
    assert again.returncode == 2 and "exists" in again.stderr  # never replaced without --overwrite


def test_keyed_permutation_round_trip_and_wrong_key(tmp_path, evidence, astronaut):
    key, other = tmp_path / "secret.key", tmp_path / "other.key"
    assert agescan("anonymize", "--new-key", key).returncode == 0
    assert agescan("anonymize", "--new-key", other).returncode == 0
    assert len(key.read_bytes()) == 32 and (os.stat(key).st_mode & 0o777) == 0o600
    assert agescan("anonymize", "--new-key", key).returncode == 2  # a key file is never overwritten
    src = evidence / "astronaut.png"
    r = agescan("anonymize", src, "--method", "keyed-permutation", "--key-file", key, "--out", tmp_path / "enc")
    assert r.returncode == 0, r.stderr
    enc = tmp_path / "enc" / "astronaut.png"
    hidden = read_image(enc)
    assert (hidden != astronaut).any(2).mean() > 0.9
    assert AgeEstimator().load().detect(hidden) == ()  # no face for anyone without the key
    ok = agescan("anonymize", enc, "--method", "keyed-permutation", "--decrypt", "--key-file", key,
                 "--out", tmp_path / "dec")
    assert ok.returncode == 0, ok.stderr
    assert np.array_equal(read_image(tmp_path / "dec" / "astronaut.png"), astronaut)  # exact
    # the wrong key is caught by the picture's tag (before: noise written, "restored: 1 of 1", exit 0)
    bad = agescan("anonymize", enc, "--method", "keyed-permutation", "--decrypt", "--key-file", other,
                  "--out", tmp_path / "bad")
    assert bad.returncode == 1 and "permuted with another key" in bad.stderr and "1 not restored" in bad.stderr
    assert not (tmp_path / "bad" / "astronaut.png").exists()
    # so is a pixel changed since (the tag covers every pixel); a picture without a tag (an older agescan's, or
    # stripped of its metadata) is restored, and said to be unchecked
    from PIL import Image

    changed = tmp_path / "changed"
    changed.mkdir()
    with Image.open(enc) as im:
        pixels = np.array(im)
        info = __import__("PIL.PngImagePlugin", fromlist=["PngInfo"]).PngInfo()
        info.add_text("agescan-keyed-permutation", im.text["agescan-keyed-permutation"])
    pixels[0, 0] ^= 1
    Image.fromarray(pixels).save(changed / "astronaut.png", pnginfo=info)
    r = agescan("anonymize", changed, "--method", "keyed-permutation", "--decrypt", "--key-file", key,
                "--out", tmp_path / "dec2")
    assert r.returncode == 1 and "its pixels changed since" in r.stderr
    stripped = tmp_path / "stripped"
    stripped.mkdir()
    Image.fromarray(read_image(enc)).save(stripped / "astronaut.png")
    r = agescan("anonymize", stripped, "--method", "keyed-permutation", "--decrypt", "--key-file", other,
                "--out", tmp_path / "dec3")
    assert r.returncode == 0 and "restored without a check of the key" in r.stderr
    assert (read_image(tmp_path / "dec3" / "stripped" / "astronaut.png") != astronaut).any(2).mean() > 0.9
    nokey = agescan("anonymize", src, "--method", "keyed-permutation", "--out", tmp_path / "x")
    assert nokey.returncode == 3 and "--key-file" in nokey.stderr
    nope = agescan("anonymize", enc, "--method", "eye-mask", "--decrypt", "--out", tmp_path / "y")
    assert nope.returncode == 3 and "cannot be undone" in nope.stderr


def test_refuses_an_output_inside_the_input_and_writing_over_an_input(tmp_path, evidence):
    before = _digest(evidence)
    r = agescan("anonymize", evidence, "--method", "eye-mask", "--out", evidence / "sub" / "anon")
    assert r.returncode == 2 and "inside the input folder" in r.stderr
    r = agescan("anonymize", evidence / "astronaut.png", "--method", "eye-mask", "--out", evidence)
    assert r.returncode == 2 and "overwrite an input" in r.stderr
    assert _digest(evidence) == before and not (evidence / "sub" / "anon").exists()
    r = agescan("anonymize", evidence, "--method", "sunglasses", "--out", tmp_path / "o")
    assert r.returncode == 2 and "eye-mask" in r.stderr
    # an --out or a key file that cannot be written: one line, exit 2, before any picture is read (was a
    # FileExistsError / FileNotFoundError traceback with exit 1, after the first picture)
    (tmp_path / "afile").write_text("x")
    for args, said in ((("--out", tmp_path / "afile"), "is a file, not a folder"),
                       (("--out", tmp_path / "afile" / "o"), "cannot create the folder"),
                       (("--new-key", tmp_path / "afile" / "k"), "cannot create it")):
        r = agescan("anonymize", evidence, "--method", "eye-mask", *args)
        assert r.returncode == 2 and said in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    assert _digest(evidence) == before and (tmp_path / "afile").read_text() == "x"


def test_estimate_with_a_transform_sees_what_a_platform_sees(astronaut_path):
    clean = json.loads(agescan("estimate", "--json", astronaut_path).stdout)
    masked = agescan("estimate", "--json", "--transform", "eye-mask", astronaut_path)
    assert masked.returncode == 0, masked.stderr
    m = json.loads(masked.stdout)
    assert len(m["faces"]) == 1 and m["faces"][0]["age"] != clean["faces"][0]["age"]
    # the same as estimating a picture anonymised beforehand
    est = AgeEstimator().load()
    img = read_image(astronaut_path)
    pre = est.predict(get_transform("eye-mask").apply(img, est.detect(img)))
    assert round(pre.faces[0].age, 2) == m["faces"][0]["age"]  # the JSON gives ages to a hundredth of a year
    permuted = json.loads(agescan("estimate", "--json", "--transform", "keyed-permutation", astronaut_path).stdout)
    assert permuted["faces"] == []  # without the key there is no face to estimate
    table = agescan("estimate", "--transform", "eyeband", astronaut_path)
    assert table.returncode == 0 and "after eye-band" in table.stdout


def test_scan_with_a_transform_is_its_own_run(tmp_path, evidence):
    from agescan.scan import ScanConfig

    plain = ScanConfig.of(AgeEstimator(), [evidence])
    masked = ScanConfig.of(AgeEstimator(transform="eye-mask"), [evidence])
    assert "transform" not in plain.key() and masked.key()["transform"] == "eye-mask"
    assert plain.key_hash() != masked.key_hash()  # a resumed scan never mixes transformed and clean results
    out = tmp_path / "scan.jsonl"
    r = agescan("scan", evidence / "astronaut.png", "--out", out, "--transform", "face-blur", "--no-progress")
    assert r.returncode == 0, r.stderr
    (rec,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rec["faces"]) == 1
