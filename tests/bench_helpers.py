"""Real tiny models for the benchmark tests, made once per test session.

A width-0.125 CNN fitted for one epoch on synthetic faces, exported by fer_export (real TensorFlow
conversion, metadata packed as the model file contract says) as fp32 and int8, plus the Keras model
itself as a .keras reference. The benchmarks read them through the real LiteRT interpreter.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path

import numpy as np

try:
    from conftest import synthetic_faces
except ImportError:  # pragma: no cover - imported from outside the tests folder
    from tests.conftest import synthetic_faces

VARIANTS = ("fp32", "int8")


@cache
def tiny_models() -> dict[str, Path]:
    """{'fp32': .tflite, 'int8': .tflite, 'keras': .keras} in a temporary folder, built on first use."""
    import keras

    from fer_export import export_variant
    from fer_train.models import build_model

    keras.utils.set_random_seed(0)
    model = build_model("cnn", width=0.125)
    images, labels = synthetic_faces(per_class=8, seed=0)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(images[..., None].astype("float32"), labels, epochs=1, batch_size=16, verbose=0)
    folder = Path(tempfile.mkdtemp(prefix="fer-bench-models-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    paths = {}
    for variant in VARIANTS:
        paths[variant] = export_variant(
            model, variant, folder / f"tiny_{variant}.tflite", rep_images=images, name="tiny", force=True
        )
    paths["keras"] = folder / "tiny.keras"
    model.save(paths["keras"])
    return paths


def run_cli(*args: str, env: dict | None = None, preexec_fn=None) -> subprocess.CompletedProcess:
    """`fer-bench ARGS` in a fresh process, as a user runs it (exit status, stdout, stderr)."""
    code = "from fer_bench.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "200", **(env or {})},
        preexec_fn=preexec_fn,
    )


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def write_clip(path: Path, shared: Path, frames: int = 12) -> Path:
    """A short MJPG video of FER2013 faces (from ../shared) moving over a textured background."""
    import cv2

    rng = np.random.default_rng(0)
    canvas = np.clip(rng.normal(110, 30, size=(240, 320, 3)), 0, 255).astype(np.uint8)
    files = sorted((shared / "fer2013" / "test" / "happy").glob("*.jpg"))[:2]
    faces = [cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for i in range(frames):
        frame = canvas.copy()
        for j, face in enumerate(faces):
            big = cv2.cvtColor(cv2.resize(face, (96, 96), interpolation=cv2.INTER_CUBIC), cv2.COLOR_GRAY2BGR)
            x, y = 20 + 160 * j + 2 * (i % 10), 60 + i % 10
            frame[y : y + 96, x : x + 96] = big
        writer.write(frame)
    writer.release()
    return path


def relabel(model: Path, out: Path, labels: list[str]) -> Path:
    """A copy of `model` whose packed fer_model.json and labels.txt name other classes."""
    import zipfile

    with zipfile.ZipFile(model) as archive:
        start = min(info.header_offset for info in archive.infolist())  # where the appended zip begins
        meta = json.loads(archive.read("fer_model.json"))
    out.write_bytes(model.read_bytes()[:start])
    with zipfile.ZipFile(out, "a") as archive:
        archive.writestr("fer_model.json", json.dumps({**meta, "labels": labels}))
        archive.writestr("labels.txt", "\n".join(labels) + "\n")
    return out
