"""fer-edge: facial emotion recognition on a Raspberry Pi (or any CPU) without TensorFlow.

It runs the toolkit's self-describing .tflite models through LiteRT, finds faces with MediaPipe's
FaceDetector, the same BlazeFace model decoded here, or OpenCV's Haar cascade, and offers
`fer-edge predict`, `fer-edge run` and an embeddable API:

    from fer_edge import EmotionRecognizer
    with EmotionRecognizer("model.tflite") as fer:
        faces = fer(frame_bgr)            # [Face(box, label, score, scores), ...]
"""

from __future__ import annotations

import os


def _pixel_limit() -> str:
    # OpenCV aborts the process on a limit it cannot parse ("-5"): only a positive whole number goes
    # through; fer_edge.images reports a bad $FER_MAX_PIXELS when a command sets its limit.
    raw = os.environ.get("FER_MAX_PIXELS", "").strip()
    return raw if raw.isascii() and raw.isdigit() and int(raw) > 0 else "50000000"


# OpenCV reads its decoder's pixel limit when it loads; set it here, before any module imports cv2
# (fer_edge.images explains the limit; a command's --max-pixels replaces it if OpenCV is not loaded yet).
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", _pixel_limit())

from fer_edge import quiet  # noqa: E402, F401  (OpenCV's and FFmpeg's log levels, also before cv2 loads)

__all__ = ["Classifier", "EmotionRecognizer", "Face", "ModelError", "EdgeError"]


def __getattr__(name: str):
    # Lazy, so `fer-edge --help` does not pay for numpy, OpenCV and LiteRT.
    if name == "Classifier":
        from fer_edge.classifier import Classifier

        return Classifier
    if name in ("EmotionRecognizer", "Face"):
        from fer_edge import recognizer

        return getattr(recognizer, name)
    if name in ("ModelError", "EdgeError"):
        from fer_edge import errors

        return getattr(errors, name)
    raise AttributeError(name)
