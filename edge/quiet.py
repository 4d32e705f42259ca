"""Keep native libraries' start-up chatter out of the user's terminal.

LiteRT ("INFO: Created TensorFlow Lite XNNPACK delegate"), MediaPipe (absl INFO lines), OpenCV
(`[ WARN:...]`, `[ERROR:...]`) and the FFmpeg inside it (`[http @ 0x...] Error reading HTTP
response`) log from C++ to file descriptor 2, below Python's sys.stderr, where no Python setting
reaches. OpenCV and FFmpeg take a log level from the environment; around the other calls known to
log, fd 2 points at /dev/null. Errors still arrive as exceptions. FER_VERBOSE=1 keeps everything.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading

if not os.environ.get("FER_VERBOSE"):
    # OpenCV reads this when it loads: not its [ WARN ] and [ ERROR ] lines about a stream or a damaged
    # image (TIFF_Error, "imdecode_(): can't read data"), which we report in one line of our own.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "FATAL")
    # And this when it first opens a video or stream: FFmpeg quiet (AV_LOG_QUIET). What goes wrong
    # reaches the user as our own one-line error ("cannot open ...", "stream dropped").
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


# fd 2 is one per process: two threads swapping it at once could leave it on /dev/null for good.
_FD2 = threading.RLock()


@contextlib.contextmanager
def native_quiet():
    if os.environ.get("FER_VERBOSE"):
        yield
        return
    with _FD2:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


@contextlib.contextmanager
def native_captured():
    """What native code writes to fd 2 during the block, for the caller to word (libjpeg's "Corrupt
    JPEG data: ..."): yields a list that holds the bytes afterwards. Empty with FER_VERBOSE=1, where
    they reach the terminal as they are."""
    text: list[bytes] = []
    if os.environ.get("FER_VERBOSE"):
        yield text
        return
    with _FD2, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(sink.fileno(), 2)
            yield text
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text.append(sink.read(1 << 16))
