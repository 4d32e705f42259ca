"""Export one variant: convert, describe, verify against Keras, then write atomically.

`export_variant` is the public entry point (re-exported as `fer_export.export_variant`);
`build_variant` does everything but the write, for callers (the CLI) that report on failures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_edge.classifier import Classifier
from fer_export import card as cards
from fer_export.convert import as_model_input, convert, float_ops_of
from fer_export.formats import FORMAT, IO_TYPES, MODES
from fer_export.model_file import CARD_FILE, LABELS_FILE, card_json, embed, read_card
from fer_export.verify import Check, Tolerance, VerificationError, compare
from fer_train.files import refuse_overwrite, write_bytes
from fer_train.spec import CHANNELS, CLASSES, IMAGE_SIZE

VERIFY_SAMPLES = 256


class ExportError(ValueError):
    """Bad input to export (model file, model shape, data); the message is one line."""


@dataclass
class Exported:
    variant: str
    model: bytes
    card: dict
    check: Check


def load_keras_model(path: str | os.PathLike):
    """Load a .keras (or legacy .h5) model, turning every failure into ExportError."""
    from fer_train.models import ModelFileError, load_model

    try:
        return load_model(path, compile=False)
    except ModelFileError as e:
        raise ExportError(str(e)) from None


def check_model(keras_model, labels: list[str], what: str = "the model") -> None:
    """The model (`what`, for errors) must take 48x48x1 faces and give one probability per label."""
    from fer_train.models import ModelFileError, check_face_model

    try:
        check_face_model(keras_model, what, labels)
    except ModelFileError as e:
        raise ExportError(str(e)) from None
    _check_probabilities(keras_model)


def _check_probabilities(keras_model) -> None:
    """Every runtime reads the outputs as probabilities (a score, a confidence); a model that ends in
    logits would export and verify, then show scores like 3.2 or -0.4. Checked on a dark, a bright and
    two noise faces."""
    faces = np.random.default_rng(0).integers(0, 256, (4, IMAGE_SIZE, IMAGE_SIZE, CHANNELS)).astype("float32")
    faces[0], faces[1] = 0.0, 255.0
    out = np.asarray(keras_model(faces, training=False), dtype=np.float64)
    sums = out.sum(axis=-1)
    if not (np.isfinite(out).all() and out.min() >= -1e-4 and np.abs(sums - 1).max() <= 1e-3):
        raise ExportError(
            f"the model's outputs are not probabilities (on test faces they range from {out.min():.3g} "
            f"to {out.max():.3g}, rows summing to {sums.min():.3g}-{sums.max():.3g}); end it with a softmax"
        )


def check_images(images: np.ndarray | None, what: str) -> np.ndarray | None:
    """uint8-compatible faces shaped (N, 48, 48) or (N, 48, 48, 1); ExportError otherwise."""
    if images is None:
        return None
    x = np.asarray(images)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3 or x.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ExportError(
            f"{what} has shape {x.shape}; expected (N, {IMAGE_SIZE}, {IMAGE_SIZE}) grayscale faces"
        )
    if len(x) == 0:
        raise ExportError(f"{what} is empty")
    if x.dtype != np.uint8 and (x.min() < 0 or x.max() > 255):
        raise ExportError(f"{what} holds values outside 0-255; export wants raw pixel values")
    return x.astype(np.uint8)


def default_verify_images(n: int = 64, seed: int = 0) -> np.ndarray:
    """Deterministic face-like test inputs (smooth blobs over the full 0-255 range) when no data is given."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(n, 6, 6))
    faces = np.kron(coarse, np.ones((8, 8)))  # 6x6 blocks blown up to 48x48: low-frequency content
    faces += rng.normal(0, 12, size=faces.shape)
    return np.clip(faces, 0, 255).astype(np.uint8)


def to_rgb_model(keras_model):
    """Wrap a grayscale model so it takes RGB: a fixed 1x1 convolution with BT.601 luma weights in front.

    A Conv2D (not a Lambda) keeps the graph plain TFLite builtins that quantize cleanly, and weights
    summing to 1 make gray pixels (R = G = B) give exactly the grayscale model's answer.
    """
    import keras
    from keras import layers

    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), name="pixels_rgb")
    to_gray = layers.Conv2D(1, 1, use_bias=False, trainable=False, name="rgb_to_gray")
    gray = to_gray(inputs)
    to_gray.set_weights([np.array([0.299, 0.587, 0.114], np.float32).reshape(1, 1, 3, 1)])
    return keras.Model(inputs, keras_model(gray), name=f"{keras_model.name}_rgb")


