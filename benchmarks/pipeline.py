"""Whole-pipeline speed on a video or a folder of images: FPS and where each frame's time goes.

Every frame passes the stages an app runs, each timed on its own: decode (the next frame from the
source), detect (the face detector), preprocess (square crops with a margin, gray, resized), classify
(all faces of the frame in one batch) and draw (boxes and labels on the frame). The stages come from
the edge runtime (fer_edge), so this measures what `fer-edge run` does, without the display.

The peer's own pipeline (`fer.FER().detect_emotions`) does not run with OpenCV 5 (cv2.CascadeClassifier
is gone), so the peer is measured with our detector and crops and its own classifier.
"""

from __future__ import annotations

import time

import numpy as np

from fer_bench.errors import BenchError
from fer_bench.latency import stats
from fer_bench.models import OURS, ModelEntry, open_entry
from fer_train.spec import CLASSES

STAGES = ("decode", "detect", "preprocess", "classify", "draw")


def open_detector(name: str, model: str | None, threads: int):
    """The edge runtime's detector and the reason it was chosen (for `auto`)."""
    from fer_edge.detectors import make_detector

    choice = make_detector(name, model, threads)
    return choice.detector, choice.reason


def crop_spec(entry: ModelEntry, clf) -> tuple[int, int]:
    """(size, channels) the classifier takes its crops at."""
    if entry.origin != OURS:
        from fer_bench.peer import PEER_SIZE

        return PEER_SIZE, 1
    return clf.clf.input_size, clf.clf.channels


def run_one(
    entry: ModelEntry,
    source: str,
    detector: str = "auto",
    detector_model: str | None = None,
    threads: int = 1,
    max_frames: int | None = 300,
    warmup: int = 3,
    margin: float = 0.1,
    min_face: int = 16,
    progress=None,
) -> dict:
    """Run the pipeline with one classifier over the source; the first `warmup` frames are not counted."""
    from fer_edge.capture import open_source
    from fer_edge.crops import face_batch
    from fer_edge.overlay import draw
    from fer_edge.recognizer import Face

    det, reason = open_detector(detector, detector_model, threads)
    clf = open_entry(entry, threads)
    size, channels = crop_spec(entry, clf)
    frames_source = open_source(str(source))
    times = {s: [] for s in STAGES}
    faces_per_frame: list[int] = []
    seen = 0
    wall_start = None
    try:
        frames = iter(frames_source.frames())
        while max_frames is None or seen < max_frames + warmup:
            t0 = time.perf_counter()
            frame = next(frames, None)
            if frame is None:
                break
            t1 = time.perf_counter()
            boxes = [b for b in det.detect(frame.image) if min(b.w, b.h) >= min_face]
            t2 = time.perf_counter()
            crops = face_batch(frame.image, boxes, size, channels, margin)
            t3 = time.perf_counter()
            probs = clf.predict(crops) if len(boxes) else np.zeros((0, len(CLASSES)), np.float32)
            t4 = time.perf_counter()
            faces = [_face(Face, box, p) for box, p in zip(boxes, probs)]
            draw(frame.image, faces)
            t5 = time.perf_counter()
            seen += 1
            if seen == warmup + 1:
                wall_start = t0
            if seen > warmup:
                for stage, dt in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                    times[stage].append(dt * 1e3)
                faces_per_frame.append(len(boxes))
            if progress is not None:
                progress(seen)
        wall = time.perf_counter() - wall_start if wall_start is not None else 0.0
    finally:
        frames_source.close()
        det.close()
    if not faces_per_frame:
        raise BenchError(
            f"{source}: {seen} frame(s), none left to time after {warmup} warm-up frame(s); "
            "use a longer source or --warmup 0"
        )
    return _result(entry, times, faces_per_frame, wall, reason, type(det).__name__, frames_source.skipped)


def _face(Face, box, probs: np.ndarray):
    k = int(np.argmax(probs))
    return Face(box, CLASSES[k], float(probs[k]), {c: float(v) for c, v in zip(CLASSES, probs)})


def _result(entry, times, faces_per_frame, wall, reason, detector, skipped) -> dict:
    frame_ms = np.sum([np.asarray(times[s]) for s in STAGES], axis=0)
    faces = np.asarray(faces_per_frame)
    return {
        "model": entry.key,
        "frames": int(len(faces)),
        "fps": float(len(faces) / wall) if wall > 0 else 0.0,
        "frame_ms": stats(frame_ms),
        "stages_ms": {s: stats(np.asarray(times[s])) for s in STAGES},
        "faces_per_frame": float(faces.mean()),
        "frames_with_faces": int((faces > 0).sum()),
        "max_faces": int(faces.max()),
        "detector": detector,
        "detector_reason": reason,
        "unreadable_frames": int(skipped),
    }
