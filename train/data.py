"""Read FER2013 from the two formats users have: the Kaggle CSV and image folders.

Both give the same thing: uint8 faces of shape (N, 48, 48) and integer labels in `spec.CLASSES` order.
Decoding 35,887 JPEGs takes a while, so each loaded split is cached as .npz, keyed by the source's file
names, sizes and modification times: touching the data invalidates the cache.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import itertools
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer_edge.images import (
    LIBJPEG_DAMAGE,
    UnreadableImage,
    env_max_pixels,
    is_hidden,
    is_image,
    pass_on,
    read_image,
)
from fer_edge.quiet import native_captured
from fer_train.spec import CLASSES, IMAGE_SIZE, SPLIT_ALIASES, canonical_split, class_index

CACHE_VERSION = 1


class DataError(Exception):
    """Bad or missing data; the message is one line naming the file (and row) at fault."""


class MissingSplit(DataError):
    """The data holds no such split (`split`); a command that can name another says how."""

    def __init__(self, message: str, split: str):
        super().__init__(message)
        self.split = split


class BadItem(DataError):
    """A row, image or folder that `skip_bad` would leave out; the message says so (`--skip-bad`), `why`
    is the fault alone, for a command that offers no such option."""

    def __init__(self, why: str, skipping: str):
        super().__init__(f"{why}; use --skip-bad to {skipping}")
        self.why = why


class Skipped:
    """The items a split left out: every one counted (`len`), the first hundred described ("where:
    why"; indexing and iteration), so that a file of millions of bad rows is reported in kilobytes."""

    KEPT = 100

    def __init__(self, described: list[str] | None = None, count: int = 0):
        self.described = list(described or [])[: self.KEPT]
        self.count = max(count, len(self.described))

    def append(self, why: str) -> None:
        self.count += 1
        if len(self.described) < self.KEPT:
            self.described.append(why)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> str:
        return self.described[index]

    def __iter__(self):
        return iter(self.described)


@dataclass
class Dataset:
    images: np.ndarray  # uint8 (N, 48, 48)
    labels: np.ndarray  # int64 (N,), indexes spec.CLASSES
    split: str  # Training, PublicTest or PrivateTest
    source: str  # the CSV file, or the folder of class folders the faces came from
    skipped: Skipped = field(default_factory=Skipped)  # the items left out

    def __len__(self) -> int:
        return len(self.labels)


def load(
    path: str | os.PathLike, split: str = "train", skip_bad: bool = False, cache: bool = True
) -> Dataset:
    """Load one split of FER2013 from a CSV file or an image-folder tree.

    `path` is a Kaggle CSV, a root holding `<split>/<class>/*.jpg`, or a split folder holding
    `<class>/*.jpg` directly. With `skip_bad`, malformed rows and unreadable images are left out and
    counted in `Dataset.skipped`; without it the first one raises DataError.
    """
    src = check_source(path)
    usage = canonical_split(split) if split.lower() in SPLIT_ALIASES else split
    source = src
    if src.is_file():
        files = [src]
        reader = lambda: _read_csv(src, usage, skip_bad)  # noqa: E731
    else:
        split_dir = source = _find_split_dir(src, split)
        listing = _list_images(split_dir, skip_bad)
        reader = lambda: _read_folder(listing, skip_bad)  # noqa: E731
        files = [p for p, _ in listing]
    key = _cache_key(src, usage, skip_bad, files)
    cached = _cache_path(key)
    if cache and cached.exists():
        try:
            return _read_cache(cached, usage, str(source))
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a damaged cache is rebuilt below
    images, labels, skipped = reader()
    _check_not_empty(labels, src, usage)
    data = Dataset(images, labels, usage, str(source), skipped)
    if cache:
        _write_cache(cached, data)
    return data


def check_source(path: str | os.PathLike) -> Path:
    """The path, if it can be FER2013 at all (a CSV file or a folder); DataError for a typo."""
    src = Path(path).expanduser()
    if not src.exists():
        raise DataError(f"{src}: no such file or folder")
    if not src.is_file() and not src.is_dir():
        raise DataError(f"{src}: not a file or folder (FER2013 data is its CSV or image folders)")
    if src.is_file() and is_image(src):
        raise DataError(f"{src}: an image; FER2013 data is its CSV or a folder of <split>/<class>/ images")
    return src


def _check_not_empty(labels: np.ndarray, src: Path, usage: str) -> None:
    if len(labels) == 0:
        raise DataError(f"{src}: split {usage} holds no usable faces")


# --- CSV -------------------------------------------------------------------------------------------


def _read_csv(path: Path, usage: str, skip_bad: bool) -> tuple[np.ndarray, np.ndarray, Skipped]:
    images, labels, skipped = [], [], Skipped()
    try:
        # utf-8-sig: a CSV saved by Excel starts with a byte-order mark before "emotion".
        handle = open(path, newline="", encoding="utf-8-sig")  # noqa: SIM115 - closed by the with below
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    rows = csv.reader(_bounded_lines(handle, path))
    try:
        with handle:
            _read_rows(rows, path, usage, skip_bad, images, labels, skipped)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text CSV in UTF-8 (is it an image or another binary file?)") from None
    except csv.Error as e:
        raise DataError(f"{path}:{rows.line_num}: malformed CSV ({e})") from None
    return _stack(images, labels, skipped)


# A FER2013 row is under 10,000 characters; a line past this is not one (a binary or a sparse file
# would otherwise be read into memory as one "line").
MAX_LINE = 1 << 20


def _bounded_lines(handle, path: Path):
    for line_no in itertools.count(1):
        line = handle.readline(MAX_LINE)
        if not line:
            return
        if len(line) == MAX_LINE and not line.endswith("\n"):
            raise DataError(f"{path}:{line_no}: a line of over {MAX_LINE:,} characters; not a FER2013 CSV")
        yield line


def _read_rows(rows, path: Path, usage: str, skip_bad: bool, images: list, labels: list, skipped: Skipped):
    """Parse the rows of `usage` into `images` and `labels` (malformed rows into `skipped`)."""
    header = [h.strip().lower() for h in next(rows, [])]
    if "emotion" not in header or "pixels" not in header:
        raise DataError(f"{path}: not a FER2013 CSV (the header needs emotion and pixels columns)")
    col_e, col_p = header.index("emotion"), header.index("pixels")
    col_u = header.index("usage") if "usage" in header else None
    if col_u is None and usage != "Training":  # Kaggle's train.csv: every row is training data
        why = f"no Usage column, so every row is Training; it holds no {usage} split"
        raise MissingSplit(f"{path}: {why}", usage)
    others: set[str] = set()
    for line_no, row in enumerate(_rows_or_faults(rows, path, skip_bad, skipped), start=2):
        if any("\n" in field for field in row):  # the rest of the file went into one quoted field
            raise DataError(f"{path}:{line_no}: a quote opened on this row is never closed")
        if not row:  # a blank line, as editors and spreadsheets leave at the end: not a face
            continue
        row_usage = usage if col_u is None else row[col_u].strip() if len(row) > col_u else ""
        if row_usage and row_usage.lower() != usage.lower():
            if len(others) < 10:
                others.add(row_usage)
            continue
        try:
            if not row_usage:  # it would otherwise be in every split, a test face trained on
                raise ValueError("no Usage value, so its split is unknown")
            face, label = _parse_row(row, col_e, col_p)
        except ValueError as e:
            where = f"{path}:{line_no}"
            if not skip_bad:
                raise BadItem(f"{where}: {e}", "leave such rows out") from None
            skipped.append(f"{where}: {e}")
            continue
        images.append(face)
        labels.append(label)
    if not labels and not skipped and others:
        names = ", ".join(sorted(others))
        raise MissingSplit(f"{path}: split {usage} holds no faces (the Usage column names {names})", usage)


def _rows_or_faults(rows, path: Path, skip_bad: bool, skipped: Skipped):
    """The rows; one the csv module refuses (a NUL byte, a field over its size limit) is a bad row like
    any other: skipped with `skip_bad`, else the error. The reader starts afresh on the next line."""
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as e:
            where = f"{path}:{rows.line_num}: malformed CSV row ({e})"
            if not skip_bad:
                raise BadItem(where, "leave such rows out") from None
            skipped.append(where)
            continue
        yield row


def _parse_row(row: list[str], col_e: int, col_p: int) -> tuple[np.ndarray, int]:
    if len(row) <= max(col_e, col_p):
        raise ValueError(f"expected at least {max(col_e, col_p) + 1} columns, got {len(row)}")
    try:
        label = int(row[col_e])
    except ValueError:
        raise ValueError(f"emotion {row[col_e]!r} is not an integer") from None
    if not 0 <= label < len(CLASSES):
        raise ValueError(f"emotion {label} is not a FER2013 label (0-{len(CLASSES) - 1})")
    try:
        pixels = np.array(row[col_p].split(), dtype=np.int32)
    except ValueError:
        raise ValueError("pixels holds a value that is not an integer") from None
    if pixels.size != IMAGE_SIZE * IMAGE_SIZE:
        raise ValueError(f"expected {IMAGE_SIZE * IMAGE_SIZE} pixels, got {pixels.size}")
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError("pixel values must lie in 0-255")
    return pixels.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE), label


