"""Training -> ONNX export with the card embedded -> loading through the inference registry."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from agescan import AgeEstimator, create_model  # noqa: E402
from agescan.align import CropRecipe  # noqa: E402
from agescan.export import export_onnx, parity  # noqa: E402
from agescan.models import ModelCard  # noqa: E402
from agescan.train.loop import MEAN, STD, TrainConfig, train  # noqa: E402
from agescan.train.nets import ProbsWrapper, build  # noqa: E402


def _fake_dataset(path, n=96, size=96, seed=0):
    rng = np.random.default_rng(seed)
    ages = rng.integers(1, 90, n)
    # brightness encodes age so that even two epochs learn something measurable
    crops = np.clip(rng.normal(ages[:, None, None, None] * 2.5, 10, (n, size, size, 3)), 0, 255).astype(np.uint8)
    split = np.array(["train"] * (n * 3 // 4) + ["val"] * (n - n * 3 // 4))
    np.savez(path, crops=crops, age=ages, split=split)


@pytest.mark.slow
def test_train_resume_export_and_load(tmp_path):
    data = tmp_path / "d.npz"
    _fake_dataset(data)
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "run"), epochs=2, batch_size=32, threads=1)
    run = train(cfg)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    assert (run / "best.pt").exists() and (run / "last.pt").exists()
    # A run stopped after one epoch and resumed ends exactly where the uninterrupted run did.
    cut = TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "cut"), "stop_after": 1})
    train(cut)
    assert len((tmp_path / "cut" / "log.jsonl").read_text().splitlines()) == 1
    train(TrainConfig(**{**cut.__dict__, "stop_after": 0}), resume=True)
    log_cut = [json.loads(line) for line in (tmp_path / "cut" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log_cut] == [1, 2]
    a = torch.load(run / "last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "cut" / "last.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert log_cut[1]["val_mae"] == log[1]["val_mae"]

    net = build(cfg.arch, cfg.max_age + 1)
    net.load_state_dict(torch.load(run / "best.pt", weights_only=False)["model"])
    card = ModelCard(id="test.fake", architecture="DexNet-S test", crop=CropRecipe(size=64), mean=MEAN, std=STD,
                     licence="test only", training_data="random pixels", metrics={"none": {}})
    path, sha = export_onnx(ProbsWrapper(net, 1.3), card, tmp_path / "m.onnx")
    assert parity(ProbsWrapper(net, 1.3), path) < 1e-4
    m = create_model(str(path))
    assert m.card == card and m.sha256 == sha
    est = AgeEstimator(model=str(path))
    assert est.predict(np.zeros((80, 80, 3), np.uint8)).faces == ()


def test_prepare_on_real_faces(tmp_path):
    from agescan.train.prepare import prepare
    from tests.conftest import UTKFACE, utkface_rows

    utkface_rows("train")
    out = prepare(UTKFACE, tmp_path / "p.npz", size=96, margin=0.25, workers=1, limit=6)
    d = np.load(out)
    assert d["crops"].shape == (6, 96, 96, 3) and len(d["age"]) == 6
    assert (d["det_score"] > 0.9).sum() >= 5  # MTCNN finds (almost) every UTKFace face


def test_training_eye_bands_cover_the_eyes_and_leave_input_alone():
    from agescan.align import UTKFACE_TEMPLATE
    from agescan.train.loop import add_eye_bands, eye_positions

    lm = np.asarray(UTKFACE_TEMPLATE) * 200  # a chip aligned exactly on the template
    eyes = eye_positions(np.stack([lm] * 40), 96, 0.25)
    assert np.allclose(eyes[0], (np.asarray(UTKFACE_TEMPLATE[:2]) + 0.25) / 1.5 * 96)
    crops = np.full((40, 96, 96, 3), 200, np.uint8)
    g = torch.Generator().manual_seed(0)
    assert add_eye_bands(crops, eyes, "org", g) is crops
    banded = add_eye_bands(crops, eyes, "ocl", g)
    assert crops.min() == 200
    for (lx, ly), (rx, ry) in eyes[:1]:
        assert (banded[:, int(ly), int(lx)] == 0).all() and (banded[:, int(ry), int(rx)] == 0).all()
    black = (banded[0] == 0).all(2).mean()
    assert 0.08 < black < 0.14  # about 0.95 * 54 x 0.25 * 72 px of a 96 x 96 crop
    half = add_eye_bands(crops, eyes, "org+ocl", g)
    assert 8 < sum((c == 0).any() for c in half) < 32


def test_per_age_sampling_draws_n_of_every_age():
    from agescan.train.loop import epoch_order

    ages = np.array([1] * 3 + [2] * 50 + [7] * 10)
    order = epoch_order(ages, 0.0, torch.Generator().manual_seed(0), per_age=20)
    counts = np.bincount(ages[order], minlength=8)
    assert counts[1] == counts[2] == counts[7] == 20 and len(order) == 60
    assert len(set(order[ages[order] == 2])) == 20  # enough images: drawn without replacement
    assert set(order[ages[order] == 1]) == {0, 1, 2}  # too few: drawn with replacement


@pytest.mark.slow
def test_ssrnet_trains_from_the_authors_weights_and_exports(tmp_path):
    from tests.train.test_ssrnet import WEIGHTS

    h5 = WEIGHTS / "imdb" / "ssrnet_3_3_3_64_1.0_1.0.h5"
    if not h5.is_file():
        pytest.skip(f"SSR-Net weights not available under {WEIGHTS}")
    from agescan.train.nets import load_init

    data = tmp_path / "d.npz"
    _fake_dataset(data, n=64)
    fresh = build("ssrnet")
    load_init(fresh, str(h5))
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "ssr"), arch="ssrnet", epochs=1, batch_size=16, threads=1,
                      init=str(h5), per_age=1, age_range="0-60", clip_grad=5.0)
    train(cfg)
    net = build("ssrnet")
    net.load_state_dict(torch.load(tmp_path / "ssr" / "best.pt", weights_only=False)["model"])
    # started from the authors' weights (not from scratch) and moved away from them
    w0, w1 = fresh.ssr.x_blocks[0].conv.weight, net.ssr.x_blocks[0].conv.weight
    assert torch.allclose(w0, w1, atol=0.05) and not torch.equal(w0, w1)
    card = ModelCard(id="test.ssr", architecture="SSR-Net test", crop=CropRecipe(size=64), mean=MEAN, std=STD,
                     licence="test only", training_data="random pixels", metrics={"none": {}})
    path, _ = export_onnx(ProbsWrapper(net.eval()), card, tmp_path / "ssr.onnx")
    assert parity(ProbsWrapper(net), path) < 1e-4
    with pytest.raises(ValueError, match="need --arch ssrnet"):
        load_init(build("dexnet-s"), str(h5))


@pytest.mark.slow
def test_residual_dex_learns_the_first_models_residuals(tmp_path):
    from agescan.train.loop import build_for, predict_logits

    data = tmp_path / "d.npz"
    _fake_dataset(data)
    first = TrainConfig(data=str(data), out=str(tmp_path / "d1"), epochs=1, batch_size=32, threads=1)
    train(first)
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "d2"), epochs=3, batch_size=32, threads=1,
                      residual_of=str(tmp_path / "d1"), lr=5e-3)
    train(cfg)
    combined = build_for(cfg, load_first=False)
    combined.load_state_dict(torch.load(tmp_path / "d2" / "best.pt", weights_only=False)["model"])
    d1 = build("dexnet-s")
    d1.load_state_dict(torch.load(tmp_path / "d1" / "best.pt", weights_only=False)["model"])
    assert all(torch.equal(a, b) for a, b in zip(combined.d1.state_dict().values(), d1.state_dict().values()))
    d = np.load(data)
    va = d["split"] == "val"
    probs = torch.softmax(predict_logits(combined, d["crops"][va], cfg), 1)
    assert torch.allclose(probs.sum(1), torch.ones(len(probs)), atol=1e-4)
    e1 = torch.softmax(predict_logits(d1, d["crops"][va], cfg), 1) @ torch.arange(101.0)
    combined.eval()
    with torch.no_grad():
        from agescan.train.loop import to_input

        x = to_input(d["crops"][va], cfg, False, torch.Generator())
        e2 = torch.softmax(combined.d2(x), 1) @ combined.offsets
    # the combined expectation is D1 + D2 (up to the clamping at the ends of the age range)
    assert torch.allclose(probs @ torch.arange(101.0), (e1 + e2).clamp(0, 100), atol=0.05)
    log = [json.loads(x) for x in (tmp_path / "d2" / "log.jsonl").read_text().splitlines()]
    log1 = [json.loads(x) for x in (tmp_path / "d1" / "log.jsonl").read_text().splitlines()]
    assert min(r["val_mae"] for r in log) < log1[-1]["val_mae"]  # the residual model helps the first


@pytest.mark.slow
def test_kfold_and_holdout_runs_report_their_held_out_rows(tmp_path, capsys):
    from agescan.eval.protocols import kfold_assign
    from agescan.train import cv

    data = tmp_path / "d.npz"
    _fake_dataset(data, n=60)
    d = dict(np.load(data))
    d["race"] = np.arange(60) % 3
    np.savez(data, **d)
    runs = []
    for i in range(3):
        cfg = TrainConfig(data=str(data), out=str(tmp_path / f"f{i}"), epochs=1, batch_size=16, threads=1,
                          fold=f"{i}/3", fold_seed=7)
        runs.append(train(cfg))
        rep = json.loads((runs[-1] / "heldout.json").read_text())
        assert rep["n"] == int((kfold_assign(60, 3, 7) == i).sum()) and rep["clean"]["n"] == rep["n"]
    cv.main(["summarise"] + [str(r) for r in runs] + ["--out", str(tmp_path / "cv.json")])
    s = json.loads((tmp_path / "cv.json").read_text())
    assert sum(r["n"] for r in s["runs"]) == 60  # every row held out exactly once
    assert s["mean"]["clean"]["mae"] == pytest.approx(np.mean([r["clean"]["mae"] for r in s["runs"]]))
    assert "| mean ± sd |" in capsys.readouterr().out
    train(TrainConfig(data=str(data), out=str(tmp_path / "h"), epochs=1, batch_size=16, threads=1, holdout="race=2"))
    assert json.loads((tmp_path / "h" / "heldout.json").read_text())["n"] == 20
    with pytest.raises(ValueError, match=r"takes the values \['0', '1', '2'\]"):
        train(TrainConfig(data=str(data), out=str(tmp_path / "x"), epochs=1, holdout="race=9"))
    with pytest.raises(ValueError, match="I/K"):
        train(TrainConfig(data=str(data), out=str(tmp_path / "x"), epochs=1, fold="3"))


@pytest.mark.slow
def test_plateau_schedule_halves_the_rate_after_patience_epochs_without_progress(tmp_path, monkeypatch):
    from agescan.train import loop

    data = tmp_path / "d.npz"
    _fake_dataset(data, n=48)
    monkeypatch.setattr(loop, "selection_score", lambda m, hi: 1.0)  # val never improves after epoch 1
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "p"), epochs=4, batch_size=16, threads=1, lr=1e-3,
                      schedule="plateau", patience=1, stop_after=2)
    train(cfg)
    train(TrainConfig(**{**cfg.__dict__, "stop_after": 0}), resume=True)  # the schedule's state survives a resume
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "p" / "log.jsonl").read_text().splitlines()]
    assert lrs == pytest.approx([1e-3, 1e-3, 5e-4, 2.5e-4])


def test_val_share_redraws_val_from_train_and_val_and_leaves_test_alone():
    from agescan.train.loop import protocol_split

    split = np.array(["train"] * 700 + ["val"] * 100 + ["test"] * 200)
    d = {"split": split}
    cfg = TrainConfig(data="d.npz", out="o", val_share=0.2)
    s = protocol_split(d, cfg)
    assert (s[800:] == "test").all() and np.array_equal(s, protocol_split(d, cfg))
    assert 0.16 < (s[:800] == "val").mean() < 0.24 and set(s[:800]) == {"train", "val"}
    with pytest.raises(ValueError, match="fraction"):
        protocol_split(d, TrainConfig(data="d.npz", out="o", val_share=1.5))


@pytest.mark.slow
def test_lr_batch_grid_selects_on_val_and_resumes(tmp_path, capsys):
    from agescan.train import grid

    data = tmp_path / "d.npz"
    _fake_dataset(data, n=48)
    args = [str(data), str(tmp_path / "g"), "--epochs", "1", "--threads", "1", "--lrs", "1e-3,3e-3",
            "--batch-sizes", "16"]
    grid.main(args)
    res = json.loads((tmp_path / "g" / "grid.json").read_text())
    assert [(c["lr"], c["batch_size"]) for c in res["cells"]] == [(1e-3, 16), (3e-3, 16)]
    assert res["best"]["val_score"] == min(c["val_score"] for c in res["cells"])
    assert "**best**" in (tmp_path / "g" / "grid.md").read_text() and "best: lr" in capsys.readouterr().out
    grid.main(args)  # finished cells are kept, not retrained
    assert len((tmp_path / "g" / "lr0.001-bs16" / "log.jsonl").read_text().splitlines()) == 1


def test_float16_storage_halves_the_file_and_keeps_the_rounded_function(tmp_path):
    from agescan.export import round_to_half

    net = build("dexnet-m").eval()
    card = ModelCard(id="test.half", architecture="DexNet-M test", crop=CropRecipe(size=64), mean=MEAN, std=STD,
                     licence="test only", training_data="none", metrics={"none": {}})
    full, _ = export_onnx(ProbsWrapper(net), card, tmp_path / "full.onnx")
    assert round_to_half(net) > 0
    half, sha = export_onnx(ProbsWrapper(net), card, tmp_path / "half.onnx", half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    assert parity(ProbsWrapper(net), half) < 1e-5  # float16 storage of float16-rounded weights is exact
    m = create_model(str(half))
    assert m.card == card and m.sha256 == sha
    crops = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    assert np.allclose(m.predict_probs(crops).sum(1), 1.0, atol=1e-5)


def test_model_crop_depends_on_margin_not_on_input_size():
    from agescan.train.loop import augment_grid

    g = torch.Generator()
    extent = lambda **kw: augment_grid(1, TrainConfig(data="", out="", **kw), 96, False, g)[0, -1, -1, 0].item()  # noqa: E731
    # the template square is the centre 2/3 of a margin-0.25 crop, whatever the model's input size
    assert extent(input_size=64) * 64 / 63 == pytest.approx(2 / 3)
    assert extent(input_size=96) * 96 / 95 == pytest.approx(2 / 3)
    assert extent(input_size=64, margin=0.25) * 64 / 63 == pytest.approx(1.0)
    with pytest.raises(ValueError, match="--margin must be between 0 and 0.25"):
        extent(margin=0.3)


def test_occlusion_enumerates_the_privacy_registry():
    from agescan.align import UTKFACE_TEMPLATE
    from agescan.train.loop import crop_landmarks, occlude, parse_occlusion

    assert parse_occlusion("org+ocl") == (["eye-band"], True)  # stored run configs
    assert parse_occlusion("eye-mask+eye-mosaic") == (["eye-mask", "eye-mosaic"], False)
    with pytest.raises(ValueError, match="eye-mask"):
        parse_occlusion("org+sunglasses")
    with pytest.raises(ValueError, match="no face"):
        parse_occlusion("keyed-permutation")
    lm = crop_landmarks(np.stack([np.asarray(UTKFACE_TEMPLATE) * 200] * 60), 96, 0.25)
    crops = np.random.default_rng(0).integers(0, 256, (60, 96, 96, 3), dtype=np.uint8)
    before = crops.tobytes()
    mixed = occlude(crops, lm, "org+eye-mask+eye-mosaic", torch.Generator().manual_seed(0))
    assert crops.tobytes() == before
    black = [(c == 0).all(2).mean() > 0.05 for c in mixed]
    changed = [(c != o).any() for c, o in zip(mixed, crops)]
    assert 10 < sum(black) < 30 and 30 < sum(changed) < 50  # a third masked, a third mosaic, a third clean
    again = occlude(crops, lm, "org+eye-mask+eye-mosaic", torch.Generator().manual_seed(0))
    assert np.array_equal(mixed, again)


def test_a_resume_keeps_the_run_s_settings_and_a_used_folder_is_not_written_over(tmp_path):
    """`fit --resume` with another --lr or --occlusion is refused (naming them) instead of training on and recording
    the new settings; more --epochs under one-cycle is refused (its schedule spans the epochs it was set up for),
    under plateau it continues exactly as a longer run; a folder holding a run is never trained into without
    --resume."""
    from agescan.errors import InputError

    data = tmp_path / "d.npz"
    _fake_dataset(data, n=32)
    cfg = TrainConfig(data=str(data), out=str(tmp_path / "r"), epochs=2, batch_size=16, threads=1, stop_after=1)
    run = train(cfg)
    files = {p.name: p.read_bytes() for p in run.iterdir()}
    with pytest.raises(InputError, match=r"--lr 0.002 \(now 0.5\); --balance 0.0 \(now 0.5\)"):
        train(TrainConfig(**{**cfg.__dict__, "lr": 0.5, "balance": 0.5, "stop_after": 0}), resume=True)
    with pytest.raises(InputError, match=r"--occlusion 'org' \(now 'org\+eye-band'\)"):
        train(TrainConfig(**{**cfg.__dict__, "occlusion": "org+eye-band", "stop_after": 0}), resume=True)
    with pytest.raises(InputError, match=r"--epochs 2 \(now 3\).*one-cycle"):
        train(TrainConfig(**{**cfg.__dict__, "epochs": 3, "stop_after": 0}), resume=True)
    with pytest.raises(InputError, match="not empty.*--resume"):
        train(TrainConfig(**{**cfg.__dict__, "stop_after": 0}))
    assert {p.name: p.read_bytes() for p in run.iterdir()} == files  # nothing written by the refused calls
    train(TrainConfig(**{**cfg.__dict__, "stop_after": 0, "threads": 2}), resume=True)  # how it runs may change
    assert len((run / "log.jsonl").read_text().splitlines()) == 2
    with pytest.raises(InputError, match="not empty"):
        train(TrainConfig(**{**cfg.__dict__, "stop_after": 0}))

    plateau = dict(cfg.__dict__, schedule="plateau", epochs=1, stop_after=0)
    train(TrainConfig(**{**plateau, "out": str(tmp_path / "p")}))
    train(TrainConfig(**{**plateau, "out": str(tmp_path / "p"), "epochs": 2}), resume=True)
    train(TrainConfig(**{**plateau, "out": str(tmp_path / "q"), "epochs": 2}))
    strip = lambda run: [{k: v for k, v in json.loads(x).items() if k != "seconds"}  # noqa: E731
                         for x in (tmp_path / run / "log.jsonl").read_text().splitlines()]
    assert strip("p") == strip("q") and len(strip("p")) == 2
    assert json.loads((tmp_path / "p" / "config.json").read_text())["epochs"] == 2
