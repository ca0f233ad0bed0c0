"""Saliency maps (agescan.explain) and the public alignment stage they rest on, on real photos."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from agescan import AgeEstimator, ConfigError
from agescan.explain import occlusion_map, overlay, to_image


@pytest.fixture(scope="module")
def est():
    return AgeEstimator().load()


def test_align_stage_returns_the_crops_the_model_sees(est, astronaut):
    before = astronaut.copy()
    aligned = est.align(astronaut)
    assert len(aligned) == 1 and np.array_equal(astronaut, before)
    a = aligned[0]
    s = est.card.crop.size
    assert a.crop.image.shape == (s, s, 3) and a.crop.affine.shape == (2, 3)
    # the affine maps the detected eyes onto the card's template positions in the crop
    eyes = np.c_[a.detection.landmarks.as_array()[:2], np.ones(2)] @ a.crop.affine.T
    dest = np.asarray(est.card.crop.destination())[:2]
    assert np.abs(eyes - dest).max() < 2.0
    # and the pipeline estimates exactly these crops
    probs = est.model.predict_probs(a.crop.image[None])
    face = est.predict(astronaut).faces[0]
    assert face.age == pytest.approx(est.decider.decide(probs).age[0], abs=1e-9)


def test_to_image_inverts_the_affine(est, astronaut):
    a = est.align(astronaut)[0]
    s = est.card.crop.size
    m = np.zeros((s, s))
    m[s // 2 - 1:s // 2 + 1, s // 4 - 1:s // 4 + 1] = 1.0  # a dot in the crop
    img_map = to_image(m, a.crop.affine, astronaut.shape)
    y, x = np.unravel_index(np.argmax(img_map), img_map.shape)
    back = a.crop.affine @ np.array([x, y, 1.0])  # the photo's brightest pixel maps back onto the dot
    assert abs(back[0] - (s // 4 - 0.5)) < 2.5 and abs(back[1] - (s // 2 - 0.5)) < 2.5
    assert img_map.shape == astronaut.shape[:2] and img_map[:20].max() == 0  # nothing outside the crop


def test_occlusion_finds_the_region_that_moves_the_estimate():
    """A toy model whose age is the brightness of one corner: only squares over that corner change it."""
    crop = np.full((64, 64, 3), 200, np.uint8)
    m = occlusion_map(lambda c: c[:, :16, :16].mean(axis=(1, 2, 3)), crop, fill=(0, 0, 0))
    assert m.shape == (64, 64) and m.max() == 1.0 and m[40:, 40:].max() == 0.0 and m[:8, :8].min() > 0.5


@pytest.mark.parametrize("method", ["occlusion", "sensitivity", "gradcam"])
def test_explain_maps_lie_on_the_face(est, astronaut, method):
    if method != "occlusion":
        pytest.importorskip("torch", reason="gradient maps need the train extra")
    result, maps = est.explain(astronaut, method)
    assert len(maps) == len(result.faces) == 1
    m = maps[0]
    assert m.method == method and m.face == result.faces[0]
    assert 0.0 <= m.crop_map.min() and m.crop_map.max() == pytest.approx(1.0)
    box = m.face.box
    y, x = np.unravel_index(np.argmax(m.image_map), m.image_map.shape)
    assert box.x1 - 10 <= x <= box.x2 + 10 and box.y1 - 10 <= y <= box.y2 + 10
    # nearly all of the map's mass lies within the (slightly grown) face box
    inside = m.image_map[int(box.y1) - 15:int(box.y2) + 15, int(box.x1) - 15:int(box.x2) + 15].sum()
    assert inside / m.image_map.sum() > 0.95
    assert result.faces[0].age == pytest.approx(est.predict(astronaut).faces[0].age)


def test_explain_refuses_unknown_methods_and_models_it_cannot_rebuild(est, astronaut):
    with pytest.raises(ConfigError, match="one of"):
        est.explain(astronaut, "lime")
    pytest.importorskip("torch")
    with pytest.raises(ConfigError, match="occlusion"):
        AgeEstimator("dexnet-m-ocl.utkface").explain(astronaut, "gradcam")


def test_overlay_is_a_new_image(astronaut):
    heat = np.zeros(astronaut.shape[:2])
    heat[100:200, 100:200] = 1.0
    before = astronaut.copy()
    out = overlay(astronaut, heat)
    assert np.array_equal(astronaut, before) and out is not astronaut
    assert np.array_equal(out[:100], astronaut[:100]) and not np.array_equal(out[150, 150], astronaut[150, 150])


def test_cli_explain_writes_pictures_and_records(tmp_path, astronaut_path):
    out = tmp_path / "maps out"
    r = subprocess.run([sys.executable, "-m", "agescan", "explain", str(astronaut_path), "--out", str(out),
                        "--anonymise", "eye-band"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout.splitlines()[0])
    assert rec["method"] == "occlusion" and len(rec["faces"]) == 1
    from PIL import Image

    picture = np.asarray(Image.open(rec["file"]))
    assert picture.shape[:2] == (512, 512)


def _explain(capsys, *argv) -> tuple[int, list[dict], str]:
    """`agescan explain ...` in this process: its exit status, the JSON records it printed and its stderr."""
    from agescan.cli.main import main

    capsys.readouterr()
    try:
        code = main(["explain", *map(str, argv), "--threads", "1"])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


def test_explain_gives_every_photo_its_own_picture_and_never_replaces_an_input(tmp_path, astronaut, capsys):
    from PIL import Image

    for folder, pixels in (("a", astronaut), ("b", astronaut[:, ::-1])):
        (tmp_path / folder).mkdir()
        Image.fromarray(np.ascontiguousarray(pixels)).save(tmp_path / folder / "same.png")
    code, recs, err = _explain(capsys, tmp_path / "a" / "same.png", tmp_path / "b" / "same.png", "--out",
                               tmp_path / "maps")
    assert code == 0, err
    assert [r["file"] for r in recs] == [str(tmp_path / "maps" / d / "same.png.occlusion.png") for d in "ab"]
    a, b = (np.asarray(Image.open(r["file"])) for r in recs)
    assert not np.array_equal(a, b)  # two photos, two pictures (the second no longer replaces the first)
    # a photo named like another's picture, explained into its own folder: neither input is written over
    d = tmp_path / "d"
    d.mkdir()
    Image.fromarray(astronaut).save(d / "a.png")
    Image.fromarray(astronaut[::-1]).save(d / "a.occlusion.png")
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    code, recs, err = _explain(capsys, d / "a.png", d / "a.occlusion.png", "--out", d)
    assert code == 0, err
    assert {p.name: p.read_bytes() for p in d.iterdir() if p.name in before} == before
    assert sorted(r["file"] for r in recs) == sorted(str(d / f"{n}.occlusion.png") for n in before)
    # a picture that would be an input is refused before any work; so is replacing pictures without --overwrite
    Image.fromarray(astronaut).save(d / "a.png.occlusion.png")
    code, recs, err = _explain(capsys, d / "a.png", d / "a.png.occlusion.png", "--out", d, "--overwrite")
    assert code == 2 and recs == [] and "would replace the input" in err
    code, _, err = _explain(capsys, tmp_path / "a" / "same.png", tmp_path / "b" / "same.png", "--out",
                            tmp_path / "maps")
    assert code == 2 and "--overwrite" in err and len(err.strip().splitlines()) == 1


def test_explain_runs_the_pipeline_estimate_runs(tmp_path, astronaut_path, capsys):
    """--profile-yaw (and the triage options) reach explain's pipeline: its faces are estimate's faces."""
    from agescan.cli.main import main

    def estimated(*options):
        capsys.readouterr()
        assert main(["estimate", str(astronaut_path), "--json", "--threads", "1", *options]) == 0
        return json.loads(capsys.readouterr().out.splitlines()[0])["faces"][0]

    face = estimated("--profile-yaw", "0")
    assert face["framing"] == "box" and face["age"] != pytest.approx(estimated()["age"], abs=0.5)
    code, recs, err = _explain(capsys, astronaut_path, "--out", tmp_path / "m", "--profile-yaw", "0")
    assert code == 0, err
    (mine,) = recs[0]["faces"]
    assert mine["age"] == pytest.approx(face["age"], abs=0.01) and mine["framing"] == "box"
    strict = estimated("--flag-threshold", "0.99")
    code, recs, err = _explain(capsys, astronaut_path, "--out", tmp_path / "t", "--flag-threshold", "0.99")
    assert code == 0, err
    assert recs[0]["faces"][0]["flagged"] == strict["flagged"]
    # options of videos and archives mean nothing to explain: refused, not silently ignored
    code, _, err = _explain(capsys, astronaut_path, "--out", tmp_path / "v", "--video-every", "2")
    assert code == 2 and "unrecognized arguments: --video-every" in err


def test_an_unreadable_photo_is_recorded_and_the_others_explained(tmp_path, astronaut, capsys):
    from PIL import Image

    Image.fromarray(astronaut).save(tmp_path / "first.png")
    (tmp_path / "broken.jpg").write_text("not a picture")
    Image.fromarray(astronaut[:, ::-1].copy()).save(tmp_path / "last.png")
    photos = [tmp_path / "first.png", tmp_path / "broken.jpg", tmp_path / "last.png"]
    code, recs, err = _explain(capsys, *photos, "--out", tmp_path / "maps")
    assert code == 1
    assert [r["source"] for r in recs] == [str(p) for p in photos]
    assert recs[1]["error_type"] == "DecodeError" and "file" not in recs[1]
    assert all(len(recs[i]["faces"]) == 1 and (tmp_path / "maps" / f"{photos[i].name}.occlusion.png").is_file()
               for i in (0, 2))
    assert err.strip().splitlines() == [f"agescan explain: {recs[1]['error']}"]


def test_explain_out_naming_a_file_is_a_usage_error(tmp_path, astronaut_path, capsys):
    target = tmp_path / "notes.csv"
    target.write_text("a,b\n")
    code, recs, err = _explain(capsys, astronaut_path, "--out", target)
    assert code == 2 and recs == [] and target.read_text() == "a,b\n"
    assert err.strip() == f"agescan explain: --out {target} is a file, not a folder: name a folder for the pictures."
