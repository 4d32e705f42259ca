"""`fer-export quantize` and `fer-export inspect` end to end: real conversions, real interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from export_helpers import tiny_model_path, wrong_input_model_path
from typer.testing import CliRunner

from fer_edge.classifier import Classifier
from fer_export import litert_quantizer, read_card
from fer_export.cli import app

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def fer_export_process(*args) -> subprocess.CompletedProcess:
    """The installed console script's entry point, in a fresh process, as a user runs it."""
    code = "from fer_export.cli import main; main()"
    cmd = [sys.executable, "-c", code, *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ), timeout=300)


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def fer_export(*args) -> Ran:
    """The CLI in this process (TensorFlow imported once); an unexpected exception fails the test."""
    result = CliRunner().invoke(app, list(map(str, args)))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Ran(result.exit_code, result.stdout, result.stderr)


def assert_one_error_line(result, pattern: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("error:") and pattern in lines[-1], result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_splits):
    """One full run: every mode, both int8 quantizers (when installed) and the RGB variants."""
    from conftest import write_folders

    root = tmp_path_factory.mktemp("cli")
    data = write_folders(root / "fer", tiny_splits)
    out = root / "out"
    args = [
        "quantize",
        "--model",
        tiny_model_path(),
        "--mode",
        "all",
        "--rep-data",
        data,
        "--rep-samples",
        "30",
        "--eval-data",
        data,
        "--out",
        out,
        "--mobile",
    ]
    if litert_quantizer.available():
        args.append("--compare-quantizers")
    result = CliRunner().invoke(app, list(map(str, args)))
    return result, out, data


def test_quantize_all_writes_verified_models_cards_and_report(exported):
    result, out, _ = exported
    assert result.exit_code == 0, result.output
    report = json.loads((out / "export_report.json").read_text())
    variants = {(v["variant"], v["quantizer"], v["mobile_rgb"]): v for v in report["variants"]}
    for mode in ("fp32", "fp16", "dynamic", "int8"):
        for mobile in (False, True):
            v = variants[(mode, "converter", mobile)]
            assert v["status"] == "ok", v
            model = out / v["file"]
            assert model.stat().st_size == v["size_bytes"]
            for key in ("accuracy", "macro_f1", "accuracy_drop", "macro_f1_drop", "agreement"):
                assert 0.0 <= abs(v[key]) <= 1.0
            assert v["latency"]["median_ms"] > 0 and v["check"]["passed"]
            card = json.loads(model.with_suffix(".json").read_text())
            assert card == read_card(model) | {
                "verification": card["verification"],
                "evaluation": card["evaluation"],
            }
            assert card["input"]["channels"] == (3 if mobile else 1)
    sizes = {mode: variants[(mode, "converter", False)]["size_bytes"] for mode in ("fp32", "fp16", "int8")}
    assert sizes["int8"] < sizes["fp16"] < sizes["fp32"]
    assert variants[("int8", "converter", False)]["input_dtype"] == "int8"
    assert variants[("int8", "converter", True)]["input_dtype"] == "uint8"  # what MediaPipe Tasks accept
    assert (out / "labels.txt").read_text().split()[0] == "angry"
    markdown = (out / "export_report.md").read_text()
    assert "| int8 | converter | int8 | `fer_cnn_int8.tflite`" in markdown
    # Read from each int8 file: TF leaves the cnn's ELU float, whatever the other quantizer did.
    kept = "int8 ops computing in float32: ELU (7 ops) in `fer_cnn_int8.tflite`"
    assert kept in markdown
    assert variants[("int8", "converter", False)]["float_ops"] == {"ELU": 7}
    assert report["representative_data"]["samples"] == 30
    assert min(report["representative_data"]["per_class"].values()) >= 4  # drawn evenly across classes


def test_quantize_points_to_the_predict_command_users_run(exported):
    from fer_edge.cli import app as edge_app

    result, out, data = exported
    line = next(ln for ln in result.stderr.splitlines() if ln.startswith("predict: "))
    command = line.removeprefix("predict: fer-edge ").split()
    assert command[:3] == ["predict", "--model", str(out / "fer_cnn_int8.tflite")], line
    face = next((data / "test").rglob("*.png"))
    ran = CliRunner().invoke(edge_app, [*command[:3], "--crops", "--json", str(face)])
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)["label"] in read_card(out / "fer_cnn_int8.tflite")["labels"]


