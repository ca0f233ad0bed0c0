"""Outputs of the train steps: `prepare` and `publish` never replace an existing file without --overwrite (exit 2,
as the exit-code table says), `prepare` refuses an age its 16-bit storage cannot hold, and `calibrate` keeps the
Markdown card beside the file it writes in step with that file's sha256."""

from __future__ import annotations

import shutil

import pytest

torch = pytest.importorskip("torch")

from agescan.cli.main import main as agescan  # noqa: E402
from agescan.errors import ConfigError, InputError  # noqa: E402


def _labels(tmp_path, astronaut_path, ages=(42,)):
    path = tmp_path / "labels.csv"
    path.write_text("path,age\n" + "".join(f"{astronaut_path},{a}\n" for a in ages))
    return path


def test_prepare_refuses_to_replace_its_output_unless_told(tmp_path, astronaut_path, capsys):
    from agescan.train.prepare import prepare

    labels = _labels(tmp_path, astronaut_path)
    out = prepare(labels, tmp_path / "p", workers=1)
    assert out == tmp_path / "p.npz" and out.is_file()  # the file numpy writes, named as it is
    before = out.read_bytes()
    for name in ("p", "p.npz"):
        with pytest.raises(InputError, match="p.npz exists: add --overwrite"):
            prepare(labels, tmp_path / name, workers=1)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        agescan(["train", "prepare", str(labels), str(out), "--workers", "1"])
    assert exc.value.code == 2 and capsys.readouterr().err.strip().endswith("exists: add --overwrite to replace it, "
                                                                             "or name another file.")
    assert out.read_bytes() == before
    assert agescan(["train", "prepare", str(labels), str(out), "--workers", "1", "--overwrite"]) == 0


def test_prepare_refuses_an_age_its_storage_cannot_hold(tmp_path, astronaut_path, capsys):
    from agescan.train.prepare import prepare

    labels = _labels(tmp_path, astronaut_path, ages=(42, 1e6))
    with pytest.raises(ConfigError, match=r"1 age\(s\) cannot be stored .*1000000"):
        prepare(labels, tmp_path / "p.npz", workers=1)
    with pytest.raises(SystemExit) as exc:
        agescan(["train", "prepare", str(labels), str(tmp_path / "p.npz"), "--workers", "1"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 3 and "Traceback" not in err and err.startswith("agescan train prepare: ")
    assert not (tmp_path / "p.npz").exists()


def test_publish_refuses_to_replace_a_published_model_unless_told(tmp_path, capsys):
    from agescan.train.loop import TrainConfig, train
    from agescan.train.publish import publish
    from tests.train.test_train_export import _fake_dataset

    data = tmp_path / "d.npz"
    _fake_dataset(data, n=24)
    run = train(TrainConfig(data=str(data), out=str(tmp_path / "r"), epochs=1, batch_size=16, threads=1))
    out = tmp_path / "pub"
    kw = dict(splits=(), data_licence="random pixels")
    sha = publish(str(run), "t.x", "unused", str(out), "test", **kw)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(InputError, match=r"t.x.onnx and .*t.x.md exist\(s\): add --overwrite"):
        publish(str(run), "t.x", "unused", str(out), "test", **kw)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        agescan(["train", "publish", str(run), "--id", "t.x", "--data", "unused", "--out", str(out), "--splits", "",
                 "--data-licence", "random pixels"])
    assert exc.value.code == 2 and "--overwrite" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert publish(str(run), "t.x", "unused", str(out), "test", overwrite=True, **kw) == sha


def test_calibrate_keeps_the_markdown_card_in_step(tmp_path):
    from agescan.decisions import Calibration
    from agescan.models import create_model
    from agescan.train.calibrate import write_calibrated

    shipped = create_model("dexnet-m.utkface")
    model = tmp_path / "dexnet-m.utkface.onnx"
    shutil.copy(shipped.path, model)
    shutil.copy(shipped.path.with_suffix(".md"), model.with_suffix(".md"))
    old = shipped.sha256
    assert old in model.with_suffix(".md").read_text()
    calib = Calibration.from_dict({**shipped.card.calibration, "flag_threshold": 0.05})
    sha = write_calibrated(str(model), calib, str(model))  # in place, as docs/training.md does it
    text = model.with_suffix(".md").read_text()
    assert sha != old and f"sha256 `{sha}`" in text and old not in text
    assert f"`dexnet-m.utkface.onnx`, {model.stat().st_size:,} bytes" in text
    other = tmp_path / "cal" / "renamed.onnx"  # elsewhere: the card travels with it
    sha2 = write_calibrated(str(model), calib, str(other))
    assert f"- **File**: `renamed.onnx`, {other.stat().st_size:,} bytes, sha256 `{sha2}`" in \
        other.with_suffix(".md").read_text()
