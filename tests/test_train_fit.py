"""Training end to end on tiny synthetic data: every architecture, the run folder, resume, the CLI."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import held_folder, write_csv
from fer_train.cli import app
from fer_train.fit import FitConfig, TrainError, fit

RUN_FILES = ["model.keras", "config.json", "history.csv", "metrics.json", "confusion.png", "curves.png"]


def tiny_cfg(data, **kw) -> FitConfig:
    options = dict(
        data=str(data),
        model="cnn",
        model_options={"width": 0.125, "first_kernel": 3},
        epochs=1,
        batch_size=16,
        command="test",
    )
    return FitConfig(**{**options, **kw})


@pytest.mark.parametrize(
    "arch",
    [
        "cnn",
        pytest.param("vgg16", marks=pytest.mark.slow),
        pytest.param("inceptionv3", marks=pytest.mark.slow),
    ],
)
def test_one_epoch_of_each_architecture_writes_a_complete_run(tiny_folders, tmp_path, arch):
    import keras

    out = tmp_path / arch
    options = {"width": 0.125} if arch == "cnn" else {}
    cfg = tiny_cfg(tiny_folders, model=arch, model_options=options, augment=arch == "cnn")
    metrics = fit(cfg, out, log=lambda m: None)
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["split"] == "PublicTest" and saved["samples"] == 21
    assert set(saved["single_crop"]["per_class"]) == {
        "angry",
        "disgust",
        "fear",
        "happy",
        "sad",
        "surprise",
        "neutral",
    }
    assert 0.0 <= saved["flip_tta_accuracy"] <= 1.0 and metrics["parameters"] > 0
    config = json.loads((out / "config.json").read_text())
    assert config["labels"][3] == "happy" and config["input"]["range"] == [0, 255]
    model = keras.models.load_model(out / "model.keras")
    assert model.input_shape == (None, 48, 48, 1)
    with zipfile.ZipFile(out / "model.keras") as saved:  # weights only, no optimizer state
        assert "optimizer" not in h5py.File(io.BytesIO(saved.read("model.weights.h5")), "r")
    probs = model.predict(np.full((2, 48, 48, 1), 255.0, np.float32), verbose=0)
    assert probs.shape == (2, 7) and np.allclose(probs.sum(1), 1.0, atol=1e-4)


def test_training_lowers_the_loss(tiny_folders, tmp_path):
    cfg = tiny_cfg(tiny_folders, epochs=4, model_options={"width": 0.25}, augment=False, learning_rate=3e-3)
    fit(cfg, tmp_path / "run", log=lambda m: None)
    history = json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["loss"] < history[0]["loss"]


@pytest.mark.slow
def test_finished_run_is_not_overwritten_but_can_be_extended(tiny_folders, tmp_path):
    out = tmp_path / "run"
    fit(tiny_cfg(tiny_folders), out, log=lambda m: None)
    with pytest.raises(TrainError, match="finished run; use --force"):
        fit(tiny_cfg(tiny_folders), out, log=lambda m: None)
    with pytest.raises(TrainError, match=r"other settings \(model_options\)"):
        fit(tiny_cfg(tiny_folders, model_options={"width": 0.25}, epochs=2), out, log=lambda m: None)
    with pytest.raises(TrainError, match=r"other settings \(mixup\)"):
        fit(tiny_cfg(tiny_folders, mixup=0.2, epochs=2), out, log=lambda m: None)
    # A run begun before a setting existed (here: --mixup) had it at its default, and resumes.
    config = json.loads((out / "config.json").read_text())
    del config["fit"]["mixup"]
    (out / "config.json").write_text(json.dumps(config))
    messages = []
    fit(tiny_cfg(tiny_folders, epochs=2, patience=5), out, log=messages.append)
    assert any("resuming at epoch 2" in m for m in messages)
    assert [h["epoch"] for h in json.loads((out / "checkpoint" / "state.json").read_text())["history"]] == [
        1,
        2,
    ]
    fit(tiny_cfg(tiny_folders), out, force=True, log=lambda m: None)
    assert len((out / "history.csv").read_text().splitlines()) == 2  # header + the one new epoch


def test_a_damaged_resume_state_is_one_error_naming_it(tiny_folders, tmp_path):
    out = tmp_path / "run"
    fit(tiny_cfg(tiny_folders, schedule="plateau"), out, log=lambda m: None)
    state = out / "checkpoint" / "state.json"
    for damage, unfinished in [("{bad", False), ('{"epoch": "x", "history": []}', True)]:
        state.write_text(damage)
        if unfinished:
            (out / "metrics.json").unlink()  # a run killed mid-way: it resumes from the checkpoint
        with pytest.raises(TrainError, match="state.json: damaged resume state; use --force"):
            fit(tiny_cfg(tiny_folders, schedule="plateau", epochs=2), out, log=lambda m: None)


def test_a_damaged_best_model_stops_a_resumed_run_before_it_trains(tiny_folders, tmp_path):
    out = tmp_path / "run"
    fit(tiny_cfg(tiny_folders, schedule="plateau"), out, log=lambda m: None)
    (out / "metrics.json").unlink()  # a run killed mid-way: it resumes from the checkpoint
    (out / "best.keras").write_bytes((out / "best.keras").read_bytes()[:1000])
    damaged = "best.keras: not a loadable Keras model.*best epoch: --force starts over"
    with pytest.raises(TrainError, match=damaged):
        fit(tiny_cfg(tiny_folders, schedule="plateau", epochs=2), out, log=lambda m: None)
    assert len((out / "history.csv").read_text().splitlines()) == 2  # header + epoch 1: nothing trained


def test_damaged_run_settings_are_one_error_naming_them(tiny_folders, tmp_path):
    out = tmp_path / "run"
    fit(tiny_cfg(tiny_folders), out, log=lambda m: None)
    for damage in ["{bad", "[]", '{"fit": null}', '{"fit": [1]}']:
        (out / "config.json").write_text(damage)
        with pytest.raises(TrainError, match="config.json: unreadable run settings; use --force"):
            fit(tiny_cfg(tiny_folders), out, log=lambda m: None)


def test_a_folder_another_process_is_training_in_is_left_alone(tiny_folders, tmp_path):
    out = tmp_path / "run"
    fit(tiny_cfg(tiny_folders), out, log=lambda m: None)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    with held_folder(out):  # what a running `fer-train fit` holds
        with pytest.raises(TrainError, match="another fer-train is training in this folder"):
            fit(tiny_cfg(tiny_folders), out, force=True, log=lambda m: None)
        assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # --force removed nothing
    fit(tiny_cfg(tiny_folders), out, force=True, log=lambda m: None)  # the lock ended with its process


def test_force_replaces_only_what_a_run_wrote_and_only_after_the_inputs_are_checked(tiny_folders, tmp_path):
    out = tmp_path / "run"
    fit(tiny_cfg(tiny_folders), out, log=lambda m: None)
    (out / "notes.txt").write_text("mine")
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(Exception, match="no such file or folder"):
        fit(tiny_cfg(tmp_path / "missing"), out, force=True, log=lambda m: None)
    assert sorted(p.name for p in out.iterdir()) == before  # bad input: nothing deleted
    fit(tiny_cfg(tiny_folders), out, force=True, log=lambda m: None)
    assert (out / "notes.txt").read_text() == "mine"  # a user's file survives --force
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(TrainError, match="not a run folder") as error:
        fit(tiny_cfg(tiny_folders), folder, force=True, log=lambda m: None)
    assert "--force" not in str(error.value) and (folder / "holiday.jpg").exists()


def test_a_cosine_run_warms_up_then_decays_to_zero(tiny_folders, tmp_path):
    cosine = dict(optimizer="sgd", learning_rate=0.1, schedule="cosine", warmup_epochs=1)
    cfg = tiny_cfg(tiny_folders, epochs=4, **cosine)
    whole = tmp_path / "whole"
    fit(cfg, whole, log=lambda m: None)
    rates = [
        h["learning_rate"] for h in json.loads((whole / "checkpoint" / "state.json").read_text())["history"]
    ]
    assert rates[0] == pytest.approx(0.1, rel=1e-3)  # warm-up reaches the peak after one epoch
    assert rates[0] > rates[1] > rates[2] > rates[3] and rates[3] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(TrainError, match="finished run") as refused:  # its length is part of its schedule
        fit(tiny_cfg(tiny_folders, epochs=6, **cosine), whole, log=lambda m: None)
    assert "cannot continue" in str(refused.value) and "larger --epochs" not in str(refused.value)


@pytest.mark.parametrize("recipe", [{"erasing": 0.5}, {"mixup": 0.4}], ids=["erasing", "mixup"])
def test_a_resumed_run_trains_exactly_as_an_uninterrupted_one(tiny_folders, tmp_path, recipe):
    """Shuffling, augmentation, MixUp and dropout continue from where the run stopped, not from its start."""
    from fer_train.models import load_model

    cfg = dict(batch_size=8, model_options={"width": 0.25}, **recipe)
    fit(tiny_cfg(tiny_folders, epochs=3, **cfg), tmp_path / "whole", log=lambda m: None)
    fit(tiny_cfg(tiny_folders, epochs=1, **cfg), tmp_path / "split", log=lambda m: None)
    fit(tiny_cfg(tiny_folders, epochs=3, **cfg), tmp_path / "split", log=lambda m: None)  # resumes at 2

    def history(run):
        return json.loads((tmp_path / run / "checkpoint" / "state.json").read_text())["history"]

    whole, split = history("whole"), history("split")
    assert [h["epoch"] for h in split] == [1, 2, 3]
    for a, b in zip(whole, split):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5) and a["accuracy"] == b["accuracy"]
    weights = [
        load_model(tmp_path / r / "checkpoint" / "last.keras").get_weights() for r in ("whole", "split")
    ]
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(*weights))


def test_mixup_blends_faces_and_their_targets_alike(tiny_splits):
    from fer_train.fit import TrainingData

    images, labels = tiny_splits["train"]
    onehot = np.eye(7, dtype=np.float32)[labels]
    plain = TrainingData(images, onehot, tiny_cfg("unused", augment=False))
    mixed = TrainingData(images, onehot, tiny_cfg("unused", augment=False, mixup=0.4))
    for (x0, y0), (x1, y1) in zip(plain.dataset, mixed.dataset):  # the same faces in the same order
        x0, y0, x1, y1 = (np.asarray(t) for t in (x0, y0, x1, y1))
        assert np.allclose(y1.sum(1), 1.0) and (y1.max(1) < 0.999).any()
        # Each face is w x itself + (1 - w) x another of the batch, its target likewise: w is the
        # weight its own class keeps (labels differing), and the blend of the two faces matches it.
        for i in np.flatnonzero(y1.max(1) < 0.999):
            own = y0[i].argmax()
            w = y1[i, own]
            j = [k for k in range(len(y0)) if np.allclose(y1[i], w * y0[i] + (1 - w) * y0[k])]
            assert any(np.allclose(x1[i], w * x0[i] + (1 - w) * x0[k], atol=1e-3) for k in j)


def test_sigterm_ends_a_run_as_ctrl_c_does(tiny_folders, tmp_path):
    """`timeout`, systemd and docker stop with SIGTERM: the run said nothing (exit 143, possibly mid-write
    of a checkpoint); now it ends as on Ctrl-C, with its line, nothing half-written, and it resumes."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "fer_train", "fit", "--data", str(tiny_folders), "--out", str(out)]
    cmd += ["--epochs", "200", "--model", "cnn", "--width", "0.125", "--batch-size", "8", "--patience", "200"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = out / "checkpoint" / "state.json"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not state.exists():
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1].startswith("error: interrupted; run the same command again")
    assert not [p for p in out.rglob("*") if ".tmp" in p.name], "a temporary file left behind"
    assert json.loads(state.read_text())["epoch"] >= 1


