"""What the documented install commands promise, checked against the installed packages' metadata."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=~!;\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_the_mediapipe_extra_gives_mediapipe_everything_but_opencv_contrib():
    """`pip install ".[edge,mediapipe]" && pip install --no-deps mediapipe` must leave MediaPipe
    working (nothing it needs missing) and opencv-python-headless in place."""
    try:
        needed = metadata.requires("mediapipe") or []
    except metadata.PackageNotFoundError:
        pytest.skip("mediapipe is not installed")
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    given = {_name(r) for r in extras["mediapipe"]} | {_name(r) for r in extras["edge"]}
    wanted = {_name(r) for r in needed if "extra ==" not in r}
    assert wanted - given == {"opencv-contrib-python"}
    assert "opencv-python-headless" in given
