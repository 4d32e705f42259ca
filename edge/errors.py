"""The errors the edge runtime reports to its user: each carries one line that says what to fix."""

from __future__ import annotations

from pathlib import Path


class EdgeError(Exception):
    """A problem with the user's input (a file, a camera, an option), shown as one `error:` line."""


class ModelError(EdgeError):
    """A .tflite that is missing, corrupt, of the wrong shape, or without labels."""


class MissingLabels(ModelError):
    """A model without labels: the message points to --labels; `why` is the fault alone, for a command
    that has no such option."""

    def __init__(self, why: str):
        super().__init__(f"{why}; pass --labels FILE")
        self.why = why


class SourceError(EdgeError):
    """A camera, video, stream or image that cannot be opened or that stopped for good."""


class DetectorError(EdgeError):
    """A face detector that cannot be built (no model file, mediapipe missing or unusable)."""


def printable(text: str) -> str:
    """Text for a terminal line, such as a file name: its control characters (a tab, a newline, an
    escape sequence that would rewrite the screen) written as escapes, as `ls` shows them."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def warn(message: str) -> None:
    """A problem that does not stop the work (a damaged JPEG that still decodes): one stderr line."""
    import sys

    print(f"warning: {printable(message)}", file=sys.stderr)


def not_a_model_file(path: Path, give: str, missing: str = "no such model file") -> str | None:
    """Why `path` cannot be read as a model file (`give` names what to pass instead), or None."""
    if path.is_file():
        return None
    if path.is_dir():
        return f"{path}: a folder; give a {give}"
    if path.exists():  # a device, pipe or socket: reading it could block or never end
        return f"{path}: not a regular file; give a {give}"
    return f"{path}: {missing}"