@pytest.mark.slow
def test_a_killed_run_resumes_where_it_stopped(tiny_folders, tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "fer_train",
        "fit",
        "--data",
        str(tiny_folders),
        "--out",
        str(out),
        "--epochs",
        "40",
        "--model",
        "cnn",
        "--width",
        "0.125",
        "--batch-size",
        "8",
        "--patience",
        "40",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    state = out / "checkpoint" / "state.json"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if state.exists() and json.loads(state.read_text())["epoch"] >= 2:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = json.loads(state.read_text())["epoch"]
    assert 2 <= done < 40, "the run was killed mid-training"
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert f"resuming at epoch {done + 1}" in result.stderr
    epochs = [h["epoch"] for h in json.loads(state.read_text())["history"]]
    assert epochs == list(range(1, 41)), "every epoch exactly once"
    assert (out / "metrics.json").is_file()


def test_one_class_data_is_refused(tmp_path):
    from conftest import synthetic_faces, write_folders

    images, labels = synthetic_faces(4)
    keep = labels == 3
    write_folders(tmp_path / "fer", {"train": (images[keep], labels[keep]), "test": (images, labels)})
    with pytest.raises(TrainError, match="single class"):
        fit(tiny_cfg(tmp_path / "fer"), tmp_path / "run", log=lambda m: None)


runner = CliRunner()


def _cli(*args):
    return runner.invoke(app, list(map(str, args)))


@pytest.mark.parametrize(
    "args, message",
    [
        (["fit", "--data", "/nonexistent/fer", "--out", "{tmp}/r"], "no such file or folder"),
        (["fit", "--data", "{csv}", "--out", "{tmp}/r", "--balance", "magic"], "unknown --balance"),
        (["fit", "--data", "{csv}", "--out", "{tmp}/r", "--model", "resnet"], "unknown model"),
        (["fit", "--data", "{csv}", "--out", "{tmp}/r", "--width", "0.5"], "takes no option width"),
        (
            ["fit", "--data", "{csv}", "--out", "{tmp}/r", "--teacher", "{tmp}", "--distill", "0.5"],
            "a folder",
        ),
        (
            ["fit", "--data", "{csv}", "--out", "{tmp}/r", "--teacher", "{tmp}/t.keras", "--distill", "1"],
            "t.keras: no such file for --teacher",
        ),
        (
            ["fit", "--data", "{csv}", "--out", "{tmp}/r", "--init", "{tmp}/t.keras"],
            "t.keras: no such file for --init",
        ),
        (["fit", "--data", "{csv}", "--out", "{tmp}/r", "--init", ""], "--init needs a trained .keras file"),
        # Model files are checked before the data is read (a second, where data can take minutes).
        (["fit", "--data", "{bad}", "--out", "{tmp}/r", "--init", "{tmp}/m.tflite"], "not a Keras model"),
        (
            ["fit", "--data", "{csv}", "--out", "{tmp}/r", "--model", "vgg16", "--weights", "{tmp}"],
            "a folder; give a weights",
        ),
        (
            ["fit", "--data", "{bad}", "--out", "{tmp}/r", "--model", "vgg16", "--weights", "{tmp}/m.tflite"],
            "not fer_vgg16's no-top weights file",
        ),
        (["fit", "--data", "{bad}", "--out", "{tmp}/r"], "bad.csv:2: expected 2304 pixels"),
        (["evaluate", "--model", "{csv}", "--data", "{csv}"], "not a Keras model"),
        (["evaluate", "--model", "{tmp}/none.keras", "--data", "{csv}"], "no such model file"),
        (["evaluate", "--model", "{tmp}/m.tflite", "--data", "{csv}"], "fer-bench accuracy --models"),
        (
            ["compare", "--data", "{csv}", "--out", "{tmp}/c", "--epochs", "1", "--reference", "{tmp}/none"],
            "no such run folder",
        ),
        (
            ["compare", "--data", "{csv}", "--out", "{tmp}/c", "--epochs", "1", "--reference", "{tmp}"],
            "not a finished run",
        ),
        (["evaluate", "--model", "{csv}", "--data", "{csv}", "--out", "{tmp}"], "is a folder, not a file"),
        (["evaluate", "--model", "{five}", "--data", "{csv}"], "outputs 5 classes; expected 7 (angry"),
        (
            ["evaluate", "--model", "{five}", "--data", "{csv}", "--out", "{five}", "--force"],
            "give a .json file",
        ),
    ],
)
def test_cli_bad_input_gives_one_error_line(tiny_csv, tmp_path, args, message):
    bad = tmp_path / "bad.csv"
    bad.write_text("emotion,pixels,Usage\n3,1 2 3,Training\n")
    (tmp_path / "m.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3")  # an exported model given by mistake
    five = tmp_path / "five.keras"  # another task's model: 48x48 faces in, 5 classes out
    uses_five = "{five}" in args
    if uses_five:
        import keras

        keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Flatten(), keras.layers.Dense(5)]).save(five)
    args = [a.format(tmp=tmp_path, csv=tiny_csv, bad=bad, five=five) for a in args]
    result = _cli(*args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and message in error_lines[0], result.output
    if uses_five:
        assert zipfile.is_zipfile(five)  # the model named as --out is still a model


def test_a_missing_split_names_the_option_that_names_another(tiny_folders, tiny_splits, tmp_path):
    """A dataset with train/ only: fit says how to give the validation split; compare, which takes no
    such option, does not offer one."""
    import shutil

    shutil.rmtree(tiny_folders / "test")
    result = _cli("fit", "--data", tiny_folders, "--out", tmp_path / "r", "--epochs", "1")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "no folder for split 'test' (found train); name the validation split with --val-split, or " in (
        result.output
    )
    result = _cli("fit", "--data", tiny_folders, "--out", tmp_path / "r", "--train-split", "trn")
    assert (
        "no folder for split 'trn' (found train); name the training split with --train-split" in result.output
    )
    result = _cli(
        "compare", "--data", tiny_folders, "--archs", "cnn", "--epochs", "1", "--out", tmp_path / "c"
    )
    assert result.exit_code == 2 and "(found train)" in result.output and "--val-split" not in result.output
    # The same for a CSV whose Usage column names Training only.
    only_training = write_csv(tmp_path / "training.csv", {"Training": tiny_splits["train"]})
    result = _cli("fit", "--data", only_training, "--out", tmp_path / "r", "--epochs", "1")
    assert "split PublicTest holds no faces (the Usage column names Training); name the validation" in (
        result.output
    )
    assert not (tmp_path / "r").exists()


def test_fit_refuses_to_validate_on_the_training_folder(tiny_folders, tmp_path):
    # A folder of class folders is a single split: both --data and the validation would read it.
    train_only = tiny_folders / "train"
    result = _cli("fit", "--data", train_only, "--out", tmp_path / "r", "--epochs", "1")
    assert result.exit_code == 2, result.output
    assert "both the training and the validation data" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "r").exists()


