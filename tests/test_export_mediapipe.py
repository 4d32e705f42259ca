"""Exported models in MediaPipe Tasks' ImageClassifier (the C++ core of the Android and iOS SDKs).

They run with this Python when it has mediapipe (CI installs it with --no-deps, keeping our OpenCV), or
with the Python that FER_MEDIAPIPE_PYTHON names, e.g. a separate environment; they skip otherwise:

    python -m venv /tmp/mpvenv && /tmp/mpvenv/bin/pip install mediapipe
    FER_MEDIAPIPE_PYTHON=/tmp/mpvenv/bin/python pytest tests/test_export_mediapipe.py
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from export_helpers import tiny_model

from conftest import ROOT, synthetic_faces
from fer_edge.classifier import Classifier
from fer_export import export_variant
from fer_train.spec import CLASSES

MEDIAPIPE_PYTHON = os.environ.get("FER_MEDIAPIPE_PYTHON") or (
    sys.executable if importlib.util.find_spec("mediapipe") else None
)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not MEDIAPIPE_PYTHON, reason="set FER_MEDIAPIPE_PYTHON to a python with mediapipe"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


def mediapipe_classify(models: list[Path], face: Path) -> dict:
    script = ROOT / "export" / "mediapipe_check.py"
    cmd = [MEDIAPIPE_PYTHON, str(script), *map(str, models), "--face", str(face), "--json"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("mediapipe")
    faces, _ = synthetic_faces(6, seed=4)
    model = tiny_model()
    paths = {
        "fp32_rgb": export_variant(model, "fp32", out / "fp32_rgb.tflite", mobile=True),
        "int8_rgb": export_variant(
            model, "int8", out / "int8_rgb.tflite", faces, io_type="uint8", mobile=True
        ),
        "int8_gray": export_variant(model, "int8", out / "int8_gray.tflite", faces),
        "fp32_gray": export_variant(model, "fp32", out / "fp32_gray.tflite"),
    }
    face = faces[20]
    np.save(out / "face.npy", face)
    return paths, face, mediapipe_classify(list(paths.values()), out / "face.npy")


@pytest.mark.parametrize("variant", ["fp32_rgb", "int8_rgb"])
def test_mobile_variants_load_and_give_the_interpreter_scores(exported, variant):
    paths, face, results = exported
    result = results[str(paths[variant])]
    assert result["ok"], result
    # Category names come from labels.txt inside the model, via the output tensor's metadata.
    assert set(result["scores"]) == set(CLASSES)
    expected = Classifier(paths[variant].read_bytes()).predict(np.repeat(face[None, ..., None], 3, axis=-1))[
        0
    ]
    got = np.array([result["scores"][c] for c in CLASSES])
    assert np.abs(got - expected).max() < 1e-3


def test_grayscale_models_are_refused_for_their_colour_space(exported):
    paths, _, results = exported
    assert "RGB color space" in results[str(paths["fp32_gray"])]["error"]
    assert not results[str(paths["int8_gray"])]["ok"]


@pytest.mark.parametrize("app, gray", [("app", "default"), ("small-app", "small"), ("nano-app", "nano")])
def test_the_shipped_app_models_give_the_runtime_labels_on_held_out_faces(shared, tmp_path, app, gray):
    """Each app variant in models/ loads in ImageClassifier and labels PublicTest faces as fer-edge does."""
    import cv2

    import fer_models
    from fer_edge.classifier import Classifier

    app, default = fer_models.shipped(app), fer_models.shipped(gray)
    if app is None or default is None:
        pytest.skip("no shipped models")
    faces = np.stack(
        [
            cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            for label in CLASSES
            for path in sorted((shared / "fer2013" / "test" / label).glob("*.jpg"))[:10]
        ]
    )
    np.save(tmp_path / "faces.npy", faces)
    result = mediapipe_classify([app], tmp_path / "faces.npy")[str(app)]
    assert result["ok"], result
    runtime = Classifier(app).predict(np.repeat(faces[..., None], 3, axis=-1))
    assert result["labels"] == [CLASSES[k] for k in runtime.argmax(1)]  # MediaPipe = our runtime
    gray = Classifier(default).predict(faces).argmax(1)
    assert (runtime.argmax(1) == gray).mean() >= 0.9  # and the app model answers as the default does
