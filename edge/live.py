"""`fer-edge run`: the live loop from a frame source to the overlay, the saved video, JSON lines and preview.

Detection runs every `detect_every` frames; in between, the tracked boxes are classified again. All
faces of a frame go to the classifier in one batch, and each face's scores are smoothed over its track.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from fer_edge.capture import Frame, ImageSource, frames_in_file, open_source, playback_fps
from fer_edge.errors import EdgeError
from fer_edge.overlay import draw
from fer_edge.recognizer import EmotionRecognizer, Face
from fer_edge.signals import sigterm_as_ctrl_c, stop_signals_deferred
from fer_edge.tracking import Tracker
from fer_train.files import move_into_place, refuse_overwrite  # pure Python, shared by every stage

STAGES = ("capture", "detect", "classify", "output")


@dataclass
class LiveOptions:
    source: str = "0"
    detect_every: int = 1
    smoothing: float = 0.6
    save: Path | None = None
    json_stdout: bool = False
    json_file: Path | None = None
    serve: str | None = None
    show: bool | None = None
    max_frames: int | None = None
    reconnect: int = 5
    backoff: float = 0.5
    open_timeout: float = 10.0
    realtime: bool = False
    force: bool = False


@dataclass
class Stats:
    frames: int = 0
    faces: int = 0
    detections: int = 0
    started: float = field(default_factory=time.perf_counter)
    seconds: dict = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    fps_now: float = 0.0

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] += seconds

    def tick(self, frame_seconds: float) -> None:
        """The frame rate after a frame (`frames` is counted by the loop)."""
        now = 1.0 / frame_seconds if frame_seconds > 0 else 0.0
        self.fps_now = now if self.frames == 1 else 0.9 * self.fps_now + 0.1 * now

    def summary(self, dropped: int = 0) -> dict:
        elapsed = time.perf_counter() - self.started
        n = max(self.frames, 1)
        return {
            "frames": self.frames,
            "dropped": dropped,
            "faces": self.faces,
            "seconds": round(elapsed, 2),
            "mean_fps": round(self.frames / elapsed, 2) if elapsed > 0 else 0.0,
            "latency_ms": {stage: round(1000 * s / n, 2) for stage, s in self.seconds.items()},
        }


def format_summary(s: dict) -> str:
    lat = ", ".join(f"{k} {v:.1f}" for k, v in s["latency_ms"].items())
    return (
        f"summary: {s['frames']} frames ({s['dropped']} dropped), {s['faces']} faces, "
        f"{s['mean_fps']:.1f} FPS mean over {s['seconds']:.1f} s; ms per frame: {lat}"
    )


class LivePipeline:
    """Detect (every N frames), classify in one batch, track and smooth: one call per frame."""

    def __init__(self, fer: EmotionRecognizer, detect_every: int = 1, smoothing: float = 0.6):
        self.fer = fer
        self.detect_every = max(1, detect_every)
        self.tracker = Tracker(smoothing=smoothing, max_missed=max(5, 2 * self.detect_every))
        self.count = 0

    def step(self, image: np.ndarray, stats: Stats | None = None) -> list[Face]:
        t0 = time.perf_counter()
        if self.count % self.detect_every == 0 or not self.tracker.boxes():
            boxes = self.fer.detect(image)
            if stats:
                stats.detections += 1
        else:
            boxes = self.tracker.boxes()
        t1 = time.perf_counter()
        probs = self.fer.classify(image, boxes)
        tracks = self.tracker.update(boxes, probs)
        smoothed = np.stack([t.scores for t in tracks]) if tracks else probs
        faces = self.fer.faces(boxes, smoothed, tracks)
        t2 = time.perf_counter()
        if stats:
            stats.add("detect", t1 - t0)
            stats.add("classify", t2 - t1)
        self.count += 1
        return faces


def check_outputs(options: LiveOptions) -> None:
    """Refuse --save and --json-file paths that cannot be written, before any work is done: an existing
    file without --force, a folder, a wrong video suffix, a folder the user cannot write in; --show
    where no window can open; a --serve address the preview cannot listen on."""
    if options.show and (why := _no_window()):
        raise EdgeError(f"--show: {why}; use --save, --serve or --json instead")
    if options.serve:
        from fer_edge.serve import check_address

        check_address(options.serve)
    if options.save is not None and Path(options.save).suffix.lower() not in (".mp4", ".avi", ".mkv"):
        raise EdgeError(f"--save {options.save}: use a .mp4, .avi or .mkv file name")
    if (
        options.save is not None
        and options.json_file is not None
        and (
            Path(options.save).absolute() == Path(options.json_file).absolute()
            or _same_file(options.save, options.json_file)
        )
    ):
        raise EdgeError(f"--json-file {options.json_file}: is also the --save file; give each its own name")
    for flag, path in (("--save", options.save), ("--json-file", options.json_file)):
        if path is not None and _same_file(path, options.source):  # replaced at the end, even with --force
            raise EdgeError(f"{flag} {path}: is the --source; write the results to another file")
    for flag, path in (("--save", options.save), ("--json-file", options.json_file)):
        if path is None:
            continue
        path = Path(path)
        try:
            refuse_overwrite(path, options.force, kind="jsonl" if flag == "--json-file" else None)
        except FileExistsError as err:
            streamed = flag == "--json-file" and (_is_stdout(path) or _is_pipe(path))
            hint = " (--json-file - writes to stdout, line by line: pipe that)" if streamed else ""
            raise EdgeError(f"{flag} {err}{hint}") from None
        try:
            _probe_writable(path)
        except OSError as err:
            raise EdgeError(f"{flag} {path}: cannot write there ({err.strerror or err})") from None


def _probe_writable(path: Path) -> None:
    """Write a temporary file beside `path` and remove it, and the folders made for it: the run may
    still fail (a missing source), and a failed run leaves nothing behind."""
    made = [p for p in path.parents if not p.exists()]  # deepest first
    try:
        _temp_beside(path).unlink()
    finally:
        with contextlib.suppress(OSError):
            for folder in made:
                folder.rmdir()


def _is_stdout(path: Path) -> bool:
    return str(path.absolute()) in ("/dev/stdout", "/dev/fd/1", "/proc/self/fd/1")


def _is_pipe(path: Path) -> bool:
    """A named pipe (mkfifo): a reader wants the lines as they come, which a file moved into place at the
    end cannot give."""
    try:
        return stat.S_ISFIFO(path.stat().st_mode)
    except OSError:
        return False


def _has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or sys.platform in (
        "win32",
        "darwin",
    )


def _no_window() -> str | None:
    """Why no window can open here, or None. Checked before the run: OpenCV's Qt backend aborts the
    process without a display, and a headless build fails only at the first frame."""
    import cv2

    gui = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), re.MULTILINE)
    if gui and gui.group(1).upper() == "NONE":
        return "this OpenCV has no window support (opencv-python-headless)"
    if not _has_display():
        return "no display ($DISPLAY is not set)"
    return None


class Outputs:
    """Where results go: a window, a saved video, JSON lines, the MJPEG preview. Files appear atomically."""

    def __init__(self, options: LiveOptions, fps: float):
        self.options = options
        self.fps = playback_fps(fps)
        check_outputs(options)
        self._writer = None
        self._video_tmp: Path | None = None
        self._size: tuple[int, int] | None = None
        self._saved = 0  # frames handed to the video writer
        self.server = None
        if options.serve:
            from fer_edge.serve import PreviewServer

            self.server = PreviewServer(options.serve)
            who = " (on every network interface, no password: anyone who can reach this machine can watch)"
            print(f"preview: {self.server.url}{who if self.server.everywhere else ''}", file=sys.stderr)
        # Opened last: nothing after it can fail and leave its temporary file behind.
        self._json_tmp: Path | None = None
        self._json = self._open_json()
        self.window = self._window_wanted()

    def _open_json(self):
        if self.options.json_file is not None:
            self._json_tmp = _temp_beside(Path(self.options.json_file))
            # Line-buffered: each frame's line is on disk as it is made, however slow the device.
            return open(self._json_tmp, "w", encoding="utf-8", buffering=1)
        return sys.stdout if self.options.json_stdout else None

    def _window_wanted(self) -> bool:
        if self.options.show is not None:
            return self.options.show
        why = _no_window()
        if why and not (self.server or self.options.save or self._json):
            # `fer-edge run --source 0` over SSH, or with the edge extra's headless OpenCV: say where to look.
            hint = "add --serve 127.0.0.1:8080 to watch in a browser, or --save FILE or --json"
            print(f"note: no window: {why}; only the summary will show ({hint})", file=sys.stderr)
        return why is None

    @property
    def draws(self) -> bool:
        return self.window or self.server is not None or self.options.save is not None

    def write(self, frame: Frame, faces: list[Face], image: np.ndarray) -> bool:
        """Send one frame's results everywhere; False when the user closed the window."""
        if self._json is not None:
            record = {"frame": frame.index, "time": round(frame.time, 3)}
            if frame.path is not None:
                record["path"] = frame.path
            record["faces"] = [f.to_dict() for f in faces]
            self._write_json(json.dumps(record) + "\n")
        if self.options.save is not None:
            self._save(image)
        if self.server is not None:
            self.server.publish(image)
        if self.window:
            return self._show(image)
        return True

    def _write_json(self, line: str) -> None:
        if self._json is sys.stdout:  # a closed pipe (`| head`) is handled by the CLI
            self._json.write(line)
            self._json.flush()
            return
        try:
            self._json.write(line)
        except OSError as err:
            raise self._drop_json(err) from None

    def _drop_json(self, err: OSError) -> EdgeError:
        """A JSON-lines file that could not be written whole (a full disk) never moves into place."""
        if self._json is not None:
            with contextlib.suppress(OSError):
                self._json.close()
        self._json = None
        self._json_tmp.unlink(missing_ok=True)
        self._json_tmp = None
        why = err.strerror or err
        return EdgeError(f"--json-file {self.options.json_file}: cannot write ({why}); not kept")

    def _save(self, image: np.ndarray) -> None:
        import cv2

        if self._writer is None:
            path = Path(self.options.save)
            self._video_tmp = _temp_beside(path)
            fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
            self._size = (image.shape[1], image.shape[0])
            self._writer = cv2.VideoWriter(str(self._video_tmp), fourcc, self.fps, self._size)
            if not self._writer.isOpened():
                self._writer = None
                self._video_tmp.unlink(missing_ok=True)
                raise EdgeError(f"--save {path}: OpenCV cannot write a video here (format, or full disk)")
        if (image.shape[1], image.shape[0]) != self._size:
            image = _fit(image, self._size)
        self._writer.write(image)
        self._saved += 1

    def _finish_video(self) -> None:
        """OpenCV's writer reports no write errors: the finished file is opened and its frames counted,
        so a video cut short by a full disk is reported and not moved into place."""
        self._writer.release()
        self._writer = None
        counted = frames_in_file(self._video_tmp)
        if counted < self._saved - self._saved // 1000:  # a long MKV may estimate its count by duration
            self._video_tmp.unlink(missing_ok=True)
            raise EdgeError(
                f"--save {self.options.save}: {counted} of {self._saved} frames could be written "
                "(a full disk?); not kept"
            )
        try:
            move_into_place(self._video_tmp, Path(self.options.save), self.options.force)
        except FileExistsError:
            raise _appeared("--save", self.options.save, self._video_tmp) from None

    def _show(self, image: np.ndarray) -> bool:
        import cv2

        try:
            cv2.imshow("fer-edge", image)
            key = cv2.waitKey(1) & 0xFF
        except cv2.error as err:
            self.window = False
            if self.options.show:
                raise EdgeError("--show: this OpenCV has no window support (opencv-python-headless)") from err
            return True
        return key not in (ord("q"), 27)

    def close(self) -> None:
        """Finish every output; files move into place only now, complete. An output that could not be
        completed is removed and reported (EdgeError) after the others are finished."""
        failure = None
        if self._writer is not None:
            try:
                self._finish_video()
            except EdgeError as err:
                failure = err
        if self._json_tmp is not None and self._json is not None:
            try:
                self._json.close()
                self._json = None
                move_into_place(self._json_tmp, Path(self.options.json_file), self.options.force)
            except FileExistsError:
                failure = together(failure, _appeared("--json-file", self.options.json_file, self._json_tmp))
            except OSError as err:
                failure = together(failure, self._drop_json(err))
        if self.server is not None:
            self.server.close()
        if self.window:
            import cv2

            cv2.destroyAllWindows()
        if failure is not None:
            raise failure


