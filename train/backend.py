"""Import TensorFlow and Keras without their C++ start-up chatter.

TensorFlow's wheels log CUDA probing through absl before any Python setting can silence it
(TF_CPP_MIN_LOG_LEVEL does not reach those lines), so file descriptor 2 is pointed at /dev/null for
the duration of the import. Python errors raised by the import still surface as exceptions.
"""

from __future__ import annotations

import os
import re
import sys
from contextlib import contextmanager


def import_keras():
    """Import TensorFlow (quietly) and return the keras module."""
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
    import keras

    return keras


@contextmanager
def out_of_memory_as(error: type[Exception], hint: str):
    """Turn TensorFlow's out-of-memory error (or Python's) into `error`: one line naming the tensor
    that did not fit and what to change, instead of a traceback full of device names."""
    try:
        yield
    except MemoryError:
        raise error(f"out of memory; {hint}") from None
    except Exception as e:
        if type(e).__name__ != "ResourceExhaustedError":
            raise
        shape = re.search(r"tensor with shape\s*\[([\d,\s]*)\]", str(e))
        what = f"a {'x'.join(shape[1].replace(' ', '').split(','))} tensor" if shape else "a tensor"
        raise error(f"out of memory: TensorFlow could not allocate {what}; {hint}") from None
