"""Keras model to TFLite bytes with the real `tf.lite.TFLiteConverter`, one function per variant.

fp32    plain conversion, the reference every other variant is measured against;
fp16    float16 weights (half the size), float32 compute on CPUs, native fp16 on mobile GPUs;
dynamic int8 weights, activations quantized on the fly (no calibration data needed);
int8    integer post-training quantization calibrated on a representative dataset, with int8 (default),
        uint8 or float32 input and output. The model's front end (`front_end`: the input through the
        first convolution after per-face standardization) stays float32 unless `full_int8` quantizes
        it too (TFLITE_BUILTINS_INT8); TF still leaves ELU float either way.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
from collections.abc import Iterator

import numpy as np

MODES = ("fp32", "fp16", "dynamic", "int8")
IO_TYPES = ("int8", "uint8", "float32")
# int8 keeps the model's front end float32: every op from the input pixels through the first
# convolution that reads the per-face standardized face. Standardization computes a mean, a variance
# and its inverse square root over the face; in int8 each step rounds and the face's scale comes out
# wrong (2.6 points of PublicTest accuracy on run 6). Rounding the low-contrast blurred face before the
# standardization and the standardized face before the first convolution cost the wider run 7 (the
# shipped model) another 1.2-1.5 points. The front end is under 1% of the multiply-adds
# (models/README.md).
STANDARDIZE = "standardize"
QUANTIZE_OPS = ("QUANTIZE", "DEQUANTIZE")


class ConversionError(RuntimeError):
    """The converter rejected the model or the calibration data."""


def convert(
    keras_model,
    mode: str,
    rep_images: np.ndarray | None = None,
    io_type: str = "int8",
    full_int8: bool = False,
) -> bytes:
    """Convert `keras_model` (raw 0-255 pixels in) to a TFLite flatbuffer in `mode`.

    `rep_images` (uint8, (N, 48, 48) or (N, 48, 48, C)) calibrates int8; it is fed exactly as training
    feeds the model: raw pixel values as float32, the channel axis added for grayscale. int8 keeps the
    model's front end (`front_end`) in float32 unless `full_int8`.
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
            if mode == "int8" and not full_int8:
                return _int8_with_float_front_end(converter, io_type)
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


def _standardized(name: str) -> bool:
    # The converter names every tensor after the Keras layer that made it: `fer_cnn_1/standardize_1/...`.
    return re.search(rf"(^|/){STANDARDIZE}(_\d+)?/", name) is not None


def front_end(model_ops: list[dict]) -> list[dict]:
    """The ops from the input through the first convolution that reads the standardized face (each
    CONV_2D so fed, and everything upstream of it but the ops that read the model's input); none when
    the model has no standardize layer.

    The ops that read the input (rescaling, flipping) stay int8, so the file still takes int8 pixels;
    they lose nothing there, since 256 pixel values in make at most 256 values out.

    `model_ops` is `runtime.ops(model)`. Found by the graph, not by layer names, so it holds for
    nested models (flip TTA runs the network twice) and for a file whose convolution is int8 behind
    a QUANTIZE.
    """
    producer = {name: op for op in model_ops for name in op["outputs"]}

    def source(name: str) -> str:  # through QUANTIZE/DEQUANTIZE, which only change the number type
        while name in producer and producer[name]["type"] in QUANTIZE_OPS:
            name = producer[name]["inputs"][0]
        return name

    reads_face = [any(_standardized(source(name)) for name in op["inputs"]) for op in model_ops]
    stems = [op for op, reads in zip(model_ops, reads_face, strict=True) if reads and op["type"] == "CONV_2D"]
    found: dict[int, dict] = {}
    stack = list(stems)
    while stack:
        op = stack.pop()
        if id(op) not in found and not op["reads_input"]:
            found[id(op)] = op
            stack.extend(producer[i] for i in op["inputs"] if i in producer)
    return [op for op in model_ops if id(op) in found]


def float_ops_of(model: bytes) -> dict[str, int]:
    """What computes in float32 in an int8 `model`, read from its ops: {"front end": op count} for the
    ops of `front_end`, and the op type (say "ELU") for every other float op.

    TensorFlow's quantizer (2.21) leaves every ELU float, between a DEQUANTIZE and a QUANTIZE, even
    with TFLITE_BUILTINS_INT8 (`full_int8`), and standardization's NEG too. Reports and cards say so
    from the file, whatever the converter version does.
    """
    from fer_export.runtime import float_compute_ops, ops

    front = {name for op in front_end(ops(model)) for name in op["outputs"]}
    counts: dict[str, int] = {}
    for op in float_compute_ops(model):
        name = "front end" if op["outputs"][0] in front else op["type"]
        counts[name] = counts.get(name, 0) + 1
    return counts


def _int8_with_float_front_end(converter, io_type: str) -> bytes:
    """int8 with the front end's ops denylisted, through TF's selective quantization.

    The debugger calibrates once; the front end is found in its calibrated (float) model and the model
    is quantized again from that calibration with those ops denylisted. A model without a front end
    (no standardize layer) is quantized whole, as the plain converter would.
    """
    import tensorflow as tf
    from tensorflow.lite.python.util import modify_model_io_type

    from fer_export.runtime import ops

    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=converter.representative_dataset
    )
    nodes = [name for op in front_end(ops(debugger.calibrated_model)) for name in op["outputs"]]
    if nodes:
        debugger.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=nodes)
    # Float input and output here; the converter's own last step then makes them int8 or uint8.
    dtype = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}[io_type]
    return bytes(modify_model_io_type(debugger.get_nondebug_quantized_model(), dtype, dtype))


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
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