# --- Image folders ---------------------------------------------------------------------------------


def _find_split_dir(root: Path, split: str) -> Path:
    """`root/<split>` under any of the split's names, or `root` itself if it holds class folders."""
    if _has_class_folders(root):
        return root
    wanted = canonical_split(split) if split.lower() in SPLIT_ALIASES else split
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        name = child.name.lower()
        if name == split.lower() or SPLIT_ALIASES.get(name) == wanted:
            return child
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not is_hidden(p))
    named = ", ".join(found[:8]) + (f" and {len(found) - 8} more" if len(found) > 8 else "")
    raise MissingSplit(f"{root}: no folder for split {split!r} (found {named or 'no folders'})", split)


def _has_class_folders(folder: Path) -> bool:
    return any(p.is_dir() and class_index(p.name) is not None for p in folder.iterdir())


def _list_images(split_dir: Path, skip_bad: bool) -> list[tuple[Path, int]]:
    files: list[tuple[Path, int]] = []
    # Hidden entries are other tools' (.ipynb_checkpoints, .DS_Store, macOS's ._face.png), not faces.
    for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir() and not is_hidden(p)):
        label = class_index(class_dir.name)
        if label is None:
            if skip_bad:
                continue
            raise BadItem(
                f"{class_dir}: unknown class folder (expected one of {', '.join(CLASSES)})", "ignore it"
            )
        found = [(p, label) for p in sorted(class_dir.iterdir()) if is_image(p) and not is_hidden(p)]
        if not found:
            print(f"warning: {class_dir}: no images in this class folder", file=sys.stderr)
        files += found
    return files


