"""Frame sources for `fer-edge run`: cameras, video files, streams, images and folders of images.

A live source (camera, rtsp://, http://) is read by a thread that keeps only the newest frame, so a
slow classifier drops frames instead of falling ever further behind. Files are read frame by frame.
A live source that stops delivering is reopened with exponential backoff, then given up on.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fer_edge import images
from fer_edge.errors import SourceError, printable, warn
from fer_edge.images import UnreadableImage, is_image, list_images, read_image
from fer_edge.quiet import native_quiet  # importing it sets OpenCV's and FFmpeg's log levels

PICAMERA_NAMES = ("picamera", "picamera2")
# How long the loop waits for a frame at a time. A Ctrl-C the kernel hands to another thread is only
# acted on when the main thread runs Python again, so a stalled stream must not keep it asleep long.
WAIT_SLICE_S = 0.25
# How long opening a stream may take before "no answer" (--open-timeout), and how much longer the
# helper thread that opens it is waited for (FFmpeg's own timeout on a URL comes first).
DEFAULT_OPEN_TIMEOUT_S = 10.0
OPEN_GRACE_S = 2.0
STREAM_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://", "udp://", "tcp://", "rtmp://")


def playback_fps(fps: float) -> float:
    """A video's frame rate as it plays and is saved: what its file says, unless that is missing or
    implausible (0, or 90,000 from a stream's time base), then 15."""
    return fps if 1 <= fps <= 240 else 15.0


@dataclass
class Frame:
    index: int
    image: np.ndarray
    time: float
    path: str | None = None  # the image file, for a folder of photos


def is_camera(source: str) -> bool:
    """A camera index: ASCII digits that fit OpenCV's int ("²" and "٣" are digits to Python, not to it)."""
    return source.isascii() and source.isdigit() and int(source) < 2**31


def describe(source: str) -> str:
    return f"camera {source}" if is_camera(source) else redacted(source)


def redacted(text: str) -> str:
    """`text` with the password of any URL in it (rtsp://user:PASSWORD@camera/...) written as ***, so
    that errors, logs and benchmark results never carry a camera's credentials."""
    return _URL_PASSWORD.sub(r"\1***@", text)


_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/@:\s]*:)[^/@\s]*@")


def is_live(source: str) -> bool:
    return is_camera(source) or source.lower().startswith(STREAM_PREFIXES)


def open_source(
    source: str,
    reconnect: int = 5,
    backoff: float = 0.5,
    open_timeout: float = DEFAULT_OPEN_TIMEOUT_S,
    realtime: bool = False,
) -> FrameSource:
    """The frame source `source` names; a SourceError when it does not exist or cannot be read.
    `realtime`: a video file's frames come at its own frame rate, not as fast as they decode."""
    if not source.strip():  # Path("") is the current folder: an empty $VAR must not run on it
        raise SourceError("--source is empty: give a camera index, file, folder or URL")
    if source.lower() in PICAMERA_NAMES:
        return PiCameraSource()
    if is_live(source):
        capture = open_stream(source, open_timeout)
        if not is_camera(source) and _frame_count(capture) > 0:
            # A video file served over the network has a length: read every frame to its end, as from
            # a local file; only a live stream (no length) reconnects when it breaks.
            return VideoSource(source, capture, realtime)
        return LiveSource(source, reconnect, backoff, capture=capture, open_timeout=open_timeout)
    path = Path(source)
    if path.is_dir():
        return ImageSource(list_images([path]))
    if not path.exists():
        raise SourceError(f"{redacted(source)}: no such file, folder or camera")
    if path.is_char_device():  # /dev/video0: a camera
        return LiveSource(source, reconnect, backoff, open_timeout=open_timeout)
    if not path.is_file():  # a named pipe: opening it waits for a writer, which may never come
        return VideoSource(path, open_stream(source, open_timeout), realtime)
    if is_image(path):
        return ImageSource([path])
    return VideoSource(path, realtime=realtime)


