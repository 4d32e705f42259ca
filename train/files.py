"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Pure Python, so every stage (the edge runtime included) can use it without TensorFlow.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)` on a temporary file beside `path`, then move it into place.

    The temporary name keeps `path`'s suffix, because some writers (Keras, Matplotlib) choose the
    format from it.
    """
    path = Path(path)
    _refuse_special(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp's 0600 would make results private to the writer
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def write_json(path: str | os.PathLike, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def refuse_overwrite(path: str | os.PathLike, force: bool, what: str = "output") -> None:
    """Raise FileExistsError unless `force`: existing results are never replaced silently, and a device,
    pipe or socket never (moving a file over /dev/null would replace the device itself)."""
    _refuse_special(Path(path))
    if Path(path).exists() and not force:
        raise FileExistsError(f"{path}: {what} exists already; use --force to overwrite it")


def _refuse_special(path: Path) -> None:
    """Before any work: the output must be able to become a file."""
    if path.exists() and not path.is_file() and not path.is_dir():
        raise FileExistsError(f"{path}: a device, pipe or socket, not a file; choose a file name")
    folder = next((p for p in path.parents if p.exists()), None)  # the nearest existing one
    if folder is not None and not folder.is_dir():
        raise FileExistsError(f"{folder}: a file, not a folder; choose another place for {path.name}")
