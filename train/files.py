"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Pure Python, so every stage (the edge runtime included) can use it without TensorFlow.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def only_one_writer(folder: Path, busy: Exception) -> Iterator[None]:
    """Hold the output folder while a command checks and writes it: two runs into one folder (another
    terminal, a cron job started twice) would each pass the check that nothing is overwritten and then
    replace each other's results. The second raises `busy`. The lock is the kernel's (flock on
    the folder itself): no file left behind, released when the process ends, however it ends. A folder
    made here (with the parents made for it) and still empty at the end (the command failed before
    writing) is removed."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a folder; give a folder for the outputs", str(folder))
    made = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    folder.mkdir(parents=True, exist_ok=True)
    try:
        try:
            import fcntl
        except ImportError:  # Windows: no flock; one run per folder is then the user's care
            yield
            return
        fd = os.open(folder, os.O_RDONLY)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise busy from None
            yield
        finally:
            os.close(fd)
    finally:
        with contextlib.suppress(OSError):  # rmdir removes only an empty folder: stop at the first kept
            for made_here in made:
                made_here.rmdir()


def move_into_place(tmp: Path, path: Path, replace: bool) -> None:
    """Move a finished temporary file to `path`. Without `replace`, never over a file that appeared
    while it was written (another process writing the same name, hours into a recording):
    FileExistsError, and `tmp` stays where it is."""
    if replace:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # atomic, and refused when `path` exists
    except FileExistsError:
        raise
    except OSError:  # no hard links here (FAT on an SD card): a check, then the rename
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, "exists", str(path)) from None
        os.replace(tmp, path)
        return
    tmp.unlink()


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], replace: bool = True) -> Path:
    """Call `write(tmp_path)` on a temporary file beside `path`, then move it into place (without
    `replace`, never over a file that appeared meanwhile: FileExistsError).

    The temporary name keeps `path`'s suffix, because some writers (Keras, Matplotlib) choose the
    format from it.
    """
    from fer_edge.signals import stop_signals_deferred

    path = Path(path)
    _refuse_special(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = None
    try:
        # A stop landing inside mkstemp would leave its file unnamed, so unremoved: it waits for the name.
        with stop_signals_deferred():
            fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
            os.close(fd)
            tmp_path = Path(tmp)
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp's 0600 would make results private to the writer
        move_into_place(tmp_path, path, replace)
    except FileExistsError:
        raise  # without `replace`: a file appeared at `path` meanwhile, and stays
    except OSError as err:
        if err.filename in (None, str(tmp_path)):  # a full disk names no file, or the hidden temporary one
            raise OSError(err.errno, f"cannot write ({err.strerror or err}); not kept", str(path)) from None
        raise
    finally:
        if tmp_path is not None and tmp_path.exists():
            tmp_path.unlink()
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_bytes(path: str | os.PathLike, data: bytes, replace: bool = True) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data), replace)


def read_json(path: str | os.PathLike, limit: int = 64 << 20):
    """A JSON file the toolkit wrote (results, run state), read only when its size is plausible: a
    damaged or planted file of gigabytes is a ValueError, like malformed JSON, not a memory blow-up."""
    size = os.stat(path).st_size
    if size > limit:
        raise ValueError(f"{size:,} bytes, more than such a file takes (at most {limit:,})")
    return json.loads(Path(path).read_bytes())


def write_json(path: str | os.PathLike, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


# How the toolkit recognises a file it wrote, by its own marks, not only by its format: --force replaces
# an existing file only when it is one of these (or empty), so a user's photo, notes, footage or model
# named by mistake survives it. Each check reads at most the first and last 64 KiB (a JSON result, 32 MiB).
_PROBE = 1 << 16
_JSON_LIMIT = 32 << 20
# The first lines of the Markdown reports: export/report.py, benchmarks/report.py, benchmarks/training.py,
# train/compare.py (a table).
_MARKDOWN_TITLES = (
    b"# Export report: ",
    b"# fer-bench report",
    b"# Training throughput",
    b"| architecture |",
)
# The top-level keys of each JSON result: fer-bench's and the model card's carry their kind; an
# evaluation report (fer-train evaluate), an export report and an older training benchmark, their shape.
_JSON_SHAPES = (
    {"kind"},
    {"format", "labels"},
    {"split", "samples", "single_crop"},
    {"model", "keras"},
    {"command", "machine", "results"},
)


def _json_result(head: bytes, tail: bytes, size: int, path: Path) -> bool:
    try:
        doc = read_json(path, _JSON_LIMIT)
    except ValueError:
        return False
    if isinstance(doc, list):  # fer-train compare's table: a row per architecture
        return bool(doc) and all(isinstance(row, dict) and {"arch", "accuracy"} <= row.keys() for row in doc)
    if not isinstance(doc, dict):
        return False
    marks = [str(doc.get(key, "")) for key in ("kind", "format")]
    return any(shape <= doc.keys() for shape in _JSON_SHAPES) and (
        not any(marks) or any(mark.startswith("fer-") for mark in marks)
    )


def _json_lines(head: bytes, tail: bytes, size: int, path: Path) -> bool:
    try:
        first = json.loads(head.split(b"\n", 1)[0])
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(first, dict) and {"frame", "faces"} <= first.keys()


def _video(magic: Callable[[bytes], bool]) -> Callable[..., bool]:
    # OpenCV writes through FFmpeg, which signs the container (Lavf); a camera's recording is not signed.
    return lambda head, tail, size, path: magic(head) and (b"Lavf" in head or b"Lavf" in tail)


# fer-edge predict --save signs each image it draws on: a JPEG comment, a PNG text chunk.
ANNOTATED_MARK = b"fer-edge annotated image"


def _annotated(head: bytes, tail: bytes, size: int, path: Path) -> bool:
    return head[:2] in (b"\xff\xd8", b"\x89P") and ANNOTATED_MARK in head


def _labels(head: bytes, tail: bytes, size: int, path: Path) -> bool:
    from fer_train.spec import CLASSES  # export writes the labels one per line, in the model's order

    return head.decode("utf-8", "replace").split() == list(CLASSES)


def _fer_model(head: bytes, tail: bytes, size: int, path: Path) -> bool:
    from fer_edge.model_info import MODEL_JSON  # the card packed at the end of every exported model

    return head[4:8] == b"TFL3" and MODEL_JSON.encode() in tail


OUTPUT_KINDS: dict[str, tuple[str, Callable[[bytes, bytes, int, Path], bool]]] = {
    ".json": ("a JSON result", _json_result),
    "jsonl": ("a JSON lines file", _json_lines),
    ".md": ("a Markdown report", lambda head, *_: head.startswith(_MARKDOWN_TITLES)),
    ".png": (
        "a Matplotlib plot",
        lambda head, *_: head[:8] == b"\x89PNG\r\n\x1a\n" and b"Software\x00Matplotlib" in head,
    ),
    ".tflite": ("a TFLite model with a FER card", _fer_model),
    ".mp4": ("an MP4 video", _video(lambda head: head[4:8] == b"ftyp")),
    ".avi": ("an AVI video", _video(lambda head: head[:4] == b"RIFF" and head[8:12] == b"AVI ")),
    ".mkv": ("a Matroska video", _video(lambda head: head[:4] == b"\x1a\x45\xdf\xa3")),
    ".txt": ("a labels file", _labels),
    "annotated": ("an annotated image", _annotated),
}


def _written_by_us(path: Path, kind: str | None) -> tuple[bool, str]:
    name, check = OUTPUT_KINDS.get(kind or path.suffix.lower(), ("", None))
    size = path.stat().st_size
    if size == 0:  # nothing to lose
        return True, name
    if check is None:  # a model or a photo given as an output by mistake
        return False, name
    with open(path, "rb") as file:
        head = file.read(_PROBE)
        file.seek(max(0, size - _PROBE))
        tail = file.read(_PROBE)
    return check(head, tail, size, path), name


def refuse_overwrite(
    path: str | os.PathLike, force: bool, what: str = "output", kind: str | None = None
) -> None:
    """Raise FileExistsError unless `force`: existing results are never replaced silently; with `force`,
    only a file the tool wrote (`kind`, default: by suffix, as in OUTPUT_KINDS), and never
    a device, pipe or socket (moving a file over /dev/null would replace the device itself)."""
    path = Path(path)
    _refuse_special(path)
    if not path.is_file():
        return
    if not force:
        raise FileExistsError(f"{path}: {what} exists already; use --force to overwrite it")
    ours, name = _written_by_us(path, kind)
    if not ours:
        why = f"not {name} this tool wrote" if name else "this command writes no such file"
        raise FileExistsError(f"{path}: {why}; kept even with --force")


def _refuse_special(path: Path) -> None:
    """Before any work: the output must be able to become a file."""
    if path.is_symlink():  # moved into place, the output would replace the link, not what it points to
        raise FileExistsError(f"{path}: a symbolic link (to {os.readlink(path)}); give the file's own name")
    if path.is_dir():
        raise FileExistsError(f"{path}: is a folder, not a file; give a file name")
    if path.exists() and not path.is_file():
        raise FileExistsError(f"{path}: a device, pipe or socket, not a file; give a file name")
    folder = next((p for p in path.parents if p.exists()), None)  # the nearest existing one
    if folder is not None and not folder.is_dir():
        raise FileExistsError(f"{folder}: a file, not a folder; choose another place for {path.name}")