def build_variant(
    keras_model,
    mode: str,
    rep_images: np.ndarray | None = None,
    labels: list[str] | None = None,
    name: str | None = None,
    io_type: str = "int8",
    verify_images: np.ndarray | None = None,
    tolerance: Tolerance | None = None,
    source: dict | None = None,
    mobile: bool = False,
    converted: bytes | None = None,
) -> Exported:
    """Convert, embed metadata and verify one variant in memory; raises VerificationError on a mismatch.

    `converted` lets a caller supply TFLite bytes made by another quantizer; they get the same
    metadata and the same check.
    """
    labels = list(labels or CLASSES)
    if mode not in MODES:
        raise ExportError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    if io_type not in IO_TYPES:
        raise ExportError(f"unknown input/output type {io_type!r}: use one of {', '.join(IO_TYPES)}")
    check_model(keras_model, labels)
    rep = check_images(rep_images, "the representative dataset")
    if FORMAT[mode].needs_rep_data and rep is None:
        raise ExportError(f"{mode} needs a representative dataset (--rep-data)")
    verify = check_images(verify_images, "the verification data")
    if verify is None:
        verify = rep[:VERIFY_SAMPLES] if rep is not None else default_verify_images()
    target = to_rgb_model(keras_model) if mobile else keras_model
    channels = 3 if mobile else CHANNELS

    def widen(x: np.ndarray) -> np.ndarray:
        return np.repeat(x[..., None], channels, axis=-1) if mobile else x

    if converted is None:
        converted = convert(target, mode, None if rep is None else widen(rep), io_type)
    runner = Classifier(converted, labels=labels)
    card = cards.model_card(
        name=name or keras_model.name,
        variant=mode,
        labels=labels,
        channels=channels,
        input_dtype=runner.input_dtype.name,
        output_dtype=runner.output_dtype.name,
        source=_source(keras_model, converted, mode, io_type, rep, mobile, source),
    )
    model = embed(
        converted,
        cards.tflite_metadata(card),
        {LABELS_FILE: cards.labels_text(labels), CARD_FILE: card_json(card)},
    )
    card = read_card(model)  # as packed: with the CRC-32 of the weights
    # The check runs on the final bytes, metadata included, so a damaged rewrite cannot slip through.
    reference = keras_model.predict(as_model_input(verify), batch_size=256, verbose=0)
    exported_probs = Classifier(model).predict(verify)
    check = compare(np.asarray(reference), exported_probs, tolerance or FORMAT[mode].tolerance)
    result = Exported(mode, model, card, check)
    if not check.passed:
        error = VerificationError(mode, check)
        error.exported = result
        raise error
    return result


def _source(
    keras_model, converted: bytes, mode: str, io_type: str, rep, mobile: bool, extra: dict | None
) -> dict:
    import tensorflow as tf

    float_ops = float_ops_of(converted) if mode == "int8" else {}
    quantization = FORMAT[mode].quantization
    if mode == "int8":
        kept = ", ".join(f"{name} {n} op{'s' * (n > 1)}" for name, n in float_ops.items())
        if kept:  # the file says what stayed float, whatever the table promised
            quantization = quantization.replace("full-integer", f"integer ({kept} in float32)")
        quantization += f", {io_type} input and output"

    source = {
        "keras_model": keras_model.name,
        "parameters": int(keras_model.count_params()),
        "converter": f"tf.lite.TFLiteConverter (TensorFlow {tf.__version__})",
        "quantization": quantization,
        "representative_samples": 0 if rep is None else int(len(rep)),
        "mobile_rgb": mobile,
    }
    if mode == "int8":
        source["float_ops"] = float_ops
    source.update(extra or {})
    return source


def export_variant(
    keras_model,
    mode: str,
    out_path: str | os.PathLike,
    rep_images: np.ndarray | None = None,
    labels: list[str] | None = None,
    name: str | None = None,
    io_type: str = "int8",
    verify_images: np.ndarray | None = None,
    tolerance: Tolerance | None = None,
    source: dict | None = None,
    mobile: bool = False,
    force: bool = False,
) -> Path:
    """Export `keras_model` (a keras.Model or a .keras path) as a self-describing, verified .tflite.

    Raises ExportError for bad input, FileExistsError when `out_path` exists and not `force`,
    ConversionError when the converter fails and VerificationError when the result disagrees with
    the Keras model beyond the variant's tolerance; nothing is written in those cases.
    """
    out_path = Path(out_path)
    refuse_overwrite(out_path, force)
    if isinstance(keras_model, (str, os.PathLike)):
        keras_model = load_keras_model(keras_model)
    exported = build_variant(
        keras_model,
        mode,
        rep_images,
        labels,
        name,
        io_type,
        verify_images,
        tolerance,
        source,
        mobile,
    )
    return write_bytes(out_path, exported.model)
