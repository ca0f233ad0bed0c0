"""`agescan train prepare` on a non-UTKFace CSV, `agescan train cv` running a subject-disjoint protocol end to end
(train per fold, export, evaluate through AgeEstimator) and resuming after a kill without redoing finished folds,
the frozen-backbone mode, loading shipped weights, and the cascade recorded in the card."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from agescan.errors import ConfigError  # noqa: E402
from agescan.eval.datasets import DatasetSpec  # noqa: E402
from tests.conftest import MORPH, morph_rows  # noqa: E402


def _morph_csv(tmp_path, n_subjects: int = 8) -> tuple:
    """A user's own CSV (other column names, a row without an age) over real MORPH images of n subjects."""
    rows = morph_rows()
    by_subject: dict[str, list[dict]] = {}
    for r in rows:
        by_subject.setdefault(r["subject"], []).append(r)
    picked = [rs[:2] for rs in by_subject.values() if len(rs) >= 2][:n_subjects]
    path = tmp_path / "mine.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "years", "person", "sex", "site"])
        for rs in picked:
            for r in rs:
                w.writerow([str(MORPH / r["path"]), r["age"], r["subject"], r["gender"], "a"])
        w.writerow([str(MORPH / picked[0][0]["path"]), "", "nobody", "F", "a"])  # no age: counted, left out
    return path, [r for rs in picked for r in rs]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from agescan.train.prepare import prepare

    tmp = tmp_path_factory.mktemp("prep")
    labels, rows = _morph_csv(tmp)
    spec = DatasetSpec(data=str(labels), age_column="years", path_column="image", subject_column="person",
                       gender_column="sex")
    out = prepare(labels, tmp / "mine.npz", workers=1, spec=spec)
    return out, rows


def test_prepare_reads_a_non_utkface_csv_and_keeps_subjects(prepared):
    out, rows = prepared
    d = np.load(out)
    assert d["crops"].shape == (16, 96, 96, 3) and d["age"].tolist() == [int(r["age"]) for r in rows]
    assert d["subject"].tolist() == [r["subject"] for r in rows] and d["gender"].tolist() == [r["gender"] for r in rows]
    assert (d["split"] == "").all() and d["site"].tolist() == ["a"] * 16  # other columns kept as text
    assert int(d["unlabelled"]) == 1 and (d["det_score"] > 0.5).sum() >= 15  # the detector finds the mugshots
    assert d["image_path"][0] == str(MORPH / rows[0]["path"])


def test_prepare_names_a_missing_column_and_missing_files(tmp_path):
    from agescan.train.prepare import main, prepare

    labels, _ = _morph_csv(tmp_path, 2)
    with pytest.raises(SystemExit, match=r"no column 'age'.*--age-column"):
        main([str(labels), str(tmp_path / "x.npz"), "--path-column", "image"])
    with pytest.raises(SystemExit, match=r"no column 'subject' for the subject"):
        main([str(labels), str(tmp_path / "x.npz"), "--preset", "morph", "--path-column", "image", "--age-column", "years"])
    labels.write_text("path,age\nimages/nothing_here.jpg,30\n")
    with pytest.raises(ConfigError, match="1 of 1 listed images do not exist"):
        prepare(labels, tmp_path / "x.npz", workers=1)


def test_a_fit_without_a_split_column_says_which_protocol_to_use(prepared, tmp_path):
    from agescan.train.loop import TrainConfig, train

    with pytest.raises(ValueError, match="no fixed train/val split"):
        train(TrainConfig(data=str(prepared[0]), out=str(tmp_path / "r"), epochs=1))


@pytest.mark.slow
def test_cv_runs_a_subject_disjoint_protocol_and_resumes_after_a_kill(prepared, tmp_path, monkeypatch):
    import agescan.eval.run
    import agescan.train.loop
    from agescan.train import cv

    data, rows = prepared
    out = tmp_path / "cv"
    args = [str(data), str(out), "--protocol", "kfold", "--folds", "2", "--arch", "dexnet-s", "--epochs", "1",
            "--batch-size", "8", "--threads", "1"]
    trained, evaluated = [], []
    real_train, real_eval = agescan.train.loop.train, agescan.eval.run.evaluate_folder

    def counting_train(cfg, resume=False):
        trained.append(cfg.out)
        return real_train(cfg, resume)

    def killed_on_second_fold(*a, **k):
        evaluated.append(a[0])
        if len(evaluated) == 2:
            raise KeyboardInterrupt  # the run is killed while evaluating fold 1
        return real_eval(*a, **k)

    monkeypatch.setattr(agescan.train.loop, "train", counting_train)
    monkeypatch.setattr(agescan.eval.run, "evaluate_folder", killed_on_second_fold)
    with pytest.raises(KeyboardInterrupt):
        cv.main(args)
    first = (out / "fold-0" / "result.json").read_text()
    assert not (out / "fold-1" / "result.json").exists() and len(trained) == 2
    monkeypatch.setattr(agescan.eval.run, "evaluate_folder", real_eval)
    trained.clear()
    cv.main(args)
    assert trained == [str(out / "fold-1")]  # fold 0 was not trained again, fold 1 resumed from its last epoch
    assert (out / "fold-0" / "result.json").read_text() == first
    assert len((out / "fold-1" / "log.jsonl").read_text().splitlines()) == 1  # its finished epoch was not redone
    s = json.loads((out / "summary.json").read_text())
    assert s["complete"] and s["folds_done"] == 2 and sum(f["n"] for f in s["folds"]) == 16
    assert s["pooled"]["n"] == 16 and "r2" in s["pooled"] and "sd" in s and "mean" in s
    d = np.load(data)
    held = [{r["subject"] for r in csv.DictReader(open(out / f"fold-{i}" / "heldout.csv"))} for i in (0, 1)]
    assert not held[0] & held[1] and held[0] | held[1] == set(d["subject"].tolist())  # each subject in one fold
    rep = json.loads((out / "fold-1" / "eval.json").read_text())  # evaluated end to end through the pipeline
    assert rep["detector"] and rep["faces_found"] + rep["faces_missed"] == rep["n"] == s["folds"][1]["n"]
    from agescan.models import create_model

    card = create_model(str(out / "fold-1" / "model.onnx")).card
    assert card.training["config"]["fold"] == "1/2" and card.training["config"]["fold_by"] == "subject"
    assert card.training["cascade"][0] == {"origin": "random initialisation"}
    with pytest.raises(SystemExit, match="another protocol or settings"):
        cv.main([*args[:-6], "--epochs", "2", *args[-4:]])
    with pytest.raises(SystemExit, match="set by --protocol"):
        cv.main([*args, "--fold", "0/2"])