def _read_folder(files: list[tuple[Path, int]], skip_bad: bool) -> tuple[np.ndarray, np.ndarray, Skipped]:
    try:
        env_max_pixels()  # not a number: said, not passed over for the default
    except ValueError as err:
        raise DataError(str(err)) from None
    images, labels, decoded, skipped = [], [], [], Skipped()
    # OpenCV releases the GIL while decoding, so threads overlap file reads and JPEG decoding. libjpeg's
    # line for a damaged file names no file: held back here, and worded below with the file's name.
    with (
        native_captured() as noise,
        ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool,
    ):
        faces = list(pool.map(_read_face, (p for p, _ in files)))
    for (path, label), face in zip(files, faces):
        if isinstance(face, str):
            why = f"{path}: unreadable image: {face}"
            if not skip_bad:
                raise BadItem(why, "leave such files out")
            skipped.append(why)
            continue
        images.append(face)
        labels.append(label)
        decoded.append(path)
    _name_damaged_jpegs(b"".join(noise), decoded)
    return _stack(images, labels, skipped)


def _name_damaged_jpegs(noise: bytes, paths: list[Path]) -> None:
    """Name the files behind libjpeg's lines by decoding the JPEGs again one at a time (only when it
    spoke: a damaged file is rare). Anything else native code wrote passes on as it was."""
    lines = noise.splitlines(keepends=True)
    pass_on(lines)  # libpng's line for a PNG that failed is said as that file's own error
    if not any(line.startswith(LIBJPEG_DAMAGE) for line in lines):
        return
    for path in paths:
        # A file changed since the first read is trained on as it was read then.
        with contextlib.suppress(OSError, UnreadableImage), open(path, "rb") as file:
            if file.read(2) == b"\xff\xd8":
                read_image(path, gray=True, warn=lambda why: print(f"warning: {why}", file=sys.stderr))


