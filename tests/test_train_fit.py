"""Training end to end on tiny synthetic data: every architecture, the run folder, resume, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from fer_train.cli import app
from fer_train.fit import FitConfig, TrainError, fit

RUN_FILES = ["model.keras", "config.json", "history.csv", "metrics.json", "confusion.png", "curves.png"]


def tiny_cfg(data, **kw) -> FitConfig:
    options = dict(
        data=str(data), arch="cnn", epochs=1, batch_size=16, width=0.125, first_kernel=3, command="test"
    )
    return FitConfig(**{**options, **kw})


@pytest.mark.parametrize("arch", ["cnn", "vgg16", "inceptionv3"])
def test_one_epoch_of_each_architecture_writes_a_complete_run(tiny_folders, tmp_path, arch):
    import keras

    out = tmp_path / arch
    metrics = fit(tiny_cfg(tiny_folders, arch=arch, augment=arch == "cnn"), out, log=lambda m: None)
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
    probs = model.predict(np.full((2, 48, 48, 1), 255.0, np.float32), verbose=0)
    assert probs.shape == (2, 7) and np.allclose(probs.sum(1), 1.0, atol=1e-4)


def test_training_lowers_the_loss(tiny_folders, tmp_path):
    cfg = tiny_cfg(tiny_folders, epochs=4, width=0.25, augment=False, learning_rate=3e-3)
    fit(cfg, tmp_path / "run", log=lambda m: None)
    history = json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["loss"] < history[0]["loss"]


def test_finished_run_is_not_overwritten_but_can_be_extended(tiny_folders, tmp_path):
    out = tmp_path / "run"
    fit(tiny_cfg(tiny_folders), out, log=lambda m: None)
    with pytest.raises(TrainError, match="finished run; use --force"):
        fit(tiny_cfg(tiny_folders), out, log=lambda m: None)
    with pytest.raises(TrainError, match=r"other settings \(width\)"):
        fit(tiny_cfg(tiny_folders, width=0.25, epochs=2), out, log=lambda m: None)
    # A run saved before a setting existed (here: downsample) resumes with that setting's default.
    config = json.loads((out / "config.json").read_text())
    del config["fit"]["downsample"]
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


@pytest.mark.parametrize("tune", [True, False])
def test_a_finished_run_tunes_its_inference_blur_on_validation(tiny_folders, tmp_path, tune):
    import keras

    from fer_train.models import inference_blur_of

    out = tmp_path / "run"
    cfg = tiny_cfg(tiny_folders, epochs=2, width=0.25, augment=False, inference_blur=1.0, tune_blur=tune)
    metrics = fit(cfg, out, log=lambda m: None)
    saved = inference_blur_of(keras.models.load_model(out / "model.keras"))
    if not tune:
        assert saved == 1.0 and "inference_blur" not in metrics
        return
    blur = metrics["inference_blur"]
    scores = {float(s): a for s, a in blur["accuracy_by_sigma"].items()}
    assert sorted(scores) == [0.5, 0.75, 1.0, 1.25, 1.5] and blur["trained_sigma"] == 1.0
    best = max(scores.values())
    # The best sigma wins; on a tie the one the run trained with stays.
    assert scores[blur["sigma"]] == best
    assert blur["sigma"] == 1.0 or scores[1.0] < best
    assert saved == blur["sigma"]  # the model written is the one tuned, and what it is scored on
    assert metrics["accuracy"] == pytest.approx(best)
    assert f"Inference blur: sigma {blur['sigma']:g} (trained with 1)" in (out / "metrics.md").read_text()


def test_changing_the_inference_blur_keeps_the_weights():
    from fer_train.models import build_cnn, inference_blur_of, with_inference_blur

    model = build_cnn(width=0.125, inference_blur=2.0)
    faces = np.random.default_rng(0).uniform(0, 255, (4, 48, 48, 1)).astype(np.float32)
    same, sharper = with_inference_blur(model, 2.0), with_inference_blur(model, 0.5)
    assert inference_blur_of(sharper) == 0.5 and inference_blur_of(model) == 2.0
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), sharper.get_weights(), strict=True))
    reference = model.predict(faces, verbose=0)
    assert np.allclose(same.predict(faces, verbose=0), reference, atol=1e-6)
    assert not np.allclose(sharper.predict(faces, verbose=0), reference, atol=1e-4)


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
        "--width",
        "0.125",
        "--first-kernel",
        "3",
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
        (["fit", "--data", "{csv}", "--out", "{tmp}/r", "--arch", "resnet"], "unknown architecture"),
        (["fit", "--data", "{bad}", "--out", "{tmp}/r"], "bad.csv:2: expected 2304 pixels"),
        (["evaluate", "--model", "{csv}", "--data", "{csv}"], "not a Keras model"),
        (["evaluate", "--model", "{tmp}/none.keras", "--data", "{csv}"], "no such model file"),
    ],
)
def test_cli_bad_input_gives_one_error_line(tiny_csv, tmp_path, args, message):
    bad = tmp_path / "bad.csv"
    bad.write_text("emotion,pixels,Usage\n3,1 2 3,Training\n")
    args = [a.format(tmp=tmp_path, csv=tiny_csv, bad=bad) for a in args]
    result = _cli(*args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    error_lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and message in error_lines[0], result.output


def test_cli_fit_evaluate_and_compare(tiny_csv, tmp_path):
    result = _cli(
        "fit",
        "--data",
        tiny_csv,
        "--out",
        tmp_path / "run",
        "--epochs",
        "1",
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
    result = _cli("compare", "--data", tiny_csv, "--archs", "cnn", "--epochs", "1", "--out", tmp_path / "cmp")
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert [r["arch"] for r in rows] == ["cnn"] and "| cnn | PublicTest |" in (
        tmp_path / "cmp" / "comparison.md"
    ).read_text()
