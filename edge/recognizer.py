"""The Python API an app embeds: a frame in, faces with boxes, labels and scores out.

from fer_edge import EmotionRecognizer
with EmotionRecognizer() as fer:              # the shipped model, the best detector that runs here
    for face in fer(frame_bgr):
        print(face.box, face.label, face.score)
    fer(frame_rgb, color="rgb", boxes=[(x, y, w, h)])   # boxes found by your own detector
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_edge.boxes import Box, keep_largest
from fer_edge.classifier import Classifier, resolve_model
from fer_edge.crops import face_batch


@dataclass
class Face:
    box: Box
    label: str
    score: float
    scores: dict[str, float]
    track: int | None = None

    def to_dict(self) -> dict:
        out = {"box": self.box.as_list(), "label": self.label, "score": round(self.score, 4)}
        out["scores"] = {k: round(v, 4) for k, v in self.scores.items()}
        out["detector_score"] = round(float(self.box.score), 4)
        if self.track is not None:
            out["track"] = self.track
        return out


def as_boxes(boxes) -> list[Box]:
    """Boxes given by the caller's own detector, as Box or (x, y, w, h) in frame pixels."""
    out = []
    for b in boxes:
        if not isinstance(b, Box):
            try:
                x, y, w, h = (float(v) for v in b)
            except (TypeError, ValueError):
                raise ValueError(f"a box is (x, y, w, h) in frame pixels, got {b!r}") from None
            b = Box(x, y, w, h)
        if not all(np.isfinite([b.x, b.y, b.w, b.h])) or b.w < 0 or b.h < 0:
            raise ValueError(f"a box is (x, y, w, h) with a finite size of at least 0, got {b}")
        out.append(b)
    return out


class EmotionRecognizer:
    """Detects faces in a frame (unless given boxes) and classifies them all in one batch.

    model: a FER .tflite (default: the shipped one). detector: auto, mediapipe, blazeface, haar, or
    None to require boxes on every call. max_faces keeps the largest faces; min_face drops boxes
    smaller than that many pixels (too small to read an expression from).
    """

    def __init__(
        self,
        model: str | Path | Classifier | None = None,
        detector: str | None = "auto",
        detector_model: str | Path | None = None,
        threads: int = 1,
        margin: float = 0.1,
        max_faces: int | None = None,
        min_face: int = 16,
        labels: str | Path | None = None,
    ):
        # As --margin: below 0 the crop shrinks to nothing, past 1 it is mostly not face.
        if not 0.0 <= margin <= 1.0:
            raise ValueError(f"margin is the share of the face box added on each side, 0 to 1; got {margin}")
        if max_faces is not None and max_faces < 1:
            raise ValueError(f"max_faces is at least 1 (None for every face); got {max_faces}")
        if not min_face >= 0:  # as --min-face; a negative size was taken as no minimum
            raise ValueError(f"min_face is a face's smallest side in pixels, 0 or more; got {min_face}")
        self.classifier = (
            model if isinstance(model, Classifier) else Classifier(resolve_model(model), threads, labels)
        )
        self.detector = None
        self.detector_reason = ""
        self._closed = False
        if detector is not None:
            from fer_edge.detectors import make_detector

            choice = make_detector(detector, detector_model, threads)
            self.detector, self.detector_reason = choice.detector, choice.reason
        self.margin = margin
        self.max_faces = max_faces
        self.min_face = min_face

    @property
    def labels(self) -> list[str]:
        return self.classifier.labels

    def detect(self, frame: np.ndarray, color: str = "bgr") -> list[Box]:
        if self._closed:  # its detector is released; "no detector" would blame the wrong thing
            raise ValueError("this recognizer is closed: detect inside its `with` block, or make a new one")
        if self.detector is None:
            raise ValueError("this recognizer has no detector: pass boxes")
        if frame.ndim == 2:
            import cv2

            frame, color = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR), "bgr"
        boxes = self.detector.detect(frame, rgb=color == "rgb")
        return self.select(boxes)

    def select(self, boxes: list[Box]) -> list[Box]:
        boxes = [b for b in boxes if min(b.w, b.h) >= self.min_face]
        return keep_largest(boxes, self.max_faces)

    def classify(self, frame: np.ndarray, boxes: list[Box], color: str = "bgr") -> np.ndarray:
        """Probabilities (N, classes) for the faces at `boxes`, in one batch."""
        clf = self.classifier
        crops = face_batch(frame, boxes, clf.input_size, clf.channels, self.margin, rgb=color == "rgb")
        return clf.predict(crops)

    def faces(self, boxes: list[Box], probs: np.ndarray, tracks=None) -> list[Face]:
        out = []
        for i, box in enumerate(boxes):
            p = probs[i]
            k = int(np.argmax(p))
            scores = {name: float(v) for name, v in zip(self.labels, p, strict=True)}
            out.append(Face(box, self.labels[k], float(p[k]), scores, tracks[i].id if tracks else None))
        return out

    def __call__(self, frame: np.ndarray, boxes=None, color: str = "bgr") -> list[Face]:
        """Faces in a BGR (or `color="rgb"`) frame, gray or with alpha too; `boxes` as (x, y, w, h) skip
        detection (a box wholly outside the frame is dropped). ValueError for anything else than a
        uint8 image, or a box that is not four finite numbers."""
        if color not in ("bgr", "rgb"):
            raise ValueError("color must be 'bgr' or 'rgb'")
        frame = np.asarray(frame)
        if frame.ndim == 3 and frame.shape[2] == 1:
            frame = frame[:, :, 0]  # a gray frame with its channel axis
        if (
            frame.ndim not in (2, 3)
            or frame.dtype != np.uint8
            or frame.size == 0
            or frame.shape[2:] not in ((), (3,), (4,))
        ):
            raise ValueError(
                f"frame must be a uint8 image (H, W), (H, W, 3) or (H, W, 4), got {frame.dtype} {frame.shape}"
            )
        if boxes is None:
            found = self.detect(frame, color)
        else:  # a box wholly outside the frame holds no face, only the frame's repeated edge
            height, width = frame.shape[:2]
            found = self.select([b for b in as_boxes(boxes) if b.clip(width, height).area > 0])
        return self.faces(found, self.classify(frame, found, color))

    def close(self) -> None:
        if self.detector is not None:
            self.detector.close()
            self.detector = None
            self._closed = True  # detection is over; classifying the caller's boxes still works

    def __enter__(self) -> EmotionRecognizer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