class FrameSource:
    fps: float = 0.0
    skipped = 0  # frames dropped on purpose to stay current (live sources)
    unreadable = 0  # files that could not be read (image folders)

    def frames(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class ImageSource(FrameSource):
    def __init__(self, paths: list[Path]):
        self.paths = paths

    def frames(self) -> Iterator[Frame]:
        index = 0
        for path in self.paths:
            try:
                image = read_image(path, warn=warn)
            except UnreadableImage as err:
                # A corrupt image in a folder is skipped (and counted), not the end of the run.
                print(f"warning: {printable(str(err))}; skipped", file=sys.stderr)
                self.unreadable += 1
                continue
            yield Frame(index, image, time.time(), str(path))
            index += 1
        if index == 0:
            raise SourceError(f"none of the {len(self.paths)} images could be read")


def _open_capture(source: str, open_timeout: float | None = None):
    import cv2

    if is_camera(source):
        capture = cv2.VideoCapture(int(source))
    elif open_timeout and is_live(source):
        ms = int(open_timeout * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        capture = cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)
    else:
        capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        capture.release()
        return None
    return capture


def open_stream(source: str, open_timeout: float = DEFAULT_OPEN_TIMEOUT_S):
    """Open a camera, stream or pipe; a SourceError saying why when it does not open. The open runs in
    a helper thread so that Ctrl-C works while a server that accepted the connection never answers or
    a named pipe has no writer; after `open_timeout` (and FFmpeg's own timeout on a URL) it is given up."""
    opened: dict = {}
    thread = threading.Thread(
        target=lambda: opened.setdefault("capture", _open_capture(source, open_timeout)),
        name=f"open {describe(source)}",
        daemon=True,
    )
    pipe = _is_pipe(source)  # no FFmpeg timeout applies to opening a pipe: no grace either
    start = time.monotonic()
    thread.start()
    while thread.is_alive() and time.monotonic() - start < open_timeout + (0 if pipe else OPEN_GRACE_S):
        thread.join(WAIT_SLICE_S)
    if thread.is_alive() and pipe:
        # OpenCV tries more than one backend, each opening the pipe again: release each in turn.
        deadline = time.monotonic() + OPEN_GRACE_S
        while thread.is_alive() and time.monotonic() < deadline:
            _release_pipe_reader(source)
            thread.join(0.05)
    capture = opened.get("capture")
    if capture is None:
        if time.monotonic() - start >= 0.9 * open_timeout:
            why = f"no answer within {open_timeout:g} s; --open-timeout sets how long to wait"
        elif is_camera(source):
            why = "no such camera, or it is in use"
        elif Path(source).is_char_device():
            why = "not a camera OpenCV can open, or it is in use"
        elif is_live(source):
            why = "cannot connect"
        else:
            why = "not a video OpenCV can read"
        raise SourceError(f"{describe(source)}: cannot open ({why})")
    return capture


def _is_pipe(source: str) -> bool:
    try:
        return stat.S_ISFIFO(os.stat(source).st_mode)
    except (OSError, ValueError):
        return False


def _release_pipe_reader(source: str) -> None:
    """Unblock a thread stuck opening a named pipe that has no writer: open it as the writer, without
    waiting, and close it at once, so that the reader sees an empty stream and its thread ends."""
    with contextlib.suppress(OSError):  # no reader left: nothing is waiting
        os.close(os.open(source, os.O_WRONLY | os.O_NONBLOCK))


def _check_frame_size(capture, source) -> None:
    """Frames are held as BGR arrays: a video of 9000x6000 frames takes over a gigabyte as it runs, so
    the images' pixel limit (--max-pixels) holds for frames too, read from the container before any."""
    import cv2

    width, height = (int(capture.get(p) or 0) for p in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT))
    if width * height > images.max_pixels:
        capture.release()
        raise SourceError(
            f"{describe(str(source))}: {width}x{height} frames, over the limit of {images.max_pixels:,} "
            f"pixels ({images.limit_hint})"
        )


def _frame_count(capture) -> int:
    import cv2

    return int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)


def _open_file(path: Path | str):
    """Open a local video file, or None. OpenCV's own AVI reader writes what it finds wrong in a damaged
    file straight to fd 2, past every log level ("Unexpected element. Expected: LIST. Got: <binary>"):
    the user gets our one line instead. A local file opens at once, so fd 2 is muted only briefly."""
    with native_quiet():
        return _open_capture(str(path))


def frames_in_file(path: Path | str) -> int:
    """The frames a video file's container says it holds, 0 when it cannot be opened: how a written video
    is checked, since OpenCV's writer reports no write errors (a full disk cuts the file short)."""
    capture = _open_file(path)
    if capture is None:
        return 0
    count = _frame_count(capture)
    capture.release()
    return count


class VideoSource(FrameSource):
    """A video read frame by frame to its end: a file, or a file served over the network."""

    def __init__(self, path: Path | str, capture=None, realtime: bool = False):
        self.path, self.realtime = path, realtime
        self._capture = capture if capture is not None else _open_file(path)
        if self._capture is not None:
            _check_frame_size(self._capture, path)
        first = self._capture.read() if self._capture is not None else (False, None)
        if not first[0]:
            self.close()
            raise SourceError(f"{path}: not a video or image OpenCV can read")
        self._first = first[1]
        import cv2

        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)

    def frames(self) -> Iterator[Frame]:
        index, image = 0, self._first
        self._first = None
        start = time.monotonic()
        while image is not None:
            if self.realtime:
                # Frame i is due i/fps after the first; a late frame is not dropped, only not waited for.
                # A signal interrupts the sleep, so Ctrl-C still ends the run at once.
                time.sleep(max(0.0, start + index / playback_fps(self.fps) - time.monotonic()))
            yield Frame(index, image, time.time())
            index += 1
            ok, image = self._capture.read()
            if not ok:
                image = None

    def close(self) -> None:
        if getattr(self, "_capture", None) is not None:
            self._capture.release()
            self._capture = None


