"""A reproducible 640x480 video for `fer-bench pipeline`: FER2013 faces moving over a textured background.

The committed pipeline figures are measured on this clip, so anyone can make the same one from the same
data (`fer-bench clip --data ../shared/fer2013 --out clip.avi`).
"""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np

from fer_bench.errors import BenchError
from fer_edge.capture import frames_in_file

WIDTH, HEIGHT = 640, 480
# (x, y, size) of each face in the first frame; the first two drift across the frame.
PLACES = ((50, 40, 190), (340, 30, 170), (400, 270, 180))


def make_clip(data: str | Path, out: Path, frames: int = 300, fps: float = 15.0, seed: int = 0) -> Path:
    import cv2

    from fer_train.data import load

    test = load(data, "test")
    rng = np.random.default_rng(seed)
    faces = test.images[rng.choice(len(test), size=len(PLACES) * 10, replace=False)]
    background = _background(rng)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), fps, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise BenchError(f"{out}: OpenCV cannot write an MJPG video here")
    try:
        for i in range(frames):
            frame = background.copy()
            for k, (x, y, size) in enumerate(PLACES):
                face = faces[k * 10 + (i // 30) % 10]  # a new face every two seconds
                dx = int(40 * np.sin(i / 20 + k)) if k < 2 else 0
                big = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)
                frame[y : y + size, x + dx : x + dx + size] = cv2.cvtColor(big, cv2.COLOR_GRAY2BGR)
            writer.write(frame)
    finally:
        writer.release()
    written = frames_in_file(out)
    if written < frames:
        raise OSError(errno.EIO, f"only {written} of {frames} frames reached the file")
    return out


def _background(rng: np.random.Generator) -> np.ndarray:
    import cv2

    # A soft, low-contrast room-like backdrop: busy enough not to be flat, calm enough that the face
    # detector sees the faces, as it would in front of a wall.
    noise = rng.integers(0, 256, size=(HEIGHT // 80, WIDTH // 80, 3), dtype=np.uint8)
    canvas = cv2.resize(noise, (WIDTH, HEIGHT), interpolation=cv2.INTER_CUBIC)
    return (canvas.astype(np.float32) * 0.3 + 70).astype(np.uint8)
