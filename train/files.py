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
    except OSError as err:
        if err.filename in (None, str(tmp_path)):  # a full disk names no file, or the hidden temporary one
            raise OSError(err.errno, f"cannot write ({err.strerror or err}); not kept", str(path)) from None
        raise
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


# How each kind of file the toolkit writes begins. --force replaces an existing file only when it is of
# the kind the tool writes there (or empty): a photo, notes or a model named by mistake survive it.
OUTPUT_KINDS = {
    ".json": ("JSON", lambda head: head.lstrip()[:1] in (b"{", b"[")),
    "jsonl": ("JSON lines", lambda head: head.lstrip()[:1] == b"{"),
    ".md": ("Markdown report", lambda head: head.lstrip()[:1] in (b"#", b"|")),
    ".png": ("PNG", lambda head: head.startswith(b"\x89PNG\r\n\x1a\n")),
    ".tflite": ("TFLite model", lambda head: head[4:8] == b"TFL3"),
    ".mp4": ("MP4 video", lambda head: head[4:8] == b"ftyp"),
    ".avi": ("AVI video", lambda head: head[:4] == b"RIFF" and head[8:12] == b"AVI "),
    ".mkv": ("Matroska video", lambda head: head[:4] == b"\x1a\x45\xdf\xa3"),
}


def refuse_overwrite(
    path: str | os.PathLike, force: bool, what: str = "output", kind: str | None = None
) -> None:
    """Raise FileExistsError unless `force`: existing results are never replaced silently; with `force`,
    only a file of the kind the tool writes (`kind`, default: by suffix, as in OUTPUT_KINDS), and never
    a device, pipe or socket (moving a file over /dev/null would replace the device itself)."""
    path = Path(path)
    _refuse_special(path)
    if not path.is_file():
        return
    if not force:
        raise FileExistsError(f"{path}: {what} exists already; use --force to overwrite it")
    name, looks_ours = OUTPUT_KINDS.get(kind or path.suffix.lower(), ("", lambda head: True))
    with open(path, "rb") as file:
        head = file.read(64)
    if head and not looks_ours(head):
        raise FileExistsError(f"{path}: holds no {name}, so not this tool's output; kept even with --force")


def _refuse_special(path: Path) -> None:
    """Before any work: the output must be able to become a file."""
    if path.is_dir():
        raise FileExistsError(f"{path}: is a folder, not a file; give a file name")
    if path.exists() and not path.is_file():
        raise FileExistsError(f"{path}: a device, pipe or socket, not a file; give a file name")
    folder = next((p for p in path.parents if p.exists()), None)  # the nearest existing one
    if folder is not None and not folder.is_dir():
        raise FileExistsError(f"{folder}: a file, not a folder; choose another place for {path.name}")