def _read_face(path: Path) -> np.ndarray | str:
    """A 48x48 grayscale face from any image file, or why it cannot be read. fer-edge's reader: the
    pixel limit is checked from the header before decoding, and a truncated JPEG is refused."""
    import cv2

    try:
        face = read_image(path, gray=True)
    except UnreadableImage as err:
        return str(err).removeprefix(f"{path}: ")
    if face.shape != (IMAGE_SIZE, IMAGE_SIZE):
        face = cv2.resize(face, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
    return face


def _stack(images: list, labels: list, skipped: Skipped) -> tuple[np.ndarray, np.ndarray, Skipped]:
    if not images:
        return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8), np.zeros((0,), np.int64), skipped
    return np.stack(images).astype(np.uint8), np.asarray(labels, dtype=np.int64), skipped


# --- Cache -----------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where loaded splits are cached: $FER_CACHE_DIR, else ~/.cache/fer-toolkit."""
    return Path(os.environ.get("FER_CACHE_DIR", Path.home() / ".cache" / "fer-toolkit")) / "data"


def _cache_key(src: Path, usage: str, skip_bad: bool, files: list[Path]) -> str:
    h = hashlib.sha256(f"{CACHE_VERSION}|{src.resolve()}|{usage}|{skip_bad}".encode())
    for path in files:
        try:
            st = path.stat()
            h.update(f"|{path}|{st.st_size}|{st.st_mtime_ns}".encode())
        except OSError:  # a broken symlink: unreadable, reported (or skipped) when the images are read
            h.update(f"|{path}|missing".encode())
    return h.hexdigest()[:24]


def _cache_path(key: str) -> Path:
    return cache_dir() / f"fer-{key}.npz"


def _read_cache(path: Path, usage: str, source: str) -> Dataset:
    with np.load(path, allow_pickle=False) as z:
        described = json.loads(str(z["skipped"]))
        # Caches written before skipped items were counted hold the list of them: still valid.
        skipped = Skipped(described) if isinstance(described, list) else Skipped(**described)
        images, labels = z["images"], z["labels"].astype(np.int64)
    # A cache another version (or a hand) wrote is rebuilt, never trained on.
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or images.dtype != np.uint8 or len(labels) != len(images):
        raise ValueError("not this version's cache")
    if len(labels) and not 0 <= labels.min() <= labels.max() < len(CLASSES):
        raise ValueError("labels out of range")
    return Dataset(images, labels, usage, source, skipped)


def _write_cache(path: Path, data: Dataset) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        skipped = {"described": data.skipped.described, "count": data.skipped.count}
        np.savez(tmp, images=data.images, labels=data.labels, skipped=json.dumps(skipped))
        os.replace(tmp, path)
    except OSError as e:  # a read-only home or a full disk is no reason to fail loading
        tmp.unlink(missing_ok=True)
        print(f"note: could not write the data cache {path} ({e.strerror or e})", file=sys.stderr)