@pytest.mark.skipif(not litert_quantizer.available(), reason="litert-quantizer is not installed")
def test_both_int8_quantizers_are_exported_and_compared(exported):
    _, out, data = exported
    report = json.loads((out / "export_report.json").read_text())
    comparison = report["quantizer_comparison"]
    assert set(comparison["int8"]) == {"converter", "litert"}
    assert comparison["default"] == "converter" and comparison["better"] in ("converter", "litert")
    litert = next(v for v in report["variants"] if v["file"] == "fer_cnn_int8_litert.tflite")
    assert litert["comparison_only"] and litert["quantizer"] == "litert"
    if litert["status"] == "ok":
        runner = Classifier((out / "fer_cnn_int8_litert.tflite").read_bytes())
        assert runner.input_dtype == "int8"
    else:  # outside its tolerance on this tiny model: reported, not written, and not an export failure
        assert not (out / "fer_cnn_int8_litert.tflite").exists()
    assert "## int8: converter or LiteRT quantizer" in (out / "export_report.md").read_text()


def test_a_folder_another_export_is_writing_to_is_left_alone(tmp_path, tiny_folders):
    from conftest import held_folder

    out = tmp_path / "out"
    args = ["quantize", "--model", tiny_model_path(), "--mode", "fp32", "--out", out]
    with held_folder(out):  # another fer-export, between its overwrite check and its report
        assert_one_error_line(fer_export(*args), "another fer-export is writing here")
        assert not any(out.iterdir())
    assert fer_export(*args).returncode == 0 and (out / "fer_cnn_fp32.tflite").is_file()
    # A run that fails before writing leaves no empty folder behind.
    result = fer_export(*args[:-1], tmp_path / "new", "--rep-data", tmp_path / "missing", "--mode", "int8")
    assert result.returncode == 2 and not (tmp_path / "new").exists()
    assert_one_error_line(fer_export(*args[:-1], out / "fer_cnn_fp32.tflite"), "tflite: not a folder")


def test_existing_outputs_need_force(exported):
    _, out, data = exported
    before = (out / "fer_cnn_fp32.tflite").read_bytes()
    result = fer_export("quantize", "--model", tiny_model_path(), "--mode", "fp32", "--out", out)
    assert_one_error_line(result, "--force")
    assert (out / "fer_cnn_fp32.tflite").read_bytes() == before


def test_force_overwrites(tmp_path):
    args = ["quantize", "--model", str(tiny_model_path()), "--mode", "fp32", "--out", str(tmp_path)]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert CliRunner().invoke(app, [*args, "--force"]).exit_code == 0
    assert Classifier((tmp_path / "fer_cnn_fp32.tflite").read_bytes()).input_dtype == "float32"


def test_a_failed_variant_is_reported_and_not_written(tmp_path, tiny_folders):
    args = [
        "quantize",
        "--model",
        tiny_model_path(),
        "--mode",
        "int8",
        "--rep-data",
        tiny_folders,
        "--rep-samples",
        "14",
        "--out",
        tmp_path,
        "--tolerance",
        "0",
    ]
    result = CliRunner().invoke(app, list(map(str, args)))
    assert result.exit_code == 1
    assert "failed and were not written: fer_cnn_int8.tflite" in result.output
    report = json.loads((tmp_path / "export_report.json").read_text())
    assert report["variants"][0]["status"] == "failed"
    assert "FAILED" in (tmp_path / "export_report.md").read_text()
    assert not (tmp_path / "fer_cnn_int8.tflite").exists()


def test_a_model_ending_in_logits_is_refused(tmp_path):
    """Without a softmax the file would export and verify, then every runtime would show its logits as
    scores (3.2, -0.4)."""
    import keras

    inputs = keras.Input((48, 48, 1))
    logits = keras.layers.Dense(7)(keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs)))
    keras.Model(inputs, logits).save(tmp_path / "logits.keras")
    result = fer_export(
        "quantize", "--model", tmp_path / "logits.keras", "--mode", "fp32", "--out", tmp_path / "o"
    )
    assert_one_error_line(result, "outputs are not probabilities")
    assert "end it with a softmax" in result.stderr and not (tmp_path / "o").exists()


def test_a_model_with_other_outputs_is_refused(tmp_path):
    """Two heads, or five classes: one line naming what is expected, not numpy's shape error."""
    import keras

    inputs = keras.Input((48, 48, 1))
    features = keras.layers.Flatten()(inputs)
    probs = keras.layers.Dense(7, activation="softmax")(features)
    keras.Model(inputs, [probs, keras.layers.Dense(2)(features)]).save(tmp_path / "two.keras")
    five = keras.layers.Dense(5, activation="softmax")(features)
    keras.Model(inputs, five).save(tmp_path / "five.keras")
    result = fer_export(
        "quantize", "--model", tmp_path / "two.keras", "--mode", "fp32", "--out", tmp_path / "o"
    )
    assert_one_error_line(result, "two.keras: has 2 outputs; expected one")
    result = fer_export(
        "quantize", "--model", tmp_path / "five.keras", "--mode", "fp32", "--out", tmp_path / "o"
    )
    assert_one_error_line(result, "five.keras: outputs 5 classes; expected 7 (angry, disgust,")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("mode", ["fp32", "int8"])