def test_shipped_weights_load_exactly_and_the_frozen_backbone_mode_trains_the_head_only(prepared, tmp_path):
    import onnxruntime as ort

    from agescan.train.loop import TrainConfig, train
    from agescan.train.nets import build, load_init, shipped_onnx
    from agescan.train.publish import cascade

    net = build("dexnet-m")
    load_init(net, "dexnet-m.utkface")
    x = torch.randn(3, 3, 64, 64)
    sess = ort.InferenceSession(str(shipped_onnx("dexnet-m.utkface")))
    import onnx
    from onnx import numpy_helper

    inv_t = float(next(numpy_helper.to_array(i) for i in onnx.load(str(shipped_onnx("dexnet-m.utkface"))).graph.initializer
                       if i.name == "inv_t"))
    ours = torch.softmax(net.eval()(x) * inv_t, 1).detach().numpy()
    assert np.abs(ours - sess.run(None, {"input": x.numpy()})[0]).max() < 1e-5  # the exported function, exactly
    with pytest.raises(ValueError, match="layer shapes differ|convolutions"):
        load_init(build("dexnet-s"), "dexnet-m.utkface")
    cfg = TrainConfig(data=str(prepared[0]), out=str(tmp_path / "head"), arch="dexnet-m", init="dexnet-m.utkface",
                      freeze="backbone", epochs=1, batch_size=8, threads=1, fold="0/2", fold_by="subject")
    train(cfg)
    after = build("dexnet-m")
    after.load_state_dict(torch.load(tmp_path / "head" / "last.pt", weights_only=False)["model"])
    before = net.state_dict()
    changed = {k for k, v in after.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"head.3.weight", "head.3.bias"}  # BatchNorm statistics included: nothing else moved
    step2 = TrainConfig(data=str(prepared[0]), out=str(tmp_path / "step2"), arch="dexnet-m",
                        init=str(tmp_path / "head" / "best.pt"), epochs=1, batch_size=8, threads=1, holdout="sex=F")
    steps = cascade(step2)
    assert steps[0] == {"origin": "dexnet-m.utkface"}
    assert [s["freeze"] for s in steps[1:]] == ["backbone", "none"] and steps[2]["protocol"] == "holdout sex=F"
    with pytest.raises(ValueError, match="needs --init"):
        train(TrainConfig(data=str(prepared[0]), out=str(tmp_path / "x"), freeze="backbone", fold="0/2"))


@pytest.mark.slow
def test_the_feature_baseline_chooses_a_regressor_by_cv_and_runs_through_the_pipeline(prepared, tmp_path):
    pytest.importorskip("sklearn")
    from agescan.models import create_model
    from agescan.train import cv
    from agescan.train.features import CANDIDATES

    out = tmp_path / "feat"
    cv.main([str(prepared[0]), str(out), "--protocol", "kfold", "--folds", "2", "--method", "features",
             "--arch", "dexnet-m", "--init", "dexnet-m.utkface", "--threads", "1"])
    s = json.loads((out / "summary.json").read_text())
    assert s["complete"] and s["method"] == "features" and s["pooled"]["n"] == 16
    for f in s["folds"]:
        assert f["features"]["regressor"].lower().startswith(tuple(CANDIDATES)) and f["features"]["features"] == 320
        assert np.isfinite(f["r2"]) and 1.0 <= f["features"]["sigma"]
    card = create_model(str(out / "fold-0" / "model.onnx")).card
    assert "pooled features" in card.architecture and card.training["config"]["freeze"] == "backbone"


def test_help_says_what_evaluate_slices_and_what_train_cv_runs():
    import subprocess
    import sys

    ev = subprocess.run([sys.executable, "-m", "agescan", "evaluate", "--help"], capture_output=True, text=True,
                        timeout=120)
    text = " ".join(ev.stdout.split())
    assert ev.returncode == 0 and "not held-out training" in text and "agescan train cv" in text
    assert "--slices" in text and "--preset" in text
    cv = subprocess.run([sys.executable, "-m", "agescan", "train", "cv", "--help"], capture_output=True, text=True,
                        timeout=120)
    text = " ".join(cv.stdout.split())
    assert cv.returncode == 0 and "subject-disjoint" in text and "--freeze" in text and "--method" in text


def test_the_feature_baseline_names_unknown_regressors():
    from agescan.train import features

    with pytest.raises(ValueError, match=r"takes names among \['huber', 'lasso', 'ridge'\]. Got \['svm'\]"):
        features.fit(None, np.array([]), None, regressors=("svm",))
