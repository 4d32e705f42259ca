"""Per-face tracks across frames, so scores can be smoothed and labels do not flicker.

Greedy IoU matching is enough at camera frame rates: a face moves little between two frames, and a
Pi has no time to spare for anything heavier.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fer_edge.boxes import Box, iou


@dataclass
class Track:
    id: int
    box: Box
    scores: np.ndarray
    missed: int = 0


class Tracker:
    """Matches each frame's boxes to tracks by IoU and keeps an exponential moving average of scores.

    `smoothing` is the weight of the past (0 = no smoothing); a track unseen for `max_missed`
    detections is dropped.
    """

    def __init__(self, smoothing: float = 0.6, min_iou: float = 0.3, max_missed: int = 5):
        if not 0.0 <= smoothing < 1.0:
            raise ValueError("smoothing must be in [0, 1)")
        self.smoothing = smoothing
        self.min_iou = min_iou
        self.max_missed = max_missed
        self.tracks: list[Track] = []
        self._next_id = 1

    def update(self, boxes: list[Box], scores: np.ndarray) -> list[Track]:
        """The track of each box (same order), after folding the box's scores into it."""
        pairs = sorted(
            ((iou(t.box, b), ti, bi) for ti, t in enumerate(self.tracks) for bi, b in enumerate(boxes)),
            reverse=True,
        )
        assigned: dict[int, Track] = {}
        used = set()
        for overlap, ti, bi in pairs:
            if overlap < self.min_iou:
                break
            if ti in used or bi in assigned:
                continue
            used.add(ti)
            assigned[bi] = self.tracks[ti]
        for t_index, track in enumerate(self.tracks):
            if t_index not in used:
                track.missed += 1
        out = []
        for bi, box in enumerate(boxes):
            track = assigned.get(bi)
            if track is None:
                track = Track(self._next_id, box, scores[bi].astype(np.float32))
                self._next_id += 1
                self.tracks.append(track)
            else:
                a = self.smoothing
                track.scores = (a * track.scores + (1 - a) * scores[bi]).astype(np.float32)
                track.box, track.missed = box, 0
            out.append(track)
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        return out

    def boxes(self) -> list[Box]:
        """The boxes of the tracks seen in the last detection: what frames between detections reuse."""
        return [t.box for t in self.tracks if t.missed == 0]