def test_missing_model_file(tmp_path, mode):
    # int8 without --rep-data: the missing model is still what the user hears about first.
    result = fer_export_process(
        "quantize", "--model", tmp_path / "nope.keras", "--mode", mode, "--out", tmp_path
    )
    assert_one_error_line(result, "no such model file")
    assert len(result.stderr.splitlines()) == 1, result.stderr  # no empty line left by a progress bar


def test_non_keras_model_file(tmp_path):
    bad = tmp_path / "model.keras"
    bad.write_text("garbage")
    result = fer_export("quantize", "--model", bad, "--mode", "fp32", "--out", tmp_path / "o")
    assert_one_error_line(result, "not a loadable Keras model")
    # An exported model given back, int8 without --rep-data: the wrong file is what the user hears of.
    exported = tmp_path / "model_int8.tflite"
    exported.write_bytes(b"\x1c\x00\x00\x00TFL3")
    result = fer_export("quantize", "--model", exported, "--mode", "int8", "--out", tmp_path / "o")
    assert_one_error_line(result, "not a Keras model file (expected .keras or .h5")
    # A tolerance that no comparison can meet (NaN) is a bad option, not a failed variant.
    result = fer_export(
        "quantize", "--model", bad, "--mode", "fp32", "--tolerance", "nan", "--out", tmp_path / "o"
    )
    assert result.returncode == 2 and "--tolerance" in result.stderr


def test_model_with_the_wrong_input(tmp_path):
    result = fer_export("quantize", "--model", wrong_input_model_path(), "--mode", "fp32", "--out", tmp_path)
    assert_one_error_line(result, "expected 48x48x1")


def test_int8_without_representative_data(tmp_path):
    result = fer_export("quantize", "--model", tiny_model_path(), "--mode", "int8", "--out", tmp_path)
    assert_one_error_line(result, "--rep-data")


def test_empty_representative_data(tmp_path):
    for name in ("happy", "sad"):
        (tmp_path / "empty" / "train" / name).mkdir(parents=True)
    result = fer_export(
        "quantize",
        "--model",
        tiny_model_path(),
        "--mode",
        "int8",
        "--rep-data",
        tmp_path / "empty",
        "--out",
        tmp_path / "o",
    )
    assert_one_error_line(result, "no usable faces")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "name, why",
    [
        ("../escaped", "'../escaped': start with a letter or digit, then letters, digits"),
        ("a b/c", "'a b/c': start with a letter or digit"),
        (".hidden", "'.hidden': start with a letter or digit"),
        ("n" * 300, f"'{'n' * 40}...': 300 characters; at most 100"),  # the name's length, not its letters
    ],
)
def test_a_name_that_is_not_a_file_name_is_refused(tmp_path, name, why):
    out = tmp_path / "out" / "o"
    result = fer_export(
        "quantize", "--model", tiny_model_path(), "--mode", "fp32", "--name", name, "--out", out
    )
    assert_one_error_line(result, f"--name {why}")
    assert not (tmp_path / "out").exists()  # nothing written, in --out or beside it


def test_unknown_mode(tmp_path):
    result = fer_export("quantize", "--model", tiny_model_path(), "--mode", "int4", "--out", tmp_path)
    assert_one_error_line(result, "unknown mode")
    # An unknown --io-type is an option error before any work, not a variant FAILED after it (exit 1).
    args = ["--mode", "fp32", "--io-type", "int16", "--out", tmp_path / "o"]
    result = fer_export("quantize", "--model", tiny_model_path(), *args)
    assert_one_error_line(result, "unknown --io-type 'int16': use one of int8, uint8, float32")
    assert not (tmp_path / "o").exists()


def test_inspect_shows_card_metadata_and_quantization(exported):
    _, out, _ = exported
    result = fer_export("inspect", out / "fer_cnn_int8.tflite")
    assert result.returncode == 0, result.stderr
    assert "scale 1, zero point -128" in result.stdout
    assert "labels in labels.txt" in result.stdout
    info = json.loads(fer_export("inspect", out / "fer_cnn_int8.tflite", "--json").stdout)
    assert (
        info["card"]["variant"] == "int8"
        and info["tflite_metadata"]["inputs"][0]["image_color"] == "grayscale"
    )


