"""BlazeFace short-range through LiteRT with our own decoding: MediaPipe's face detector without MediaPipe.

It reproduces MediaPipe's graph for `blaze_face_short_range.tflite`: a 128x128 letterbox of the RGB
frame scaled to [-1, 1], 896 SSD anchors (strides 8, 16, 16, 16; two and six anchors per cell), box
offsets divided by 128, sigmoid scores, and weighted non-maximum suppression. It runs wherever LiteRT
does, including a Pi 4 on which mediapipe's own library cannot load.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from fer_edge.boxes import Box, iou_matrix
from fer_edge.errors import DetectorError, ModelError
from fer_edge.runtime import load_interpreter

INPUT_SIZE = 128
STRIDES = (8, 16, 16, 16)
MIN_SCORE = 0.5
NMS_IOU = 0.3


def ssd_anchors(input_size: int = INPUT_SIZE, strides=STRIDES) -> np.ndarray:
    """Anchor centres (A, 2) in [0, 1], as MediaPipe's SsdAnchorsCalculator makes them for BlazeFace.

    Consecutive layers with the same stride share one grid, each layer adding two anchors per cell
    (fixed anchor size, so only the centres matter).
    """
    centres = []
    layer = 0
    while layer < len(strides):
        stride = strides[layer]
        per_cell = 0
        while layer < len(strides) and strides[layer] == stride:
            per_cell += 2
            layer += 1
        cells = int(np.ceil(input_size / stride))
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        grid = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], axis=-1).reshape(-1, 2)
        centres.append(np.repeat(grid, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


def letterbox(frame_rgb: np.ndarray, size: int = INPUT_SIZE) -> tuple[np.ndarray, float, float, float]:
    """The frame scaled to fit `size` x `size`, centred on black; returns it, the scale, the offsets.

    One bilinear affine warp with sub-pixel offsets, as MediaPipe's ImageToTensorCalculator does on
    the CPU: with it our scores match MediaPipe's to the second decimal, and faces near the score
    threshold are kept or dropped alike.
    """
    import cv2

    h, w = frame_rgb.shape[:2]
    scale = size / max(h, w)
    pad_x, pad_y = (size - scale * w) / 2, (size - scale * h) / 2
    matrix = np.array([[scale, 0.0, pad_x], [0.0, scale, pad_y]], dtype=np.float32)
    out = cv2.warpAffine(
        frame_rgb, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    return out, scale, pad_x, pad_y


def weighted_nms(corners: np.ndarray, scores: np.ndarray, threshold: float = NMS_IOU) -> list[tuple]:
    """MediaPipe's weighted NMS: each kept face is the score-weighted mean of the boxes it suppresses."""
    order = np.argsort(-scores)
    corners, scores = corners[order], scores[order]
    remaining = np.ones(len(scores), dtype=bool)
    out = []
    overlaps = iou_matrix(corners, corners)
    for i in range(len(scores)):
        if not remaining[i]:
            continue
        group = remaining & (overlaps[i] > threshold)
        group[i] = True
        weights = scores[group]
        box = (corners[group] * weights[:, None]).sum(axis=0) / weights.sum()
        out.append((box, float(scores[i])))
        remaining &= ~group
    return out


MAX_BOX_OFFSET = 8.0 * INPUT_SIZE


class BlazeFaceDetector:
    """Faces in a frame from the BlazeFace short-range .tflite, decoded here."""

    name = "blazeface"

    def __init__(self, model_path: str | Path, threads: int = 1, min_score: float = MIN_SCORE):
        try:
            self._interpreter = load_interpreter(model_path, threads)
        except ModelError as err:
            raise DetectorError(f"face detector: {err}") from err
        inputs = self._interpreter.get_input_details()
        outputs = self._interpreter.get_output_details()
        shape = tuple(int(x) for x in inputs[0]["shape"]) if len(inputs) == 1 else ()
        by_width = {int(o["shape"][-1]): o["index"] for o in outputs if len(o["shape"]) == 3}
        if shape != (1, INPUT_SIZE, INPUT_SIZE, 3) or 16 not in by_width or 1 not in by_width:
            raise DetectorError(
                f"{model_path}: not a BlazeFace short-range model (128x128 in, 896 boxes out)"
            )
        self._input = inputs[0]["index"]
        self._boxes, self._scores = by_width[16], by_width[1]
        self.anchors = ssd_anchors()
        self.min_score = min_score
        self.model_path = Path(model_path)
        self._turn = threading.Lock()  # one interpreter: threads sharing the detector take turns

    def detect(self, frame: np.ndarray, rgb: bool = False) -> list[Box]:
        """Face boxes in `frame` (BGR unless `rgb`), in frame pixels, best first."""
        import cv2

        h, w = frame.shape[:2]
        image = frame if rgb else cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        boxed, scale, pad_x, pad_y = letterbox(image)
        tensor = (boxed.astype(np.float32) / 127.5 - 1.0)[None]
        with self._turn:
            self._interpreter.set_tensor(self._input, tensor)
            self._interpreter.invoke()
            raw = self._interpreter.get_tensor(self._boxes)[0]
            logits = self._interpreter.get_tensor(self._scores)[0, :, 0]
        if not (np.isfinite(raw).all() and np.isfinite(logits).all()):  # NaN boxes escape NMS: 446 faces
            raise DetectorError(f"{self.model_path}: gives NaN or infinite boxes; not a face detector")
        # A box lies within a few input widths of its anchor; a value far past that (a damaged model)
        # would overflow float32 in the box areas.
        raw = np.clip(raw, -MAX_BOX_OFFSET, MAX_BOX_OFFSET)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -80.0, 80.0)))
        keep = scores >= self.min_score
        if not keep.any():
            return []
        centres = raw[keep, :2] / INPUT_SIZE + self.anchors[keep]
        sizes = raw[keep, 2:4] / INPUT_SIZE
        corners = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1) * INPUT_SIZE
        boxes = []
        for (x0, y0, x1, y1), score in weighted_nms(corners, scores[keep]):
            # Undo the letterbox: from 128x128 input pixels back to frame pixels.
            fx0, fy0 = (x0 - pad_x) / scale, (y0 - pad_y) / scale
            fx1, fy1 = (x1 - pad_x) / scale, (y1 - pad_y) / scale
            box = Box(fx0, fy0, fx1 - fx0, fy1 - fy0, score).clip(w, h)
            if box.w >= 1 and box.h >= 1:
                boxes.append(box)
        return boxes

    def close(self) -> None:
        self._interpreter = None
