"""From a frame and face boxes to the model's input: square crops with a margin, gray, resized."""

from __future__ import annotations

import numpy as np

from fer_edge.boxes import Box


def square_crop(frame: np.ndarray, box: Box, margin: float) -> np.ndarray:
    """A square around `box`, `margin` of its side larger on each side; edges past the frame repeat.

    Only the part inside the frame is copied and then padded, so memory follows the square, which is
    at most twice the frame's larger side (a caller's box many times the frame would otherwise pad
    into gigabytes) and always overlaps the frame.
    """
    import cv2

    h, w = frame.shape[:2]
    side = min(max(box.w, box.h) * (1.0 + 2.0 * margin), 2.0 * max(h, w))
    s = max(1, int(round(side)))
    x0 = int(round(box.x + box.w / 2 - s / 2))
    y0 = int(round(box.y + box.h / 2 - s / 2))
    x0, y0 = min(max(x0, 1 - s), w - 1), min(max(y0, 1 - s), h - 1)
    xa, ya, xb, yb = max(0, x0), max(0, y0), min(w, x0 + s), min(h, y0 + s)
    crop = frame[ya:yb, xa:xb]
    pads = (ya - y0, y0 + s - yb, xa - x0, x0 + s - xb)  # top, bottom, left, right
    if any(pads):
        crop = cv2.copyMakeBorder(crop, *pads, cv2.BORDER_REPLICATE)
    return crop


def face_batch(
    frame: np.ndarray,
    boxes: list[Box],
    size: int = 48,
    channels: int = 1,
    margin: float = 0.1,
    rgb: bool = False,
) -> np.ndarray:
    """uint8 crops (N, size, size, channels) of every box, in the model's colour (gray or RGB)."""
    import cv2

    out = np.empty((len(boxes), size, size, channels), dtype=np.uint8)
    for i, box in enumerate(boxes):
        crop = square_crop(frame, box, margin)
        if crop.ndim == 2:
            crop = crop if channels == 1 else cv2.cvtColor(crop, cv2.COLOR_GRAY2RGB)
        elif channels == 1:
            crop = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY if rgb else cv2.COLOR_BGR2GRAY)
        elif not rgb:
            crop = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
        interpolation = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR
        resized = cv2.resize(crop, (size, size), interpolation=interpolation)
        out[i] = resized.reshape(size, size, channels)
    return out
