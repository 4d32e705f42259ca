"""Stopping cleanly: SIGTERM ends a command as Ctrl-C ends it, and a stop waits for a frame's outputs.

`timeout`, systemd and docker stop a program with SIGTERM. Python's default dies on the spot, mid-write
perhaps; turned into KeyboardInterrupt it takes the Ctrl-C path instead: temporary files are removed,
outputs completed, the user told what was kept. (SIGKILL cannot be caught: it leaves only the hidden
temporary files.)
"""

from __future__ import annotations

import contextlib
import signal
import threading


@contextlib.contextmanager
def sigterm_as_ctrl_c(terminated: list | None = None):
    """Within the block, SIGTERM raises KeyboardInterrupt (and is appended to `terminated`); a second
    SIGTERM while the first is being handled is ignored rather than cutting the clean-up short."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread gets signals
        yield
        return

    def stop(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if terminated is not None:
            terminated.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def stop_signals_deferred():
    """Ctrl-C or SIGTERM during one frame's outputs takes effect once they are written, so that the
    JSON lines, the video and the summary's frame count agree; or earlier, where the block calls the
    function it is given (a training step's end: a KeyboardInterrupt raised inside TensorFlow's code
    can break its scopes and surface as a RuntimeError)."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    received: list[int] = []
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if callable(handler):  # an ignored or default-action signal keeps its disposition
            previous[signum] = handler
            signal.signal(signum, lambda n, f: received.append(n))

    def deliver() -> None:
        """Let a stop that arrived take effect now: the handler it would have met runs here."""
        if received:
            signum = received[0]
            received.clear()
            previous[signum](signum, None)

    try:
        yield deliver
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        deliver()
