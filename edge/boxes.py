"""Face boxes in frame pixels, and the small geometry the pipeline needs on them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Box:
    """A face box in frame pixels: top-left corner, width and height; `score` is the detector's."""

    x: float
    y: float
    w: float
    h: float
    score: float = 1.0

    def as_list(self) -> list[int]:
        return [int(round(self.x)), int(round(self.y)), int(round(self.w)), int(round(self.h))]

    def clip(self, width: int, height: int) -> Box:
        x0, y0 = max(0.0, self.x), max(0.0, self.y)
        x1, y1 = min(float(width), self.x + self.w), min(float(height), self.y + self.h)
        return Box(x0, y0, max(0.0, x1 - x0), max(0.0, y1 - y0), self.score)

    @property
    def area(self) -> float:
        return self.w * self.h


def iou(a: Box, b: Box) -> float:
    w = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    h = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return float(inter / (a.area + b.area - inter))


def iou_matrix(boxes: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of every row of `boxes` with every row of `others`, both (N, 4) as x0, y0, x1, y1."""
    x0 = np.maximum(boxes[:, None, 0], others[None, :, 0])
    y0 = np.maximum(boxes[:, None, 1], others[None, :, 1])
    x1 = np.minimum(boxes[:, None, 2], others[None, :, 2])
    y1 = np.minimum(boxes[:, None, 3], others[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area_b = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def keep_largest(boxes: list[Box], max_faces: int | None) -> list[Box]:
    """The `max_faces` largest boxes (the nearest faces), in reading order (top to bottom, left to right)."""
    if max_faces is not None and max_faces > 0 and len(boxes) > max_faces:
        boxes = sorted(boxes, key=lambda b: b.area, reverse=True)[:max_faces]
    return sorted(boxes, key=lambda b: (round(b.y / max(b.h, 1.0)), b.x))
