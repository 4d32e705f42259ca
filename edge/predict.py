"""`fer-edge predict`: emotions of the faces in image files, or of images that are face crops already."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fer_edge.errors import printable
from fer_edge.images import UnreadableImage, read_image
from fer_edge.recognizer import EmotionRecognizer

CHUNK = 64


def predict_crops(fer: EmotionRecognizer, paths: list[Path], failed: list[str]) -> Iterator[dict]:
    """One record per crop: each image is a whole face, resized to the model's input."""
    clf = fer.classifier
    for start in range(0, len(paths), CHUNK):
        chunk = paths[start : start + CHUNK]
        faces, kept = [], []
        for path in chunk:
            try:
                image = read_image(path, gray=clf.channels == 1)
            except UnreadableImage as err:
                failed.append(str(err))
                continue
            if clf.channels == 3:
                import cv2

                image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            faces.append(_fit(image, clf.input_size))
            kept.append(path)
        if not kept:
            continue
        probs = clf.predict(np.stack(faces))
        for path, p in zip(kept, probs, strict=True):
            k = int(np.argmax(p))
            yield {
                "path": str(path),
                "label": clf.labels[k],
                "score": round(float(p[k]), 4),
                "scores": {name: round(float(v), 4) for name, v in zip(clf.labels, p, strict=True)},
            }


def predict_frames(fer: EmotionRecognizer, paths: list[Path], failed: list[str]) -> Iterator[dict]:
    """One record per image: every face found in it, with box, label and scores."""
    for path in paths:
        try:
            image = read_image(path)
        except UnreadableImage as err:
            failed.append(str(err))
            continue
        faces = fer(image)
        yield {
            "path": str(path),
            "size": [image.shape[1], image.shape[0]],
            "faces": [f.to_dict() for f in faces],
        }


def _fit(image: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if image.shape[:2] == (size, size):
        return image
    interpolation = cv2.INTER_AREA if max(image.shape[:2]) > size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def format_record(record: dict) -> str:
    path = printable(record["path"])
    if "faces" not in record:
        return f"{path}\t{record['label']}\t{record['score']:.2f}"
    if not record["faces"]:
        return f"{path}\tno face"
    parts = [f"{f['label']} {f['score']:.2f} at {f['box']}" for f in record["faces"]]
    return f"{path}\t{len(parts)} face(s): " + "; ".join(parts)


def run_predict(
    fer: EmotionRecognizer, paths: list[Path], crops: bool, as_json: bool, out=None
) -> tuple[int, int]:
    """Print one line per image; returns (images done, images that could not be read)."""
    out = out or sys.stdout
    failed: list[str] = []
    records = predict_crops(fer, paths, failed) if crops else predict_frames(fer, paths, failed)
    done = faces = 0
    start = time.perf_counter()
    with _progress(len(paths)) as advance:
        for record in records:
            print(json.dumps(record) if as_json else format_record(record), file=out, flush=as_json)
            done += 1
            faces += len(record["faces"]) if "faces" in record else 1
            advance()
    for reason in failed:
        print(f"warning: {printable(reason)}; skipped", file=sys.stderr)
    if len(paths) > 1:
        seconds = time.perf_counter() - start
        print(
            f"summary: {done} image(s), {faces} face(s), {len(failed)} unreadable, {seconds:.1f} s",
            file=sys.stderr,
        )
    return done, len(failed)


class _progress:
    """A Rich progress bar on stderr for long runs in a terminal; nothing otherwise."""

    def __init__(self, total: int):
        self.total = total
        self._bar = None

    def __enter__(self):
        if self.total >= 50 and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import Progress

            self._bar = Progress(console=Console(stderr=True), transient=True)
            self._bar.start()
            task = self._bar.add_task("predicting", total=self.total)
            return lambda: self._bar.advance(task)
        return lambda: None

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.stop()
