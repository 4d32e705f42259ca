"""Face detectors behind one interface: `detect(frame) -> list[Box]` and `close()`.

`auto` picks MediaPipe's FaceDetector where mediapipe can run, our BlazeFace decoder on LiteRT elsewhere
(a Pi 4, whose CPU lacks the ARMv8.2 atomics mediapipe's library is built for), and OpenCV's Haar
cascade when no BlazeFace model file exists, and says which it chose and why.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes.util
import importlib.util
import os
import platform
import sys
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from fer_edge.boxes import Box
from fer_edge.errors import DetectorError, ModelError
from fer_edge.model_files import find_detector_model
from fer_edge.model_info import check_model_size
from fer_edge.quiet import native_quiet
from fer_edge.runtime import check_tensor_memory

NAMES = ("auto", "mediapipe", "blazeface", "haar")
FETCH_HINT = "run `fer-edge models fetch` (or pass --detector-model PATH)"


class Detector(Protocol):
    name: str

    def detect(self, frame: np.ndarray, rgb: bool = False) -> list[Box]: ...

    def close(self) -> None: ...


@dataclass
class Choice:
    detector: Detector
    reason: str


# -- Haar ---------------------------------------------------------------------------------------------
def haar_cascade_path() -> Path | None:
    import cv2

    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if folder:
        path = Path(folder) / "haarcascade_frontalface_default.xml"
        if path.is_file():
            return path
    return None


def haar_unavailable() -> str | None:
    """Why OpenCV's Haar cascade cannot run here, or None when it can."""
    import cv2

    if not hasattr(cv2, "CascadeClassifier"):
        return f"OpenCV {cv2.__version__} has no Haar cascades (OpenCV 5 moved them out; use opencv 4.x)"
    if haar_cascade_path() is None:
        return f"OpenCV {cv2.__version__} ships no haarcascade_frontalface_default.xml"
    return None


class HaarDetector:
    name = "haar"

    def __init__(self, min_size: int = 24):
        import cv2

        why = haar_unavailable()
        if why:
            raise DetectorError(f"haar detector: {why}")
        self._cascade = cv2.CascadeClassifier(str(haar_cascade_path()))
        self.min_size = min_size
        self._turn = threading.Lock()  # a cascade keeps per-call buffers: threads take turns

    def detect(self, frame: np.ndarray, rgb: bool = False) -> list[Box]:
        import cv2

        gray = (
            frame
            if frame.ndim == 2
            else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY if rgb else cv2.COLOR_BGR2GRAY)
        )
        with self._turn:
            found = self._cascade.detectMultiScale(gray, 1.1, 5, minSize=(self.min_size, self.min_size))
        return [Box(float(x), float(y), float(w), float(h), 1.0) for x, y, w, h in found]

    def close(self) -> None:
        self._cascade = None


# -- MediaPipe ----------------------------------------------------------------------------------------
def mediapipe_unavailable() -> str | None:
    """Why mediapipe's FaceDetector cannot run here, or None when it should."""
    if importlib.util.find_spec("mediapipe") is None:
        return "mediapipe is not installed"
    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64") and sys.platform.startswith("linux") and not _has_lse_atomics():
        return "this CPU lacks ARMv8.2 atomics that mediapipe's library needs (a Pi 4)"
    if sys.platform.startswith("linux") and not (
        ctypes.util.find_library("EGL") and ctypes.util.find_library("GLESv2")
    ):
        return "libEGL/libGLESv2 are missing (apt install libegl1 libgles2)"
    return None


def _has_lse_atomics() -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(line.startswith("Features") and "atomics" in line.split() for line in text.splitlines())


def import_mediapipe():
    """Import mediapipe without letting it import TensorFlow (seconds, and never needed here)."""
    blocked = "tensorflow" not in sys.modules
    os.environ.setdefault(
        "GLOG_minloglevel", "2"
    )  # mediapipe's C++ INFO lines would bury our one-line messages
    if blocked:
        sys.modules["tensorflow"] = None  # type: ignore[assignment]
    try:
        import mediapipe
        from mediapipe.tasks.python import BaseOptions, vision
    finally:
        if blocked and sys.modules.get("tensorflow", 0) is None:
            del sys.modules["tensorflow"]
    return mediapipe, BaseOptions, vision


