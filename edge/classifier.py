"""The emotion classifier: a self-describing .tflite behind `predict(faces) -> probabilities`.

Labels, input size, colour and quantization all come from the model (its packed fer_model.json and
its tensors), so the same code runs every variant export writes: fp32, fp16, dynamic and int8. It is
the toolkit's one classifier: the runtime, export's verification and every benchmark run faces through
it, so what is measured is what users run. Another project's model (the benchmarks' peer) is this
classifier with its own `preprocess`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fer_edge.errors import MissingLabels, ModelError
from fer_edge.model_info import ModelInfo, read_labels_file, read_model_info
from fer_edge.runtime import (
    MAX_TENSOR_BYTES,
    checked_threads,
    interpreter_from_bytes,
    load_interpreter,
    tensor_bytes,
)

__all__ = ["Classifier", "ModelError"]

# ITU-R BT.601 luma, the weights OpenCV's cvtColor uses, so an RGB face turns gray as in training.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# Faces per invoke(): a whole evaluation set in one call would size the tensor arena for all of it.
MAX_BATCH = 256


MAX_LABEL = 64
# How far a probability may stray below 0 or above 1: a few int8 steps of a quantized output.
PROBABILITY_SLACK = 0.02
# FER models take 48x48 faces; another project's may take more, but no face crop holds more detail.
MAX_INPUT_SIDE = 512


def resolve_model(model: str | Path | None) -> Path:
    """A model path from what a user typed: a file, a shipped model's name (`nano`), or None for the
    default. A name that is also a file in the current folder means the file."""
    try:
        import fer_models
    except ImportError:
        fer_models = None
    if model is not None and (Path(model).exists() or fer_models is None):
        return Path(model)
    name = "default" if model is None else str(model)
    if fer_models is None:
        raise ModelError("no default model: the fer_models package is missing; pass --model PATH")
    if name not in fer_models.SHIPPED:
        if Path(name).suffix or len(Path(name).parts) > 1:  # a path: the Classifier's "no such file"
            return Path(name)
        # A bare word is more likely a mistyped name than a file without a suffix.
        raise ModelError(f"{name}: no such model file or shipped model ({', '.join(fer_models.SHIPPED)})")
    path = fer_models.shipped(name)
    if path is None and name == "default":
        raise ModelError(f"no default model shipped yet ({fer_models.DEFAULT_MODEL}); pass --model PATH")
    if path is None:
        raise ModelError(f"shipped model {name!r} is missing ({fer_models.MODELS_DIR}); pass --model PATH")
    return path


class Classifier:
    """Runs a FER .tflite on batches of face crops.

    `predict` takes uint8 faces shaped (N, H, W) or (N, H, W, C) and returns float32 probabilities
    shaped (N, len(labels)). Crops of another size are resized; gray and colour are converted to what
    the model takes. `model` is a path or the model's bytes (export checks what it is about to write).
    `preprocess`, for a model that expects other input than raw pixels, turns those uint8 faces into
    the model's input. A shipped model's name (`"nano"`) means that model.
    """

    def __init__(
        self,
        model: str | Path | bytes,
        threads: int = 1,
        labels: str | Path | list[str] | None = None,
        preprocess: Callable[[np.ndarray], np.ndarray] | None = None,
    ):
        self.threads = checked_threads(threads)
        self.preprocess = preprocess
        if isinstance(model, bytes):
            self.path = Path("model.tflite")
            self.info: ModelInfo = read_model_info(model)
            self._interpreter = _interpreter_over(model, self.threads)
        else:
            self.path = resolve_model(model)
            self.info = read_model_info(self.path) if self.path.is_file() else ModelInfo()
            self._interpreter = load_interpreter(self.path, self.threads)
        self._input = self._interpreter.get_input_details()
        self._output = self._interpreter.get_output_details()
        self._check_signature()
        self.labels: list[str] = self._resolve_labels(labels)
        self._batch = 1
        self._batchable = True
        # An interpreter holds one input and one output: threads sharing a Classifier take turns.
        self._turn = threading.Lock()
        # Faces per invoke(), so that a batch's tensors stay within what one face's may take in all.
        per_face = max(tensor_bytes(self._interpreter, per_item=True), 1)
        self.max_batch = max(1, min(MAX_BATCH, MAX_TENSOR_BYTES // per_face))
        # Scores are read as probabilities. Another project's model may end in logits (a score of 131):
        # it gets a softmax, decided once on probe faces so that every face is scored alike.
        self.softmax = self._gives_logits()

    # -- what the model is -------------------------------------------------------------------------
    def _check_signature(self) -> None:
        if len(self._input) != 1 or len(self._output) != 1:
            raise ModelError(
                f"{self.path}: not a face classifier (one input and one output tensor), it has "
                f"{len(self._input)} and {len(self._output)}; a face detector goes to --detector-model"
            )
        shape = tuple(int(x) for x in self._input[0]["shape"])
        if len(shape) != 4 or shape[1] != shape[2] or shape[3] not in (1, 3):
            raise ModelError(
                f"{self.path}: input shape {list(shape)} is not (N, S, S, 1 or 3) of a face classifier"
            )
        if shape[1] > MAX_INPUT_SIDE:  # each face would be resized to it: memory and time without end
            raise ModelError(
                f"{self.path}: input {shape[1]}x{shape[2]} is larger than a face classifier takes "
                f"(at most {MAX_INPUT_SIDE}x{MAX_INPUT_SIDE})"
            )
        out = tuple(int(x) for x in self._output[0]["shape"])
        if len(out) != 2 or out[1] < 2:
            raise ModelError(f"{self.path}: output shape {list(out)} is not (N, classes) of a classifier")
        self.input_size: int = shape[1]
        self.channels: int = shape[3]
        self.num_classes: int = out[1]
        self.input_dtype = np.dtype(self._input[0]["dtype"])
        self.output_dtype = np.dtype(self._output[0]["dtype"])

    def _resolve_labels(self, labels: str | Path | list[str] | None) -> list[str]:
        if isinstance(labels, (str, Path)):
            names = read_labels_file(labels)
        elif labels is not None:
            names = [str(x) for x in labels]
        else:
            names = self.info.labels
        if not names:
            raise MissingLabels(
                f"{self.path}: the model carries no labels (no fer_model.json or labels.txt packed in it)"
            )
        if len(names) != self.num_classes:
            raise ModelError(f"{self.path}: {len(names)} labels for {self.num_classes} model outputs")
        # Labels reach terminals, JSON and the overlay: a control character (an escape sequence from a
        # hostile model clears or rewrites the screen) or a page-long name is not a class name.
        odd = next((n for n in names if not n.isprintable() or len(n) > MAX_LABEL), None)
        if odd is not None:
            raise ModelError(
                f"{self.path}: label {odd[:40]!r} is not a printable name of at most {MAX_LABEL} characters"
            )
        return names

    def _gives_logits(self) -> bool:
        """Whether outputs on a dark, a bright and a patterned face fall outside 0-1 (beyond an int8
        step): logits. Scores in 0-1 that do not sum to 1 (independent sigmoids) are kept as they are.
        One face per call, at the batch size the interpreter has: no second tensor arena."""
        shape = (1, self.input_size, self.input_size, self.channels)
        pattern = (np.arange(np.prod(shape)) * 73 % 256).astype(np.uint8).reshape(shape)
        probes = (np.zeros(shape, np.uint8), np.full(shape, 255, np.uint8), pattern)
        try:
            scores = np.concatenate([self._predict(face) for face in probes])
        except ModelError:  # NaN on a probe face: reported when it happens on a real one
            return False
        return bool(scores.min() < -PROBABILITY_SLACK or scores.max() > 1 + PROBABILITY_SLACK)

    @property
    def variant(self) -> str:
        """fp32, fp16, dynamic or int8: from the model's own description, else from its tensors."""
        if self.info.variant:
            return str(self.info.variant)
        if self.input_dtype in (np.int8, np.uint8):
            return "int8"
        dtypes = {np.dtype(t["dtype"]) for t in self._interpreter.get_tensor_details()}
        if np.dtype(np.float16) in dtypes:
            return "fp16"
        if np.dtype(np.int8) in dtypes:
            return "dynamic"
        return "fp32"

    @property
    def input_quantization(self) -> tuple[float, int]:
        """(scale, zero point) of an integer input; (0.0, 0) for a float one."""
        scale, zero = self._input[0]["quantization"]
        return float(scale), int(zero)

    @property
    def name(self) -> str:
        return str(self.info.name or self.path.stem)

    def describe(self) -> dict:
        return {
            "path": str(self.path),
            "name": self.name,
            "variant": self.variant,
            "labels": list(self.labels),
            "input": {"size": self.input_size, "channels": self.channels, "dtype": self.input_dtype.name},
            "output": {"dtype": self.output_dtype.name, "softmax_applied": self.softmax},
            "threads": self.threads,
        }

    # -- running it ----------------------------------------------------------------------------------
    def predict(self, faces: np.ndarray) -> np.ndarray:
        """Probabilities (N, classes) for uint8 face crops (N, H, W) or (N, H, W, C)."""
        faces = _as_batch(faces)
        if len(faces) == 0:
            return np.zeros((0, self.num_classes), dtype=np.float32)
        step = self.max_batch
        parts = [self._predict(faces[i : i + step]) for i in range(0, len(faces), step)]
        scores = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return _softmax(scores) if self.softmax else scores

    def _predict(self, faces: np.ndarray) -> np.ndarray:
        batch = self.preprocess(faces) if self.preprocess is not None else self._prepare(faces)
        with self._turn:
            if self._batchable:
                try:
                    return self._run(batch)
                except (RuntimeError, ValueError):
                    # A model whose graph pins the batch size: fall back to one face at a time.
                    self._batchable = False
            return np.concatenate([self._run(batch[i : i + 1]) for i in range(len(batch))])

    def _prepare(self, faces: np.ndarray) -> np.ndarray:
        """Raw pixels at the model's size and colour, as float32 (the model normalizes them)."""
        if faces.shape[1:3] != (self.input_size, self.input_size):
            faces = np.stack([_resize(face, self.input_size) for face in faces])
        if faces.shape[-1] != self.channels:
            if self.channels == 1:
                faces = np.rint(faces.astype(np.float32) @ _LUMA)[..., None]
            else:
                faces = np.repeat(faces, 3, axis=-1)
        return faces.astype(np.float32)

    def _quantize_input(self, batch: np.ndarray) -> np.ndarray:
        detail = self._input[0]
        if self.input_dtype in (np.int8, np.uint8):
            scale, zero = detail["quantization"]
            info = np.iinfo(self.input_dtype)
            q = np.rint(batch / (scale or 1.0) + zero)
            return np.clip(q, info.min, info.max).astype(self.input_dtype)
        return batch.astype(self.input_dtype)

    def _dequantize_output(self, raw: np.ndarray) -> np.ndarray:
        if self.output_dtype in (np.int8, np.uint8):
            scale, zero = self._output[0]["quantization"]
            return ((raw.astype(np.float32) - zero) * scale).astype(np.float32)
        return raw.astype(np.float32)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        n = len(batch)
        if n != self._batch:
            index = self._input[0]["index"]
            self._interpreter.resize_tensor_input(index, [n, *batch.shape[1:]])
            self._interpreter.allocate_tensors()
            self._batch = n
        self._interpreter.set_tensor(self._input[0]["index"], self._quantize_input(batch))
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._output[0]["index"])
        probs = self._dequantize_output(raw).reshape(n, self.num_classes)
        # A float output may hold NaN (a label scored NaN would be printed, and NaN is not JSON); a
        # quantized one cannot, so int8 models skip the check.
        if self.output_dtype.kind == "f" and not np.isfinite(probs).all():
            raise ModelError(f"{self.path}: gives NaN or infinite scores; not a working classifier")
        return probs


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)