@pytest.mark.slow
def test_cli_fit_evaluate_and_compare(tiny_csv, tmp_path):
    result = _cli(
        "fit",
        "--data",
        tiny_csv,
        "--out",
        tmp_path / "run",
        "--epochs",
        "1",
        "--model",
        "cnn",
        "--width",
        "0.125",
        "--balance",
        "over",
    )
    assert result.exit_code == 0, result.output
    assert "after --balance over" in result.output
    report = tmp_path / "eval.json"
    result = _cli(
        "evaluate", "--model", tmp_path / "run" / "model.keras", "--data", tiny_csv, "--out", report
    )
    assert result.exit_code == 0, result.output
    assert "horizontal-flip TTA" in result.output and json.loads(report.read_text())["split"] == "PublicTest"
    assert (
        _cli(
            "evaluate", "--model", tmp_path / "run" / "model.keras", "--data", tiny_csv, "--out", report
        ).exit_code
        == 2
    )
    result = _cli(
        "compare",
        "--data",
        tiny_csv,
        "--archs",
        "cnn, cnn",  # named twice: trained and listed once
        "--epochs",
        "1",
        "--limit",
        "14",
        "--lr",
        "1e-4",
        "--out",
        tmp_path / "cmp",
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "cmp" / "cnn" / "metrics.json").read_text())["samples"] == 14  # quick trial
    fitted = json.loads((tmp_path / "cmp" / "cnn" / "config.json").read_text())["fit"]
    assert fitted["learning_rate"] == 1e-4 and fitted["command"].endswith("--lr 0.0001")
    rows = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert [r["arch"] for r in rows] == ["cnn"] and "| cnn | PublicTest |" in (
        tmp_path / "cmp" / "comparison.md"
    ).read_text()


