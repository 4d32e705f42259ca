"""Keras model to TFLite bytes with the real `tf.lite.TFLiteConverter`, one function per variant.

fp32    plain conversion, the reference every other variant is measured against;
fp16    float16 weights (half the size), float32 compute on CPUs, native fp16 on mobile GPUs;
dynamic int8 weights, activations quantized on the fly (no calibration data needed);
int8    full-integer post-training quantization (TFLITE_BUILTINS_INT8) calibrated on a representative
        dataset, with int8 (default), uint8 or float32 input and output. Our residual models are
        all-integer; TF leaves an ELU float (the `cnn` seed's), and reports and cards list such ops.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator

import numpy as np

from fer_export.formats import IO_TYPES, MODES


class ConversionError(RuntimeError):
    """The converter rejected the model or the calibration data."""


def convert(
    keras_model,
    mode: str,
    rep_images: np.ndarray | None = None,
    io_type: str = "int8",
) -> bytes:
    """Convert `keras_model` (raw 0-255 pixels in) to a TFLite flatbuffer in `mode`.

    `rep_images` (uint8, (N, 48, 48) or (N, 48, 48, C)) calibrates int8; it is fed exactly as training
    feeds the model: raw pixel values as float32, the channel axis added for grayscale.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    if io_type not in IO_TYPES:
        raise ValueError(f"unknown input/output type {io_type!r}: use one of {', '.join(IO_TYPES)}")
    if mode == "int8" and (rep_images is None or len(rep_images) == 0):
        raise ValueError("int8 needs a representative dataset (--rep-data); it is empty or missing")
    import tensorflow as tf

    with quiet():
        converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
        if mode == "fp16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif mode == "dynamic":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        elif mode == "int8":
            _full_integer(converter, rep_images, io_type)
        try:
            return bytes(converter.convert())
        except Exception as e:  # noqa: BLE001 - the converter raises many types; the user needs one line
            raise ConversionError(f"TFLite conversion ({mode}) failed: {_first_line(e)}") from None


def _full_integer(converter, rep_images: np.ndarray, io_type: str) -> None:
    import tensorflow as tf

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: representative_batches(rep_images)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    dtype = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}[io_type]
    converter.inference_input_type = dtype
    converter.inference_output_type = dtype


def float_ops_of(model: bytes) -> dict[str, int]:
    """What computes in float32 in an int8 `model`, by op type, read from its ops (empty when the file
    is all-integer). TensorFlow's quantizer (2.21) leaves every ELU float between a DEQUANTIZE and a
    QUANTIZE, even in full-integer mode; reports and cards say so from the file."""
    from fer_export.inspect_model import float_compute_ops

    counts: dict[str, int] = {}
    for op in float_compute_ops(model):
        counts[op["type"]] = counts.get(op["type"], 0) + 1
    return counts


def as_model_input(images: np.ndarray) -> np.ndarray:
    """uint8 faces (N, 48, 48[, C]) as the float32 (N, 48, 48, C) batch the Keras model takes."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    return x.astype(np.float32)


def representative_batches(images: np.ndarray) -> Iterator[list[np.ndarray]]:
    """One face per step, as the calibrator wants.

    The first face is yielded once more with one pixel at 0 and one at 255: the calibrator sets the
    input's quantization from the observed range, and a range of exactly 0-255 makes it scale 1, zero
    point -128 (int8) or 0 (uint8), i.e. the quantized input is the camera byte itself.
    """
    x = as_model_input(images)
    anchor = x[:1].copy()
    anchor[0, 0, 0, :], anchor[0, 0, 1, :] = 0.0, 255.0
    yield [anchor]
    for i in range(len(x)):
        yield [x[i : i + 1]]


def _first_line(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # TF's converter errors end with the informative line; its first lines are often "<unknown>: error:".
    return lines[-1][:300] if lines else type(error).__name__


@contextlib.contextmanager
def quiet():
    """Silence TensorFlow's and the converter's C++ and Python chatter while converting.

    The converter logs hundreds of lines to the process's stdout/stderr file descriptors, below
    Python's sys.stdout, so the descriptors themselves are redirected. FER_EXPORT_VERBOSE=1 keeps them.
    """
    if os.environ.get("FER_EXPORT_VERBOSE"):
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as sink:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
                warnings.catch_warnings(),  # the converter's own UserWarnings, under pytest as well
            ):
                warnings.simplefilter("ignore")
                yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