# MediaPipe detectors not closed by their owner: closed at exit, before the interpreter tears modules down
# (then MediaPipe's own finalizer fails and prints a traceback).
_unclosed: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_unclosed() -> None:
    for detector in list(_unclosed):
        with contextlib.suppress(Exception):
            detector.close()


class MediaPipeDetector:
    name = "mediapipe"

    def __init__(self, model_path: str | Path, min_score: float = 0.5):
        why = mediapipe_unavailable()
        if why:
            raise DetectorError(f"mediapipe detector: {why}")
        try:
            check_model_size(model_path)  # MediaPipe maps the whole file, as LiteRT does
            check_tensor_memory(model_path)  # and allocates what its tensors declare
        except ModelError as err:
            raise DetectorError(f"mediapipe detector: {err}") from None
        try:
            self._mp, BaseOptions, vision = import_mediapipe()
            options = vision.FaceDetectorOptions(
                base_options=BaseOptions(model_asset_path=str(model_path)),
                running_mode=vision.RunningMode.IMAGE,
                min_detection_confidence=min_score,
            )
            with native_quiet():
                self._detector = vision.FaceDetector.create_from_options(options)
            self._turn = threading.Lock()
            _unclosed.add(self)
        except Exception as err:  # mediapipe raises RuntimeError, ValueError or its own status errors
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise DetectorError(f"mediapipe detector: {model_path}: cannot start ({first})") from err

    def detect(self, frame: np.ndarray, rgb: bool = False) -> list[Box]:
        import cv2

        image = frame if rgb else cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        mp_image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(image))
        # MediaPipe logs a memory-alignment warning from C++ on its detections; one graph: threads
        # sharing the detector take turns.
        with self._turn, native_quiet():
            result = self._detector.detect(mp_image)
        h, w = frame.shape[:2]
        boxes = []
        for det in result.detections:
            b = det.bounding_box
            score = det.categories[0].score if det.categories else 1.0
            box = Box(
                float(b.origin_x), float(b.origin_y), float(b.width), float(b.height), float(score)
            ).clip(w, h)
            if box.w >= 1 and box.h >= 1:
                boxes.append(box)
        return boxes

    def close(self) -> None:
        if getattr(self, "_detector", None) is not None:
            with native_quiet():
                self._detector.close()
            self._detector = None

    def __del__(self):
        # A safety net only: callers close explicitly; at interpreter exit mediapipe may be gone already.
        with contextlib.suppress(Exception):
            self.close()


# -- choosing one ----------------------------------------------------------------------------------------
def make_detector(name: str = "auto", model_path: str | Path | None = None, threads: int = 1) -> Choice:
    """Build the detector `name`; for `auto` the best one that runs here, with the reason for the choice."""
    from fer_edge.blazeface import BlazeFaceDetector

    if name not in NAMES:
        raise DetectorError(f"unknown detector {name!r}: use one of {', '.join(NAMES)}")
    if name == "haar":
        return Choice(HaarDetector(), "asked for")
    model = find_detector_model(model_path)
    if name in ("mediapipe", "blazeface"):
        if model is None:
            raise DetectorError(f"{name} detector: no BlazeFace model file found; {FETCH_HINT}")
        detector = MediaPipeDetector(model) if name == "mediapipe" else BlazeFaceDetector(model, threads)
        return Choice(detector, "asked for")
    if model is None:
        why = haar_unavailable()
        if why:
            raise DetectorError(f"no face detector: no BlazeFace model file found and {why}; {FETCH_HINT}")
        return Choice(HaarDetector(), f"no BlazeFace model file found ({FETCH_HINT} for a better detector)")
    why = mediapipe_unavailable()
    if why is None:
        try:
            return Choice(MediaPipeDetector(model), "mediapipe runs here")
        except DetectorError as err:
            why = str(err)
    return Choice(BlazeFaceDetector(model, threads), f"{why}; same model through LiteRT")