def _appeared(flag: str, path, kept: Path) -> EdgeError:
    """Another process wrote `path` while this run recorded: neither output is lost."""
    return EdgeError(f"{flag} {path}: a file of that name appeared during the run; this run's is in {kept}")


def together(first: EdgeError | None, then: EdgeError) -> EdgeError:
    """Both failures in one line: when the disk fills, the video and the JSON lines are both lost."""
    return then if first is None else EdgeError(f"{first}; and {then}")


def _same_file(path: str | Path, other: str | Path | None) -> bool:
    try:
        return other is not None and os.path.samefile(path, other)
    except OSError:  # one of them does not exist (yet), or is a camera index or a URL
        return False


def _temp_beside(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the result from the user's other tools
    return Path(tmp)


def _fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` scaled to fit a video frame of `size` (width, height), centred on black: a folder's
    images of other shapes keep their proportions in the video instead of being stretched."""
    import cv2

    width, height = size
    scale = min(width / image.shape[1], height / image.shape[0])
    w, h = max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))
    frame = np.zeros((height, width, 3), np.uint8)
    x, y = (width - w) // 2, (height - h) // 2
    frame[y : y + h, x : x + w] = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return frame


def process(
    fer: EmotionRecognizer,
    frames: Iterable[Frame],
    options: LiveOptions,
    outputs: Outputs | None,
    stats: Stats,
) -> None:
    """The loop itself; returns at the end of the source, at --max-frames or when the window closes."""
    pipeline = LivePipeline(fer, options.detect_every, options.smoothing)
    iterator = iter(frames)
    while options.max_frames is None or stats.frames < options.max_frames:
        t0 = time.perf_counter()
        frame = next(iterator, None)
        if frame is None:
            return
        if frame.path is not None:  # separate photos: no track runs from one to the next
            pipeline = LivePipeline(fer, 1, 0.0)
        t1 = time.perf_counter()
        stats.add("capture", t1 - t0)
        faces = pipeline.step(frame.image, stats)
        t2 = time.perf_counter()
        keep_going = True
        if outputs is not None:
            # A photo has no frame rate: the overlay shows one only for a sequence, once measured.
            fps = stats.fps_now if frame.path is None and stats.fps_now > 0 else None
            image = draw(frame.image.copy(), faces, fps) if outputs.draws else frame.image
            with stop_signals_deferred():  # a frame is in every output and counted, or in none
                keep_going = outputs.write(frame, faces, image)
                stats.frames, stats.faces = stats.frames + 1, stats.faces + len(faces)
        else:
            stats.frames, stats.faces = stats.frames + 1, stats.faces + len(faces)
        t3 = time.perf_counter()
        stats.add("output", t3 - t2)
        stats.tick(t3 - t0)
        if not keep_going:
            return


def run_live(fer: EmotionRecognizer, options: LiveOptions) -> int:
    """`fer-edge run`: returns the exit status; prints the summary however the run ends."""
    source = open_source(
        options.source, options.reconnect, options.backoff, options.open_timeout, options.realtime
    )
    if isinstance(source, ImageSource):
        # Separate photos are not a sequence: nothing to track or smooth across them.
        options = replace(options, detect_every=1, smoothing=0.0)
    stats = Stats()
    outputs = None
    failure: EdgeError | None = None
    with sigterm_as_ctrl_c():
        try:
            outputs = Outputs(options, source.fps)
            process(fer, source.frames(), options, outputs, stats)
        except KeyboardInterrupt:
            print("", file=sys.stderr)  # Ctrl-C ends the run; outputs are still completed below
        except EdgeError as err:  # a dropped stream, an output that cannot be written
            failure = err
        finally:
            source.close()
            if outputs is not None:
                try:
                    outputs.close()
                except EdgeError as err:
                    failure = together(failure, err)
    if outputs is not None:  # the run started: say what it did, however it ended
        print(format_summary(stats.summary(source.skipped)), file=sys.stderr)
    if failure is not None:
        raise failure
    if source.unreadable:
        print(f"error: {source.unreadable} image(s) could not be read", file=sys.stderr)
        return 2
    return 0
