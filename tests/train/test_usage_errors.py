"""A user's mistake in `agescan train fit` or `train publish` is one line naming the option and what it takes, with
the command line's exit status (2: usage), before any training and without leaving a run folder behind."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from agescan.cli.main import main as agescan  # noqa: E402
from agescan.train.loop import TrainConfig, train  # noqa: E402
from tests.train.test_train_export import _fake_dataset  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("usage") / "d.npz"
    _fake_dataset(path, n=24)
    return path


def _refused(capsys, argv) -> str:
    """The one error line of a refused command (exit status 2, no traceback)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        agescan(argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("agescan train")]
    assert "Traceback" not in err and len(errors) == 1 and err.splitlines()[-1] == errors[0]
    return errors[0]


@pytest.mark.parametrize("options, says", [
    (["--arch", "foo"], "--arch 'foo': choose one of dexnet-l, dexnet-m"),
    (["--fold", "3"], "--fold takes I/K"),
    (["--fold", "5/5"], "0 <= I < K"),
    (["--holdout", "race"], "--holdout takes COLUMN=VALUE"),
    (["--holdout", "race=2"], "no column 'race'"),
    (["--occlusion", "sunglasses"], "--occlusion takes org, a privacy transform"),
    (["--age-range", "25-0"], "need 0 <= low <= high"),
    (["--age-range", "young"], "--age-range must look like 0-25"),
    (["--epochs", "0"], "--epochs takes a number at least 1"),
    (["--lr", "-0.001"], "--lr takes a number more than 0"),
    (["--lr", "nan"], "--lr takes a number more than 0"),
    (["--freeze", "backbone"], "--freeze backbone needs --init"),
    (["--freeze", "bn"], "--freeze bn needs --init"),
    (["--init", "nothing/best.pt"], "--init nothing/best.pt: no such file"),
    (["--arch", "ssrnet", "--init", "dexnet-m.utkface"], "--init"),
])
def test_fit_refuses_bad_options_in_one_line(data, tmp_path, capsys, options, says):
    run = tmp_path / "run"
    err = _refused(capsys, ["train", "fit", str(data), str(run), *options, "--threads", "1"])
    assert err.startswith("agescan train fit: ") and says in err
    assert not run.exists()  # refused before anything was written


def test_fit_refuses_what_is_not_a_prepared_file(tmp_path, capsys):
    err = _refused(capsys, ["train", "fit", str(tmp_path / "nope.npz"), str(tmp_path / "r")])
    assert "nope.npz: no such file" in err and "agescan train prepare" in err
    labels = tmp_path / "labels.csv"
    labels.write_text("path,age\na.jpg,30\n")
    err = _refused(capsys, ["train", "fit", str(labels), str(tmp_path / "r")])
    assert "labels.csv is not a prepared .npz" in err and not (tmp_path / "r").exists()


def test_publish_a_fold_run_of_a_set_without_val_rows(tmp_path, capsys):
    """A set without a split column (MORPH's layout) trains by fold: its val rows are the fold run's own, and
    publish fits the temperature on them (it took the set's empty val split before: torch.cat of nothing)."""
    data = tmp_path / "d.npz"
    _fake_dataset(data, n=36)
    d = dict(np.load(data))
    d["split"] = np.array([""] * 36)
    np.savez(data, **d)
    run = train(TrainConfig(data=str(data), out=str(tmp_path / "f0"), epochs=1, batch_size=16, threads=1, fold="0/3"))
    assert agescan(["train", "publish", str(run), "--id", "fold.test", "--data", "unused", "--out",
                    str(tmp_path / "pub"), "--splits", "", "--data-licence", "random pixels"]) == 0
    assert (tmp_path / "pub" / "fold.test.onnx").is_file()
    err = _refused(capsys, ["train", "publish", str(tmp_path / "nothing"), "--id", "x", "--data", "unused",
                            "--out", str(tmp_path / "pub2")])
    assert err.startswith("agescan train publish: ") and "not a trained run folder" in err


def test_the_exit_status_reaches_the_shell(data, tmp_path):
    r = subprocess.run([sys.executable, "-m", "agescan", "train", "fit", str(data), str(tmp_path / "r"), "--arch",
                        "foo"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "agescan train fit: --arch 'foo': choose one of dexnet-l, dexnet-m, dexnet-s, resnet10, ssrnet."]
