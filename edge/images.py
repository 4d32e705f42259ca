"""Finding and reading image files (the inputs of `predict` and of `run --source DIR`)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from fer_edge.errors import SourceError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def list_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Image files named or found (recursively, sorted) in the folders named; an error for a missing path."""
    out: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.is_file() and is_image(p)))
        elif path.is_file():
            out.append(path)
        else:
            raise SourceError(f"{path}: no such file or folder")
    if not out:
        raise SourceError(f"no images found in {', '.join(str(i) for i in inputs)}")
    return out


def read_image(path: Path, gray: bool = False) -> np.ndarray | None:
    """The image as BGR (or gray) uint8, or None when OpenCV cannot decode it."""
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else np.zeros(0, np.uint8)
    if data.size == 0:
        return None
    return cv2.imdecode(data, cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR)
