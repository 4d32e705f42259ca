"""Real models and real frames for the edge tests.

Models are tiny Keras CNNs fitted for one epoch on synthetic faces and converted by TensorFlow; the
tests may import TensorFlow, the edge runtime they test may not. Frames are FER2013 faces from
../shared pasted on a larger textured canvas.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from fer_train.spec import CLASSES, INPUT_SPEC

try:
    from conftest import synthetic_faces
except ImportError:  # pragma: no cover - imported from outside the tests folder
    from tests.conftest import synthetic_faces


def tiny_keras_model(seed: int = 0):
    import keras

    from fer_train.models import build_model

    keras.utils.set_random_seed(seed)
    model = build_model("cnn", width=0.125)
    images, labels = synthetic_faces(per_class=8, seed=seed)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(images[..., None].astype("float32"), labels, epochs=1, batch_size=16, verbose=0)
    return model


def convert(model, variant: str, rep_images: np.ndarray | None = None) -> bytes:
    """A .tflite of `model` through `fer-export`'s converter: fp32, fp16, dynamic, or int8 (int8 in and
    out, as export writes it), or uint8 (int8 with uint8 in and out)."""
    from fer_export.convert import convert as export_convert

    images = rep_images if rep_images is not None else synthetic_faces(per_class=4, seed=3)[0]
    mode, io_type = ("int8", variant) if variant in ("int8", "uint8") else (variant, "int8")
    return export_convert(model, mode, images if mode == "int8" else None, io_type)


def model_json(variant: str, name: str = "tiny", labels=CLASSES, channels: int = 1) -> dict:
    dtype = {"int8": "int8", "uint8": "uint8"}.get(variant, "float32")
    return {
        "format": "fer-model/1",
        "name": name,
        "variant": "int8" if variant == "uint8" else variant,
        "labels": list(labels),
        "input": {**INPUT_SPEC, "channels": channels, "dtype": dtype},
        "output": {"kind": "probabilities", "dtype": dtype},
        "source": {"made_by": "tests/edge_helpers.py"},
    }


def write_model(path: Path, flatbuffer: bytes, meta: dict | None = None, labels_txt: bool = True) -> Path:
    """Write a .tflite and append fer_model.json and labels.txt as export does (zip after the model)."""
    path.write_bytes(flatbuffer)
    if meta is not None or labels_txt:
        with zipfile.ZipFile(path, "a") as archive:
            if meta is not None:
                archive.writestr("fer_model.json", json.dumps(meta))
            if labels_txt:
                archive.writestr("labels.txt", "\n".join(CLASSES) + "\n")
    return path


def export_tiny(folder: Path, variants=("fp32", "int8")) -> dict:
    """Tiny models of each variant, exported by fer_export (uint8: through the converter here, with the
    same packed files). Returns {variant: path} and the Keras model under "keras"."""
    folder.mkdir(parents=True, exist_ok=True)
    model = tiny_keras_model()
    rep = synthetic_faces(per_class=4, seed=3)[0]
    paths: dict = {}
    from fer_export import export_variant

    for variant in variants:
        out = folder / f"tiny_{variant}.tflite"
        if variant != "uint8":
            export_variant(model, variant, out, rep_images=rep, force=True)
        else:
            write_model(out, convert(model, variant, rep), model_json(variant))
        paths[variant] = out
    paths["keras"] = model
    return paths


@functools.cache
def tiny_models() -> dict:
    """fp32 and int8 tiny models, made once per test session (conversion takes seconds)."""
    folder = Path(tempfile.mkdtemp(prefix="fer-edge-models-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return export_tiny(folder, ("fp32", "int8"))


# -- frames -----------------------------------------------------------------------------------------
def shared_faces(shared: Path, per_class: int = 2, split: str = "test") -> list[tuple[str, np.ndarray]]:
    """(label, 48x48 uint8 face) pairs from the shared FER2013 folders, in a fixed order."""
    import cv2

    out = []
    for label in CLASSES:
        files = sorted((shared / "fer2013" / split / label).glob("*.jpg"))[:per_class]
        for f in files:
            out.append((label, cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)))
    return out


def textured_canvas(height: int = 480, width: int = 640, seed: int = 0) -> np.ndarray:
    """A BGR background with blotches and stripes, so a detector cannot win on a flat backdrop."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, size=(height // 16, width // 16, 3), dtype=np.uint8)
    canvas = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    canvas = (canvas.astype(np.float32) * 0.6 + 50).astype(np.uint8)
    for x in range(0, width, 37):
        cv2.line(canvas, (x, 0), (x + 60, height), (90, 110, 70), 2)
    return canvas


def paste_faces(canvas: np.ndarray, faces: list[np.ndarray], boxes: list[tuple[int, int, int]]) -> np.ndarray:
    """Paste gray faces resized to `size` at (x, y, size) on a copy of the BGR canvas."""
    import cv2

    frame = canvas.copy()
    for face, (x, y, size) in zip(faces, boxes, strict=False):
        big = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)
        frame[y : y + size, x : x + size] = cv2.cvtColor(big, cv2.COLOR_GRAY2BGR)
    return frame


def iou(a, b) -> float:
    ax0, ay0, ax1, ay1 = a[0], a[1], a[0] + a[2], a[1] + a[3]
    bx0, by0, bx1, by1 = b[0], b[1], b[0] + b[2], b[1] + b[3]
    w = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    h = max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = w * h
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0