def test_inspect_rejects_what_is_not_a_model(tmp_path):
    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"hello world, no model")
    assert_one_error_line(fer_export_process("inspect", bad), "not a TFLite flatbuffer")
    assert_one_error_line(fer_export("inspect", tmp_path / "missing.tflite"), "no such model file")
    # A pipe or device exists but is no model (reading it could wait forever): not "no such file".
    os.mkfifo(tmp_path / "pipe.tflite")
    for path in (tmp_path / "pipe.tflite", "/dev/null"):
        assert_one_error_line(fer_export("inspect", path), f"{path}: not a regular file; give a .tflite")
        args = ("quantize", "--model", path, "--mode", "fp32", "--out", tmp_path / "o")
        assert_one_error_line(fer_export(*args), f"{path}: not a regular file; give a .keras")


def test_help_reads_like_documentation():
    result = CliRunner().invoke(app, ["quantize", "--help"])
    assert result.exit_code == 0
    for option in ("--rep-data", "--rep-samples", "--eval-data", "--quantizer", "--mobile", "--force"):
        assert option in result.output
    assert Path(__file__).name  # keeps the module importable on its own


def test_flip_tta_is_baked_into_the_exported_graph(tmp_path, tiny_folders):
    import numpy as np

    from conftest import synthetic_faces
    from fer_edge.classifier import Classifier
    from fer_train.models import load_model

    args = ["quantize", "--model", tiny_model_path(), "--mode", "fp32,int8", "--rep-data", tiny_folders]
    result = fer_export(*args, "--rep-samples", "30", "--out", tmp_path, "--flip-tta")
    assert result.returncode == 0, result.stderr
    faces, _ = synthetic_faces(4)
    mirrored = faces[:, :, ::-1]
    keras_model = load_model(tiny_model_path())
    plain = keras_model.predict(faces[..., None].astype(np.float32), verbose=0)
    flipped = keras_model.predict(mirrored[..., None].astype(np.float32), verbose=0)
    fp32 = Classifier(tmp_path / "fer_cnn_fp32.tflite")
    np.testing.assert_allclose(fp32.predict(faces), (plain + flipped) / 2, atol=1e-4)
    # A flip-averaging model cannot tell a face from its mirror image, in float and in int8.
    np.testing.assert_allclose(fp32.predict(mirrored), fp32.predict(faces), atol=1e-5)
    int8 = Classifier(tmp_path / "fer_cnn_int8.tflite")
    # In int8 the two branches are calibrated apart, so swapping them moves scores by a few steps.
    assert np.abs(int8.predict(mirrored) - int8.predict(faces)).max() < 0.05
    assert read_card(tmp_path / "fer_cnn_int8.tflite")["source"]["flip_tta"] is True
    assert "flip TTA baked in" in (tmp_path / "export_report.md").read_text()


def test_a_variant_that_loses_accuracy_on_the_eval_data_is_not_written(tmp_path, tiny_folders, monkeypatch):
    """Agreement on the verification faces is not enough: the eval data's accuracy loss is checked too.
    The allowed loss is set below zero here, so that even a lossless fp16 model counts as a loss."""
    from fer_export import quantize

    allowed = quantize.allowed_drop
    monkeypatch.setattr(
        quantize, "allowed_drop", lambda mode, n: -1.0 if mode == "fp16" else allowed(mode, n)
    )
    options = quantize.Options(
        model=tiny_model_path(), out=tmp_path, modes=["fp32", "fp16"], eval_data=tiny_folders
    )
    report = quantize.run(options, log=lambda m: None)
    status = {v["variant"]: v for v in report["variants"]}
    assert status["fp32"]["status"] == "ok" and (tmp_path / "fer_cnn_fp32.tflite").exists()
    assert status["fp16"]["status"] == "failed" and "points of accuracy" in status["fp16"]["error"]
    assert not (tmp_path / "fer_cnn_fp16.tflite").exists()


def test_an_export_stopped_by_a_write_error_leaves_nothing_that_blocks_a_rerun(tmp_path, monkeypatch):
    """A full disk on the first model file: the error reaches the user, and no labels.txt is left
    behind that a rerun would refuse to overwrite without --force."""
    import errno

    from fer_export import quantize

    def disk_full(path, data, replace=True):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(quantize, "write_bytes", disk_full)
    options = quantize.Options(model=tiny_model_path(), out=tmp_path, modes=["fp32"])
    with pytest.raises(OSError, match="No space left"):
        quantize.run(options, log=lambda m: None)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    report = quantize.run(options, log=lambda m: None)  # the rerun needs no --force
    assert report["variants"][0]["status"] == "ok" and (tmp_path / "labels.txt").exists()


def test_formats_table_lists_every_variant_quantize_writes():
    from fer_export import MODES

    result = CliRunner().invoke(app, ["formats", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [r["mode"] for r in rows] == list(MODES)
    assert [r["mode"] for r in rows if r["rep_data"]] == ["int8"]  # the only calibrated variant
    assert all(0 < r["max_accuracy_drop_pp"] <= 1 for r in rows)
