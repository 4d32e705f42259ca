"""The errors the edge runtime reports to its user: each carries one line that says what to fix."""

from __future__ import annotations


class EdgeError(Exception):
    """A problem with the user's input (a file, a camera, an option), shown as one `error:` line."""


class ModelError(EdgeError):
    """A .tflite that is missing, corrupt, of the wrong shape, or without labels."""


class SourceError(EdgeError):
    """A camera, video, stream or image that cannot be opened or that stopped for good."""


class DetectorError(EdgeError):
    """A face detector that cannot be built (no model file, mediapipe missing or unusable)."""
