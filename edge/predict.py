"""`fer-edge predict`: emotions of the faces in image files, or of images that are face crops already."""

from __future__ import annotations

import json
import struct
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_edge.errors import SourceError, printable, warn
from fer_edge.images import UnreadableImage, read_image
from fer_edge.overlay import draw
from fer_edge.recognizer import EmotionRecognizer
from fer_edge.signals import stop_signals_deferred
from fer_train.files import ANNOTATED_MARK, refuse_overwrite, write_bytes  # pure Python, as edge needs

CHUNK = 64


def predict_crops(fer: EmotionRecognizer, paths: list[Path], failed: list[str]) -> Iterator[dict]:
    """One record per crop: each image is a whole face, resized to the model's input."""
    clf = fer.classifier
    for start in range(0, len(paths), CHUNK):
        chunk = paths[start : start + CHUNK]
        faces, kept = [], []
        for path in chunk:
            try:
                image = read_image(path, gray=clf.channels == 1, warn=warn)
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


def predict_frames(
    fer: EmotionRecognizer, paths: list[Path], failed: list[str], saves: Saves | None = None
) -> Iterator[dict]:
    """One record per image: every face found in it, with box, label and scores; with `saves`, a copy
    of the image with its faces drawn on it."""
    for path in paths:
        try:
            image = read_image(path, warn=warn)
        except UnreadableImage as err:
            failed.append(str(err))
            continue
        faces = fer(image)
        record = {
            "path": str(path),
            "size": [image.shape[1], image.shape[0]],
            "faces": [f.to_dict() for f in faces],
        }
        if saves is None:
            yield record
            continue
        # Ctrl-C or SIGTERM while a copy is written and its line printed (until the next image is asked
        # for) takes effect after both: no half-written copy, no copy without its line.
        with stop_signals_deferred():
            saves.write(path, draw(image, faces))
            yield record


@dataclass
class Saves:
    """Where `predict --save DIR` writes each image's annotated copy: its name (its path inside the
    folder given, or its file name) in DIR, JPEG as JPEG, any other format as PNG, signed so that
    --force knows it for the tool's own."""

    targets: dict[Path, Path]
    force: bool

    @classmethod
    def plan(cls, named: list[tuple[Path, Path]], out_dir: Path, force: bool) -> Saves:
        """Every target checked before any work: none written twice, over an input, or over a file
        the user made."""
        if out_dir.exists() and not out_dir.is_dir():
            raise SourceError(f"--save {out_dir}: a file, not a folder; give a folder for the copies")
        inputs = {path.resolve() for path, _ in named}
        targets: dict[Path, Path] = {}
        by_target: dict[Path, Path] = {}
        for path, name in named:
            jpeg = path.suffix.lower() in (".jpg", ".jpeg")
            target = out_dir / name.with_suffix(path.suffix if jpeg else ".png")
            if target in by_target:
                raise SourceError(f"--save {out_dir}: {by_target[target]} and {path} would both be {target}")
            if target.resolve() in inputs:
                raise SourceError(f"--save {out_dir}: {target} is an input; save the copies elsewhere")
            refuse_overwrite(target, force, kind="annotated")
            targets[path], by_target[target] = target, path
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=out_dir).close()
        except OSError as err:
            raise SourceError(f"--save {out_dir}: cannot write there ({err.strerror or err})") from None
        return cls(targets, force)

    def write(self, path: Path, image: np.ndarray) -> None:
        import cv2

        target = self.targets[path]
        ok, encoded = cv2.imencode(target.suffix, image)
        if not ok:
            raise SourceError(f"--save {target}: OpenCV cannot write this image")
        try:
            write_bytes(target, _signed(encoded.tobytes()), replace=self.force)
        except FileExistsError:
            raise SourceError(f"--save {target}: a file of that name appeared meanwhile; kept") from None


def _signed(data: bytes) -> bytes:
    """The encoded image with ANNOTATED_MARK in it: a comment after a JPEG's start marker, a text
    chunk after a PNG's header chunk."""
    if data[:2] == b"\xff\xd8":
        return data[:2] + b"\xff\xfe" + struct.pack(">H", len(ANNOTATED_MARK) + 2) + ANNOTATED_MARK + data[2:]
    chunk = b"tEXt" + b"Software\x00" + ANNOTATED_MARK
    end = 8 + 25  # the signature, then IHDR: length, type, 13 bytes of data, CRC
    packed = struct.pack(">I", len(chunk) - 4) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return data[:end] + packed + data[end:]


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
    fer: EmotionRecognizer,
    paths: list[Path],
    crops: bool,
    as_json: bool,
    out=None,
    saves: Saves | None = None,
    summary: bool = False,
) -> tuple[int, int]:
    """Print one line per image, then with `summary` (several images, a folder) a summary line;
    returns (images done, images that could not be read)."""
    out = out or sys.stdout
    failed: list[str] = []
    records = predict_crops(fer, paths, failed) if crops else predict_frames(fer, paths, failed, saves)
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
    if summary:
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