def _interpreter_over(model: bytes, threads: int):
    try:
        return interpreter_from_bytes(model, threads)
    except (ValueError, RuntimeError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"not a usable TFLite model ({reason})") from err


def _as_batch(faces: np.ndarray) -> np.ndarray:
    """Faces as (N, H, W, C) with C 1 or 3 (an alpha channel is dropped); one face may come alone, as
    (H, W) or (H, W, C)."""
    faces = np.asarray(faces)
    if faces.ndim == 2 or faces.ndim == 3 and faces.shape[-1] in (3, 4) and min(faces.shape[:2]) >= 8:
        faces = faces[None]  # one face: no face in a batch is 3 or 4 pixels wide
    if faces.ndim == 3:
        faces = faces[..., None]
    if faces.ndim != 4 or faces.shape[-1] not in (1, 3, 4):
        raise ValueError(f"faces must be shaped (N, H, W) or (N, H, W, C), got {faces.shape}")
    if faces.dtype != np.uint8 and faces.size:
        _check_pixel_values(faces)
    return faces[..., :3] if faces.shape[-1] == 4 else faces


def _check_pixel_values(faces: np.ndarray) -> None:
    """Faces given as other numbers than uint8 must still be raw pixels: the model normalizes them, so
    faces scaled to 0-1 or -1..1 beforehand would be read as nearly black, without an error."""
    if not np.issubdtype(faces.dtype, np.number) or not np.isfinite(faces).all():
        raise ValueError(f"faces must be raw pixel values 0-255, got {faces.dtype} with NaN or non-numbers")
    low, high = float(faces.min()), float(faces.max())
    if low < 0 or high > 255:
        raise ValueError(f"faces must be raw pixel values 0-255, got values from {low:g} to {high:g}")
    if np.issubdtype(faces.dtype, np.floating) and 0 < high <= 1:
        raise ValueError(
            f"faces look scaled to 0-1 (largest value {high:g}); pass raw pixel values 0-255, the model "
            "normalizes them"
        )


def _resize(face: np.ndarray, size: int) -> np.ndarray:
    import cv2

    interpolation = cv2.INTER_AREA if face.shape[0] > size else cv2.INTER_LINEAR
    out = cv2.resize(face, (size, size), interpolation=interpolation)
    return out[..., None] if out.ndim == 2 else out