class LiveSource(FrameSource):
    """A camera or stream read by a thread that keeps only the newest frame."""

    def __init__(
        self,
        source: str,
        reconnect: int = 5,
        backoff: float = 0.5,
        read_timeout: float = 10.0,
        capture=None,
        open_timeout: float = DEFAULT_OPEN_TIMEOUT_S,
    ):
        self.source = source
        self.reconnect = reconnect
        self.backoff = backoff
        self.read_timeout = read_timeout
        self.open_timeout = open_timeout
        self.reconnects = 0
        self._capture = capture if capture is not None else open_stream(source, open_timeout)
        _check_frame_size(self._capture, source)
        import cv2

        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._error: SourceError | None = None
        self._stop = threading.Event()
        self._count = 0
        self._thread = threading.Thread(target=self._reader, name="fer-capture", daemon=True)
        self._thread.start()

    def _reader(self) -> None:
        if hasattr(signal, "pthread_sigmask"):
            # Ctrl-C is for the main loop: delivered here it would break a network read mid-frame.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        failures = 0
        while not self._stop.is_set():
            ok, image = self._capture.read() if self._capture is not None else (False, None)
            if ok and image is not None:
                failures = 0
                with self._cond:
                    self._latest = Frame(self._count, image, time.time())
                    self._count += 1
                    self._cond.notify_all()
                continue
            failures += 1
            if failures > self.reconnect:
                tries = self.reconnect
                self._fail(
                    f"{describe(self.source)}: stream dropped and did not come back after {tries} tries"
                )
                return
            self._reopen(self.backoff * 2 ** (failures - 1))

    def _reopen(self, delay: float) -> None:
        if self._capture is not None:
            self._capture.release()
        if self._stop.wait(delay):
            return
        self.reconnects += 1
        self._capture = _open_capture(self.source, self.open_timeout)

    def _fail(self, message: str) -> None:
        with self._cond:
            self._error = SourceError(message)
            self._cond.notify_all()

    def _is_new(self, last: int) -> bool:
        return self._latest is not None and self._latest.index != last

    def _news(self, last: int) -> bool:
        return self._error is not None or self._is_new(last)

    def frames(self) -> Iterator[Frame]:
        last = -1
        index = 0
        while True:
            frame = self._next_frame(last)
            # Frames the reader replaced before we got to them were dropped on purpose: we stay current.
            self.skipped += max(0, frame.index - last - 1) if last >= 0 else 0
            last = frame.index
            yield Frame(index, frame.image, frame.time)
            index += 1

    def _next_frame(self, last: int) -> Frame:
        give_up = time.monotonic() + self.read_timeout * (self.reconnect + 1)
        with self._cond:
            while not self._news(last):
                if time.monotonic() >= give_up:
                    raise SourceError(f"{describe(self.source)}: no frame for a long time; giving up")
                self._cond.wait(WAIT_SLICE_S)
            if self._is_new(last):
                return self._latest
            raise self._error

    def close(self) -> None:
        self._stop.set()
        # Not longer: a reader stuck in a stalled network read would hold Ctrl-C up. If it is still
        # inside OpenCV, its capture is left to the process's exit rather than released under it.
        self._thread.join(timeout=WAIT_SLICE_S)
        # Releasing a capture another thread is reading from can crash OpenCV: only once the reader is done.
        if not self._thread.is_alive() and self._capture is not None:
            self._capture.release()
            self._capture = None


class PiCameraSource(FrameSource):
    """A Raspberry Pi camera module through Picamera2 (libcamera), which OpenCV cannot open itself.

    Picamera2 hands over the newest completed buffer, so no capture thread is needed here.
    """

    def __init__(self, size: tuple[int, int] = (640, 480)):
        try:
            from picamera2 import Picamera2
        except ImportError as err:
            raise SourceError(
                "picamera: the picamera2 module is missing (sudo apt install python3-picamera2, and make "
                "the venv with --system-site-packages)"
            ) from err
        try:
            self._camera = Picamera2()
            # "RGB888" is stored B, G, R in memory: the order OpenCV expects.
            config = self._camera.create_video_configuration(main={"size": size, "format": "RGB888"})
            self._camera.configure(config)
            self._camera.start()
        except (RuntimeError, IndexError, OSError) as err:
            raise SourceError(f"picamera: cannot start the camera ({err})") from err
        self.fps = 30.0

    def frames(self) -> Iterator[Frame]:
        index = 0
        while True:
            yield Frame(index, self._camera.capture_array("main"), time.time())
            index += 1

    def close(self) -> None:
        if getattr(self, "_camera", None) is not None:
            self._camera.stop()
            self._camera.close()
            self._camera = None
