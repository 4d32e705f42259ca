"""Import TensorFlow and Keras without their C++ start-up chatter.

TensorFlow's wheels log CUDA probing through absl before any Python setting can silence it
(TF_CPP_MIN_LOG_LEVEL does not reach those lines), so file descriptor 2 is pointed at /dev/null for
the duration of the import. Python errors raised by the import still surface as exceptions.
"""

from __future__ import annotations

import os
import sys


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