def test_compare_skips_bad_files_when_asked_as_fit_does(tiny_folders, tmp_path):
    (tiny_folders / "train" / "happy" / "damaged.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    args = ["compare", "--data", tiny_folders, "--archs", "cnn", "--epochs", "1", "--limit", "14"]
    refused = _cli(*args, "--out", tmp_path / "cmp")
    assert refused.exit_code == 2 and "damaged.png: unreadable image" in refused.stderr
    assert refused.stderr.rstrip().endswith("use --skip-bad to leave such files out")  # an option it has
    result = _cli(*args, "--out", tmp_path / "cmp", "--skip-bad")
    assert result.exit_code == 0, result.output
    fitted = json.loads((tmp_path / "cmp" / "cnn" / "config.json").read_text())["fit"]
    assert fitted["skip_bad"] and fitted["command"].endswith("--skip-bad")
    assert json.loads((tmp_path / "cmp" / "cnn" / "metrics.json").read_text())["skipped"]["train"] == 1


def test_compare_at_an_equal_time_budget_stops_each_run_and_keeps_its_best_epoch(tiny_folders, tmp_path):
    from fer_train.compare import compare

    out = tmp_path / "cmp"
    # A budget shorter than one epoch: each architecture trains one epoch, then stops for good.
    rows = compare(tiny_folders, ["cnn"], None, out, batch_size=16, log=lambda m: None, budget_minutes=0.001)
    state = json.loads((out / "cnn" / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 1 and state["stopped"] == "budget"
    assert rows[0]["epochs"] == 1 and rows[0]["images_per_second"] > 0
    assert rows[0]["int8_p50_ms"] > 0 and rows[0]["macs_per_face"] > 0
    assert round((out / "cnn" / "model_int8.tflite").stat().st_size / 1024) == rows[0]["int8_kib"]
    assert "| int8 size | int8 p50, 1 thread |" in (out / "comparison.md").read_text()
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="--budget-minutes"):
        compare(tiny_folders, ["cnn"], None, out, log=lambda m: None)
    # A finished run (here the same one, reused at the same budget) adds its row as trained, for reference.
    same = dict(batch_size=16, log=lambda m: None, budget_minutes=0.001)
    rows = compare(tiny_folders, ["cnn"], None, out, reference=out / "cnn", **same)
    assert len(rows) == 2 and "reference" in rows[1]["arch"] and rows[1]["accuracy"] == rows[0]["accuracy"]
    assert rows[0]["epochs"] == 1
    with pytest.raises(ValueError, match="not a finished run"):
        compare(tiny_folders, ["cnn"], None, out, log=lambda m: None, budget_minutes=1, reference=tmp_path)
    # A reference whose metrics are damaged is named before any training, not after the budget is spent.
    (tmp_path / "ref").mkdir()
    (tmp_path / "ref" / "metrics.json").write_text('{"accuracy": 0.5}')
    before = (out / "cnn" / "history.csv").read_text()
    with pytest.raises(TrainError, match="ref/metrics.json: not a finished run's metrics"):
        compare(
            tiny_folders, ["cnn"], 2, out, log=lambda m: None, budget_minutes=1, reference=tmp_path / "ref"
        )
    assert (out / "cnn" / "history.csv").read_text() == before
    # Its table is rewritten as runs go on; a file of someone else's by that name is kept.
    (out / "comparison.md").write_text("# my notes on the comparison\n")
    with pytest.raises(FileExistsError, match="comparison.md: not a Markdown report this tool wrote"):
        compare(tiny_folders, ["cnn"], None, out, **same)
    (out / "comparison.md").unlink()
    # A larger budget trains the same run on from its checkpoint (here up to an epoch cap of 2).
    rows = compare(tiny_folders, ["cnn"], 2, out, batch_size=16, log=lambda m: None, budget_minutes=1)
    history = (out / "cnn" / "history.csv").read_text().splitlines()
    assert rows[0]["epochs"] == 2 and len(history) == 3 and history[1].startswith("1,")
    # Another recipe's run (another learning rate here; a --limit trial alike) was reused as this table's
    # row: it is named instead, before any training.
    with pytest.raises(TrainError, match=r"holds a cnn run with other settings \(learning_rate\)"):
        compare(
            tiny_folders,
            ["cnn"],
            2,
            out,
            batch_size=16,
            log=lambda m: None,
            budget_minutes=1,
            learning_rate=1e-4,
        )
    assert (out / "cnn" / "history.csv").read_text().splitlines() == history


def test_fer_train_says_one_line_without_tensorflow_chatter(tmp_path):
    """TensorFlow is imported only once its C++ start-up lines are silenced: the user sees our line."""
    result = subprocess.run(
        [sys.executable, "-m", "fer_train", "fit", "--data", "/dev/null", "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: /dev/null: not a file or folder (FER2013 data is its CSV or image folders)"
    ]


def test_an_image_over_the_pixel_limit_names_what_sets_it_in_fer_train(tiny_folders, tmp_path):
    """fer-train has no --max-pixels: its error names the variable that sets the limit, and only it."""
    import cv2

    big = tiny_folders / "train" / "happy" / "big.png"
    cv2.imwrite(str(big), np.zeros((100, 100), np.uint8))
    command = [sys.executable, "-m", "fer_train", "fit", "--data", tiny_folders, "--out", tmp_path / "r"]
    env = {**os.environ, "FER_MAX_PIXELS": "9999"}
    result = subprocess.run(list(map(str, command)), capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {big}: unreadable image: 100x100 pixels, over the limit of 9,999 ($FER_MAX_PIXELS); "
        "use --skip-bad to leave such files out"
    ]


def test_distillation_trains_on_the_teachers_probabilities(tiny_folders, tmp_path):
    """The training targets are the teacher's probabilities (on the face and its mirror image) mixed
    with the labels as --distill says (1: the teacher's answers alone), and the run records its teacher."""
    import keras

    from fer_train import data as fer_data
    from fer_train.fit import _load_teacher, _targets

    fit(tiny_cfg(tiny_folders, epochs=2, augment=False), tmp_path / "teacher", log=lambda m: None)
    teacher_path = tmp_path / "teacher" / "model.keras"
    train = fer_data.load(tiny_folders, "train")
    teacher, faces = keras.models.load_model(teacher_path), train.images[..., None].astype("float32")
    # The teacher answers for each face and its mirror image: a flipped face gets the same target.
    teacher_probs = (teacher.predict(faces, verbose=0) + teacher.predict(faces[:, :, ::-1], verbose=0)) / 2
    cfg = tiny_cfg(tiny_folders, teacher=str(teacher_path), distill=1.0)
    assert np.allclose(_targets(cfg, train, _load_teacher(cfg), lambda m: None), teacher_probs, atol=1e-5)
    half_cfg = tiny_cfg(tiny_folders, teacher=str(teacher_path), distill=0.5)
    half = _targets(half_cfg, train, _load_teacher(half_cfg), lambda m: None)
    onehot = np.eye(7)[train.labels]
    assert np.allclose(half, 0.5 * onehot + 0.5 * teacher_probs, atol=1e-5)
    assert np.allclose(_targets(tiny_cfg(tiny_folders), train, None, lambda m: None), onehot)

    fit(cfg, tmp_path / "student", log=lambda m: None)
    config = json.loads((tmp_path / "student" / "config.json").read_text())["fit"]
    assert config["teacher"] == str(teacher_path) and config["distill"] == 1.0


def test_several_teachers_are_one_teacher_that_averages_their_answers(tiny_folders, tmp_path):
    from fer_train import data as fer_data
    from fer_train.evaluate import predict_probs
    from fer_train.fit import _load_teacher, _targets
    from fer_train.models import load_model

    paths = []
    for seed in (1, 2):
        fit(
            tiny_cfg(tiny_folders, epochs=1, augment=False, seed=seed),
            tmp_path / f"t{seed}",
            log=lambda m: None,
        )
        paths.append(tmp_path / f"t{seed}" / "model.keras")
    train = fer_data.load(tiny_folders, "train")
    each = [predict_probs(load_model(p, compile=False), train.images, flip=True) for p in paths]
    assert not np.allclose(each[0], each[1], atol=1e-3)  # two different teachers
    cfg = tiny_cfg(tiny_folders, teacher=f"{paths[0]}, {paths[1]}", distill=1.0)
    targets = _targets(cfg, train, _load_teacher(cfg), lambda m: None)
    assert np.allclose(targets, (each[0] + each[1]) / 2, atol=1e-5)
    # A file whose name holds a comma is one teacher, not two.
    comma = tmp_path / "teacher,seed 1.keras"
    shutil.copy(paths[0], comma)
    one_cfg = tiny_cfg(tiny_folders, teacher=str(comma), distill=1.0)
    assert np.allclose(_targets(one_cfg, train, _load_teacher(one_cfg), lambda m: None), each[0], atol=1e-5)
    # One missing or empty name in the list is refused before the run folder is made.
    for teacher, message in (
        (f"{paths[0]},{tmp_path}/none.keras", "none.keras: no such file"),
        (f"{paths[0]},", "none of them empty"),
    ):
        with pytest.raises(TrainError, match=message):
            fit(tiny_cfg(tiny_folders, teacher=teacher, distill=0.5), tmp_path / "r")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"learning_rate": float("nan")}, "--lr nan: the learning rate is a positive number"),
        ({"learning_rate": 0.0}, "--lr 0.0: the learning rate is a positive number"),
        ({"weight_decay": float("inf")}, "--weight-decay inf: a number of at least 0"),
        ({"mixup": float("inf")}, "--mixup inf: MixUp's alpha is positive"),
        ({"patience": 0}, "--patience 0: a number of at least 1"),
        ({"budget_minutes": float("nan")}, "--budget-minutes nan: a positive number of minutes"),
        ({"seed": 2**32}, "--seed 4294967296: a whole number from 0 to 4294967295"),
        ({"limit": 0}, "--limit 0: a number of faces, at least 1"),
    ],
)
def test_settings_that_would_train_into_nan_are_refused_before_training(
    tiny_folders, tmp_path, setting, message
):
    """A NaN or zero learning rate, an infinite weight decay: refused before any work, not trained with."""
    with pytest.raises(TrainError, match=message):
        fit(tiny_cfg(tiny_folders, **setting), tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_distillation_without_its_teacher_is_refused_before_training(tiny_folders, tmp_path):
    with pytest.raises(TrainError, match="no such file"):
        fit(tiny_cfg(tiny_folders, teacher=str(tmp_path / "none.keras"), distill=0.5), tmp_path / "r")
    with pytest.raises(TrainError, match="needs a teacher"):
        fit(tiny_cfg(tiny_folders, distill=0.5), tmp_path / "r")
    with pytest.raises(TrainError, match="needs --distill"):  # a teacher given but never used
        fit(tiny_cfg(tiny_folders, teacher=str(tmp_path / "none.keras")), tmp_path / "r")
    assert not (tmp_path / "r").exists()
    # A teacher that is not a Keras model, or not a FER model, is refused by name before the run starts.
    import keras

    from fer_train.models import ModelFileError

    (tmp_path / "notes.keras").write_text("not a model")
    with pytest.raises(ModelFileError, match="notes.keras: not a loadable Keras model"):
        fit(tiny_cfg(tiny_folders, teacher=str(tmp_path / "notes.keras"), distill=0.5), tmp_path / "r")
    other = keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    other.save(tmp_path / "ten.keras")
    with pytest.raises(ModelFileError, match="ten.keras: outputs 10 classes; expected 7"):
        fit(tiny_cfg(tiny_folders, teacher=str(tmp_path / "ten.keras"), distill=0.5), tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_fine_tuning_starts_from_the_given_models_weights(tiny_folders, tmp_path):
    """--init: the run's first epoch starts from a trained model's weights (its answers, exactly), the
    run records where they came from, and a model of other layers is refused before the run starts."""
    import keras

    from fer_train import data as fer_data
    from fer_train.fit import _initial_weights, _model_and_state
    from fer_train.models import build_model

    keras.utils.set_random_seed(3)  # weights other than those of the runs' seed, 7
    base_path = tmp_path / "base.keras"
    build_model("cnn", width=0.125, first_kernel=3).save(base_path)
    faces = fer_data.load(tiny_folders, "test").images[..., None].astype("float32")
    cfg = tiny_cfg(tiny_folders, init=str(base_path), seed=7)
    start, _ = _model_and_state(cfg, tmp_path / "unused", 1, _initial_weights(cfg))
    base = keras.models.load_model(base_path)
    assert np.array_equal(start.predict(faces, verbose=0), base.predict(faces, verbose=0))
    fresh, _ = _model_and_state(cfg, tmp_path / "unused", 1)  # without --init: the seed's weights
    assert not np.allclose(fresh.predict(faces, verbose=0), base.predict(faces, verbose=0))

    fit(cfg, tmp_path / "tuned", log=lambda m: None)
    assert json.loads((tmp_path / "tuned" / "config.json").read_text())["fit"]["init"] == str(base_path)
    wider = tiny_cfg(tiny_folders, model_options={"width": 0.25, "first_kernel": 3}, init=str(base_path))
    with pytest.raises(TrainError, match="its layers are not those of cnn"):
        fit(wider, tmp_path / "r", log=lambda m: None)
    assert not (tmp_path / "r").exists()
    base_path.rename(tmp_path / "moved.keras")  # a run that goes on needs its checkpoint, not --init
    messages = []
    fit(
        tiny_cfg(tiny_folders, init=str(base_path), seed=7, epochs=2), tmp_path / "tuned", log=messages.append
    )
    assert any("resuming at epoch 2" in m for m in messages)


def test_force_replaces_only_a_file_the_tool_wrote(tmp_path):
    """A path named by mistake (a photo, notes, another program's JSON or plot) survives --force; a result
    the tool wrote, recognised by its own marks, does not."""
    import cv2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fer_train.files import refuse_overwrite, write_json, write_text

    photo, notes, report = tmp_path / "r.png", tmp_path / "faces.jsonl", tmp_path / "r.json"
    cv2.imwrite(str(photo), np.zeros((8, 8), np.uint8))  # a real PNG, not a plot of ours
    notes.write_text("my notes\n")
    write_json(report, {"accuracy": 0.5})  # JSON, but not one of the tool's results
    write_text(tmp_path / "notes.md", "# My notes\n")
    for path, kind, message in [
        (photo, None, "r.png: not a Matplotlib plot this tool wrote; kept even with --force"),
        (notes, "jsonl", "not a JSON lines file this tool wrote"),
        (report, None, "not a JSON result this tool wrote"),
        (tmp_path / "notes.md", None, "not a Markdown report this tool wrote"),
    ]:
        with pytest.raises(FileExistsError, match=message):
            refuse_overwrite(path, force=True, kind=kind)
    with pytest.raises(FileExistsError, match="use --force"):
        refuse_overwrite(report, force=False)
    write_json(report, {"split": "PublicTest", "samples": 9, "single_crop": {"accuracy": 0.5}})
    refuse_overwrite(report, force=True)  # an evaluation report: replaceable
    notes.write_text(json.dumps({"frame": 0, "time": 0.0, "faces": []}) + "\n")
    refuse_overwrite(notes, force=True, kind="jsonl")
    plt.figure().savefig(photo)
    refuse_overwrite(photo, force=True)
    model = tmp_path / "model.keras"  # a kind of file no command replaces, --force or not
    model.write_bytes(b"PK\x03\x04 a Keras model")
    with pytest.raises(FileExistsError, match="model.keras: this command writes no such file; kept even"):
        refuse_overwrite(model, force=True)
    (tmp_path / "empty.md").touch()
    refuse_overwrite(tmp_path / "empty.md", force=True)  # an empty file holds nothing to lose


def test_every_committed_result_is_recognised_as_the_tools_own():
    """--force must be able to rebuild what the tool wrote before: the shipped models and their reports,
    the benchmark results, and the training runs kept with them (run folders, which `fit --force`
    knows by their config.json)."""
    from pathlib import Path

    from fer_train.files import read_json, refuse_overwrite

    root = Path(__file__).resolve().parents[1]
    results = sorted((root / "benchmarks" / "results").glob("*"))
    written = [*(root / "models").glob("fer_*"), root / "models" / "labels.txt"]
    written += [path for path in results if path.is_file()]
    assert len(written) > 30
    for path in written:
        refuse_overwrite(path, force=True)
    runs = [path for path in results if path.is_dir()] + sorted((root / "models" / "runs").glob("*"))
    assert len(runs) >= 5
    for run in runs:
        assert read_json(run / "config.json")["fit"]["model"], run


def test_atomic_writes_never_replace_a_device_or_pipe(tmp_path):
    """`--force` replaces files; moved over a named pipe or /dev/null, a result would replace the pipe or
    the device itself."""
    import stat

    from fer_train.files import refuse_overwrite, write_text

    pipe = tmp_path / "report.json"
    os.mkfifo(pipe)
    (tmp_path / "notes.txt").write_text("a user's file")
    with pytest.raises(FileExistsError, match="a device, pipe or socket"):
        refuse_overwrite(pipe, force=True)
    with pytest.raises(FileExistsError, match="a device, pipe or socket"):
        write_text(pipe, "{}")
    assert stat.S_ISFIFO(os.stat(pipe).st_mode)
    # A file where the output folder should be is named before any work, not "[Errno 17] File exists".
    with pytest.raises(FileExistsError, match="a file, not a folder"):
        refuse_overwrite(pipe.with_name("notes.txt") / "out" / "report.json", force=False)


def test_an_atomic_write_without_replace_keeps_a_file_that_appeared_meanwhile(tmp_path):
    from fer_train.files import write_bytes

    path = tmp_path / "copy.png"
    write_bytes(path, b"first", replace=False)
    with pytest.raises(FileExistsError):
        write_bytes(path, b"second", replace=False)
    assert path.read_bytes() == b"first" and os.listdir(tmp_path) == ["copy.png"]  # no temporary left
    write_bytes(path, b"second")
    assert path.read_bytes() == b"second"


def test_fit_refuses_model_options_before_reading_data_or_making_the_run_folder(tiny_csv, tmp_path):
    # A wrong option fails at once, not after minutes of loading 28,709 faces.
    result = _cli("fit", "--data", tiny_csv, "--out", tmp_path / "r", "--width", "0.5")
    assert result.exit_code == 2 and "takes no option width" in result.output
    assert "faces (" not in result.output, result.output  # no split was loaded
    # A file that is not the network's weights is named, and leaves no half-made run behind.
    weights = tmp_path / "w.h5"
    weights.write_bytes(b"not HDF5")
    args = ["--model", "vgg16", "--weights", weights, "--epochs", "1"]
    result = _cli("fit", "--data", tiny_csv, "--out", tmp_path / "r", *args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{weights}: not fer_vgg16's no-top weights file" in result.output, result.output
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("cli", "args", "message"),
    [
        ("fer_train", ["fit", "--data", "/nonexistent/fer", "--out", "{tmp}/r"], "no such file or folder"),
        ("fer_train", ["fit", "--data", "{tmp}", "--model", "resnet", "--out", "{tmp}/r"], "unknown model"),
        ("fer_train", ["evaluate", "--model", "{tmp}/m.keras", "--data", "{tmp}"], "no such model file"),
        ("fer_train", ["compare", "--data", "{tmp}", "--archs", "cnn,vgg", "--epochs", "1"], "unknown model"),
        ("fer_export", ["quantize", "--model", "{tmp}/m.keras", "--out", "{tmp}/e"], "no such model file"),
        (
            "fer_export",
            ["quantize", "--model", "{tmp}/m.keras", "--mode", "int4", "--out", "{tmp}/e"],
            "unknown mode",
        ),
    ],
)
def test_a_typo_is_named_before_tensorflow_loads(tmp_path, cli, args, message):
    """A mistyped path, model or mode was reported only after TensorFlow's seconds of loading."""
    code = (
        f"import sys; from {cli}.cli import main\n"
        "try:\n    main()\nexcept SystemExit as done:\n    code = done.code\n"
        "print('tensorflow' in sys.modules, code)"
    )
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False 2", done.stdout + done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error:") and message in done.stderr
    assert not (tmp_path / "r").exists() and not (tmp_path / "e").exists()
