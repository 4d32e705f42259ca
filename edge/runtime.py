"""The TFLite interpreter: LiteRT where it is installed, tflite-runtime where only that exists.

The one place the toolkit constructs an interpreter: the runtime, export's checks and the benchmarks
all come through here.

LiteRT's default op resolver applies XNNPACK to float and quantized ops, so no delegate is named here.
"""

from __future__ import annotations

from numbers import Integral
from pathlib import Path

import numpy as np

from fer_edge.errors import ModelError, not_a_model_file
from fer_edge.model_info import check_model_size
from fer_edge.quiet import native_quiet

# More threads than this only oversubscribe a 48x48 model, and enough of them abort the process
# (XNNPACK's thread pool cannot be created), so a larger count is refused rather than tried.
MAX_THREADS = 64


def checked_threads(threads: int) -> int:
    if isinstance(threads, bool) or not isinstance(threads, Integral) or not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"threads: a whole number from 1 to {MAX_THREADS}; got {threads!r}")
    return int(threads)


def interpreter_class():
    """The Interpreter class of the first runtime that imports."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError as err:
            raise ModelError(
                "no TFLite runtime: install the edge extra (pip install 'fer-edge-toolkit[edge]')"
            ) from err
    return Interpreter


def runtime_name() -> str:
    module = interpreter_class().__module__
    return module.split(".")[0]


def interpreter_from_bytes(model: bytes, threads: int = 1, allocate: bool = True):
    """An interpreter over a model held in memory (export checks what it is about to write); the
    interpreter's own errors (ValueError, RuntimeError) reach the caller, who knows what the bytes are."""
    with native_quiet():
        interpreter = interpreter_class()(model_content=model, num_threads=checked_threads(threads))
        if allocate:
            interpreter.allocate_tensors()
    return interpreter


def load_interpreter(path: str | Path, threads: int = 1):
    """An allocated interpreter for the model at `path`, or a ModelError saying why there is none."""
    path = Path(path)
    threads = checked_threads(threads)
    if why := not_a_model_file(path, ".tflite file"):
        raise ModelError(why)
    check_model_size(path)
    Interpreter = interpreter_class()
    try:
        with native_quiet():
            interpreter = Interpreter(model_path=str(path), num_threads=threads)
            _check_tensor_memory(interpreter, path)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as err:
        if path.suffix.lower() in (".keras", ".h5"):  # a training run's output, given by mistake
            raise ModelError(
                f"{path}: a Keras model; fer-edge runs .tflite files: fer-export quantize --model {path} "
                "--out DIR makes them"
            ) from None
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"{path}: not a usable TFLite model ({reason})") from err
    return interpreter


# What a model's tensors may take together. A 1.5 kB .tflite can declare a 30000x30000 input (3.4 GiB,
# and 12 GB once a face is resized to it); the largest model here takes under 10 MiB.
MAX_TENSOR_BYTES = 1 << 30


def tensor_bytes(interpreter, per_item: bool = False) -> int:
    """What the model's tensors take together at their current shapes: an upper bound on what
    running it takes (the arena reuses memory between tensors). `per_item`: only those that grow with
    the batch (a batch dimension of -1 in their signature), or all where none does."""
    details = interpreter.get_tensor_details()
    if per_item:
        batched = [t for t in details if len(t["shape_signature"]) and t["shape_signature"][0] == -1]
        details = batched or details
    total = 0
    for tensor in details:
        count = 1
        for dim in tensor["shape"]:
            count *= max(int(dim), 1)
        total += count * np.dtype(tensor["dtype"]).itemsize
    return total


def _check_tensor_memory(interpreter, path: Path) -> None:
    """Refuse, before the arena is allocated, a model whose tensors would take more than MAX_TENSOR_BYTES."""
    total = tensor_bytes(interpreter)
    if total > MAX_TENSOR_BYTES:
        raise ModelError(
            f"{path}: its tensors take {total / 2**30:,.1f} GiB, more than a face model may "
            f"({MAX_TENSOR_BYTES >> 30} GiB)"
        )


def check_tensor_memory(path: str | Path) -> None:
    """The same bound for a model another runtime loads (MediaPipe Tasks' face detector), as a
    ModelError; a file LiteRT cannot read passes, for that runtime to say what is wrong with it."""
    try:
        with native_quiet():
            interpreter = interpreter_class()(model_path=str(path))
    except (ValueError, RuntimeError):
        return
    _check_tensor_memory(interpreter, Path(path))
