"""The edge runtime runs where TensorFlow cannot be imported, as on a Pi with only the edge extra."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import pytest
from edge_helpers import tiny_models

import fer_edge

# Run fer-edge with TensorFlow and Keras made unimportable, then list what heavy modules got loaded.
WRAPPER = """
import json, sys
sys.modules["tensorflow"] = None
sys.modules["keras"] = None
from fer_edge.cli import main
sys.argv = ["fer-edge"] + sys.argv[1:]
try:
    main()
except SystemExit as exit:
    code = exit.code or 0
roots = ("tensorflow", "keras", "tf_keras", "jax", "torch")
heavy = sorted(m for m in sys.modules if m.split(".")[0] in roots and sys.modules[m] is not None)
print(json.dumps({"exit": code, "heavy": heavy}), file=sys.stderr)
"""


def run_without_tf(*args) -> tuple[subprocess.CompletedProcess, dict]:
    result = subprocess.run(
        [sys.executable, "-c", WRAPPER, *map(str, args)], capture_output=True, text=True, timeout=300
    )
    report = json.loads(result.stderr.strip().splitlines()[-1])
    return result, report


@pytest.fixture(scope="module")
def models():
    return tiny_models()


def test_every_module_imports_without_tensorflow():
    names = [f"fer_edge.{m.name}" for m in pkgutil.iter_modules(fer_edge.__path__) if m.name != "__main__"]
    code = (
        "import sys, importlib; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.startswith('fer_train')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert set(eval(result.stdout)) <= {"fer_train", "fer_train.spec", "fer_train.files"}


def test_predict_and_run_without_tensorflow(shared, models, tmp_path):
    detector = shared / "models" / "blaze_face_short_range.tflite"
    crops, report = run_without_tf(
        "predict", shared / "fer2013" / "test" / "fear", "--crops", "--json", "-m", models["int8"]
    )
    assert report == {"exit": 0, "heavy": []}, crops.stderr
    assert len(crops.stdout.splitlines()) == len(list((shared / "fer2013" / "test" / "fear").glob("*.jpg")))
    for name in ("auto", "blazeface"):
        frames, report = run_without_tf(
            "run", "-s", shared / "fer2013" / "test" / "happy", "-m", models["int8"], "--detector", name,
            "--detector-model", detector, "--json", "--max-frames", "5", "--no-show",
        )  # fmt: skip
        assert report == {"exit": 0, "heavy": []}, frames.stderr
        assert len(frames.stdout.splitlines()) == 5
