"""Drawing the results on a frame: a box, the label and its confidence per face, and the frame rate."""

from __future__ import annotations

import numpy as np

# BGR colours per label, so a glance tells the emotion before the text is read.
COLOURS = {
    "angry": (40, 40, 230),
    "disgust": (40, 140, 40),
    "fear": (150, 60, 150),
    "happy": (40, 210, 250),
    "sad": (200, 120, 40),
    "surprise": (230, 170, 250),
    "neutral": (200, 200, 200),
}


def draw(frame: np.ndarray, faces, fps: float | None = None) -> np.ndarray:
    """Draw on `frame` in place (and return it)."""
    import cv2

    scale = max(0.4, min(frame.shape[:2]) / 800)
    thickness = max(1, int(round(2 * scale)))
    for face in faces:
        x, y, w, h = face.box.as_list()
        colour = COLOURS.get(face.label, (0, 255, 0))
        cv2.rectangle(frame, (x, y), (x + w, y + h), colour, thickness)
        text = f"{face.label} {face.score:.0%}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        top = y - th - base - 4 if y - th - base - 4 >= 0 else y + h
        cv2.rectangle(frame, (x, top), (x + tw + 4, top + th + base + 4), colour, -1)
        cv2.putText(
            frame,
            text,
            (x + 2, top + th + 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (0, 0, 0),
            thickness,
            cv2.LINE_AA,
        )
    if fps is not None:
        cv2.putText(
            frame,
            f"{fps:.1f} FPS",
            (8, int(24 * scale) + 8),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            (0, 255, 0),
            thickness,
            cv2.LINE_AA,
        )
    return frame
