"""Whole-pipeline speed on a video or a folder of images: FPS and where each frame's time goes.

The frames go through fer-edge's own live loop (`fer_edge.live.process`): the same detector, tracking
(`--detect-every`), crops, batched classifier and overlay that `fer-edge run` uses, so the figures are
what users get, without a window. Its stages: capture (the next frame from the source), detect (the
face detector, or the tracker between detections), classify (crops and the classifier, one batch per
frame) and output (the overlay drawn on a copy of the frame).

A peer is measured in the same loop with its own classifier (not its package's pipeline, which has
its own detector), so differences in FPS are the classifiers' alone.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from fer_bench.errors import BenchError
from fer_bench.latency import stats
from fer_bench.models import OURS, ModelEntry, open_ours
from fer_edge.capture import DEFAULT_OPEN_TIMEOUT_S
from fer_edge.live import STAGES, LiveOptions, Stats, process

__all__ = ["STAGES", "Settings", "run_one"]


@dataclass(frozen=True)
class Settings:
    """How the pipeline runs; the CLI's defaults are these."""

    detector: str = "auto"
    detector_model: str | None = None
    threads: int = 1
    max_frames: int = 300
    warmup: int = 3  # frames run first and not timed (model planning, caches)
    detect_every: int = 1
    open_timeout: float = DEFAULT_OPEN_TIMEOUT_S  # a camera, stream or named pipe that does not answer


class _FrameTimes(Stats):
    """The live loop's statistics, kept per frame as well as summed."""

    def __init__(self):
        super().__init__()
        self.samples: dict[str, list[float]] = {s: [] for s in STAGES}

    def add(self, stage: str, seconds: float) -> None:
        super().add(stage, seconds)
        self.samples[stage].append(seconds * 1e3)


class _DrawOnly:
    """An output that draws every frame's overlay and keeps only counts: faces in each frame, and
    detector runs so far (the tracker carries the faces in between)."""

    draws = True

    def __init__(self, stats: Stats, progress=None):
        self.stats = stats
        self.faces: list[int] = []
        self.detections: list[int] = []
        self.progress = progress

    def write(self, frame, faces, image) -> bool:
        self.faces.append(len(faces))
        self.detections.append(self.stats.detections)
        if self.progress is not None:
            self.progress(len(self.faces))
        return True


def open_classifier(entry: ModelEntry, threads: int):
    if entry.origin == OURS:
        return open_ours(entry.path, threads)
    from fer_bench.peer import open_peer

    return open_peer(entry, threads)


def check_source(source: str, settings: Settings = Settings()) -> None:
    """Open the source and the face detector once and close them: `fer-bench all` does this first, so
    that a mistyped --source is said before the latency and accuracy benchmarks spend their minutes."""
    from fer_edge.capture import open_source
    from fer_edge.detectors import make_detector

    open_source(str(source), open_timeout=settings.open_timeout).close()
    make_detector(settings.detector, settings.detector_model, settings.threads).detector.close()


def run_one(entry: ModelEntry, source: str, settings: Settings = Settings(), progress=None) -> dict:
    """Run the live loop with one classifier over the source; the first `warmup` frames are not counted."""
    from fer_edge.capture import describe, open_source
    from fer_edge.recognizer import EmotionRecognizer

    s = settings
    times = _FrameTimes()
    sink = _DrawOnly(times, progress)
    options = LiveOptions(source=str(source), detect_every=s.detect_every, max_frames=s.max_frames + s.warmup)
    with contextlib.ExitStack() as opened:
        # A missing source is refused before a detector starts.
        frames = open_source(str(source), open_timeout=s.open_timeout)
        opened.callback(frames.close)
        fer = EmotionRecognizer(open_classifier(entry, s.threads), s.detector, s.detector_model, s.threads)
        opened.callback(fer.close)
        detector_name = type(fer.detector).__name__
        process(fer, frames.frames(), options, sink, times)
    warmup = s.warmup
    if len(sink.faces) <= warmup:
        raise BenchError(
            f"{describe(str(source))}: {len(sink.faces)} frame(s), none left to time after {warmup} "
            "warm-up frame(s); use a longer source or --warmup 0"
        )
    stages = {s: np.asarray(times.samples[s][warmup:]) for s in STAGES}
    frame_ms = np.sum(list(stages.values()), axis=0)
    faces = np.asarray(sink.faces[warmup:])
    return {
        "model": entry.key,
        "frames": int(len(faces)),
        "fps": float(1e3 / frame_ms.mean()),
        "frame_ms": stats(frame_ms),
        "stages_ms": {s: stats(v) for s, v in stages.items()},
        "faces_per_frame": float(faces.mean()),
        "frames_with_faces": int((faces > 0).sum()),
        "max_faces": int(faces.max()),
        "detections": sink.detections[-1] - (sink.detections[warmup - 1] if warmup else 0),
        "detector": detector_name,
        "detector_reason": fer.detector_reason,
        "unreadable_frames": int(frames.skipped),
    }
