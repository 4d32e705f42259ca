"""Finding and reading image files (the inputs of `predict` and of `run --source DIR`).

An image file is untrusted input: a 1 MB PNG can hold 30000x30000 pixels, 2.7 GB once decoded. Its
size is read from the header and refused over a pixel limit before anything is decoded (PNG, JPEG, BMP,
GIF here; OpenCV's own OPENCV_IO_MAX_IMAGE_PIXELS, set to the same limit, covers the other formats).
"""

from __future__ import annotations

import functools
import os
import struct
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from fer_edge.errors import SourceError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}
ENV_MAX_PIXELS = "FER_MAX_PIXELS"
OPENCV_MAX_PIXELS = "OPENCV_IO_MAX_IMAGE_PIXELS"
STDIN = "-"  # an input of that name is an image piped in
# 50 megapixels: any phone photo, and 150 MB decoded, which a Raspberry Pi can hold.
DEFAULT_MAX_PIXELS = 50_000_000


def env_max_pixels() -> int:
    """$FER_MAX_PIXELS, or the default; a ValueError naming the variable when it is not a pixel count."""
    raw = os.environ.get(ENV_MAX_PIXELS, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
        raise ValueError(f"${ENV_MAX_PIXELS}={raw!r}: give a positive whole number of pixels")
    return int(raw)


try:
    max_pixels = env_max_pixels()
except ValueError:  # reported when a command sets its limit (set_max_pixels)
    max_pixels = DEFAULT_MAX_PIXELS
# How the user sets the limit, as errors say it: --max-pixels only in the commands that take it.
limit_hint = f"${ENV_MAX_PIXELS}"


class UnreadableImage(SourceError):
    """An image file that cannot be decoded, or is over the pixel limit; the message says which."""


def set_max_pixels(limit: int | None) -> None:
    """The pixel limit for every image read after this (`--max-pixels`; None: $FER_MAX_PIXELS or 50 M)."""
    global max_pixels, limit_hint
    max_pixels = int(limit) if limit else env_max_pixels()
    limit_hint = f"--max-pixels or ${ENV_MAX_PIXELS}"
    if "cv2" not in sys.modules:  # OpenCV reads its own limit (the other formats') once, as it loads
        os.environ[OPENCV_MAX_PIXELS] = str(max_pixels)


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES or (path.suffix.lower() == ".gif" and _reads_gif())


@functools.cache
def _reads_gif() -> bool:
    """OpenCV decodes GIF from 4.11 on; with an older one a folder's GIFs are not images to us."""
    import cv2

    return cv2.imdecode(np.frombuffer(_ONE_PIXEL_GIF, np.uint8), cv2.IMREAD_GRAYSCALE) is not None


_ONE_PIXEL_GIF = (
    b"GIF87a\x01\x00\x01\x00\x81\x00\x00"
    + bytes(12)
    + b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x08\x04\x00\x01\x04\x04\x00;"
)


def is_hidden(path: Path) -> bool:
    """Another tool's (.ipynb_checkpoints/, .thumbnails/, macOS's ._photo.jpg): not the user's images."""
    return path.name.startswith(".")


def _under_hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def list_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Image files named or found (recursively, sorted) in the folders named; an error for a missing path."""
    return [path for path, _ in named_images(inputs)]


def named_images(inputs: Iterable[str | Path]) -> list[tuple[Path, Path]]:
    """As `list_images`, each with its name: its path inside the folder named, or its file name."""
    out: list[tuple[Path, Path]] = []
    for item in inputs:
        if not str(item).strip():  # Path("") is the current folder: an empty $VAR must not search it
            raise SourceError("an input is empty: give image files or folders")
        if str(item) == STDIN:
            out.append(_stdin_image(out))
            continue
        path = Path(item)
        if path.is_dir():
            found = (p for p in path.rglob("*") if p.is_file() and is_image(p))
            names = sorted(p.relative_to(path) for p in found)
            out.extend((path / name, name) for name in names if not _under_hidden(name))
        elif path.is_file():
            out.append((path, Path(path.name)))
        elif path.exists():  # a device, pipe or socket: no size to check before reading it
            raise SourceError(f"{path}: not a regular file or folder")
        else:
            raise SourceError(f"{path}: no such file or folder")
    if not out:
        raise SourceError(f"no images found in {', '.join(str(i) for i in inputs)}")
    return out


def _stdin_image(found: list[tuple[Path, Path]]) -> tuple[Path, Path]:
    """`-`: an image piped in (`curl ... | fer-edge predict -`), read once, named `stdin`."""
    if any(str(path) == STDIN for path, _ in found):
        raise SourceError("- (stdin) is named twice; it holds one image")
    if sys.stdin is None or sys.stdin.isatty():  # reading would wait for a terminal's input forever
        raise SourceError("-: stdin is a terminal; pipe an image in (cat photo.jpg | fer-edge predict -)")
    return Path(STDIN), Path("stdin")


def read_image(path: Path, gray: bool = False, warn: Callable[[str], None] | None = None) -> np.ndarray:
    """The image as BGR (or gray) uint8; UnreadableImage when it cannot be decoded or is too large.
    With `warn` (single-threaded callers), libjpeg's and libpng's own lines on stderr give way to ours:
    `warn` hears of a JPEG that decodes with damage, and a damaged PNG's error says what libpng found."""
    import cv2

    try:
        data = _read_bounded(path)
    except OSError as err:
        raise UnreadableImage(f"{path}: cannot read it ({err.strerror or err})") from None
    if data[:2] == b"\xff\xd8" and _truncated_jpeg(data):  # libjpeg: gray where cut
        raise UnreadableImage(f"{path}: a truncated JPEG (no end-of-image marker)")
    if not data:  # a file being copied in, or a failed download: say so, not "not an image"
        what = "an empty file" if path.is_file() else "no longer a file"
        what = "a broken link (its target is gone)" if path.is_symlink() and not path.exists() else what
        what = "nothing piped in" if str(path) == STDIN else what
        raise UnreadableImage(f"{path}: {what}")
    try:
        flags = cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR
        if warn is not None and data.startswith(TALKATIVE_FORMATS):  # capture only where a decoder talks
            image = _decode_reporting_damage(path, data, flags, warn)
        else:
            image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as err:  # OpenCV 4.14 raises where earlier versions returned nothing
        if "CV_IO_MAX_IMAGE_PIXELS" in str(err):  # its header said so: nothing was decoded
            raw = os.environ.get(OPENCV_MAX_PIXELS, "").strip()  # the user's own may read "100MB"
            limit = f"{int(raw):,}" if raw.isascii() and raw.isdigit() else raw or f"{max_pixels:,}"
            raise UnreadableImage(f"{path}: over the limit of {limit} pixels ({limit_hint})") from None
        image = None
    if image is None:
        raise UnreadableImage(f"{path}: not an image OpenCV can read")
    if image.shape[0] * image.shape[1] > max_pixels:  # a format whose header is not read above
        raise UnreadableImage(
            f"{path}: {image.shape[1]}x{image.shape[0]} pixels, over the limit of {max_pixels:,}"
        )
    return image


def _decode_reporting_damage(path: Path, data: bytearray, flags: int, warn: Callable[[str], None]):
    """Decode an image; the decoders' own lines on fd 2, which name no file, are worded with its name:
    libjpeg's "Corrupt JPEG data: ..." (damaged but decodable, gray where the damage is) becomes a
    warning, libpng's error the reason a PNG is unreadable. Anything else written meanwhile passes on."""
    import cv2

    from fer_edge.quiet import native_captured

    with native_captured() as captured:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    lines = b"".join(captured).splitlines(keepends=True)
    pass_on(lines)
    if image is not None and (why := _said(lines, LIBJPEG_DAMAGE)):
        warn(f"{path}: damaged JPEG data ({why}); decoded as far as it goes")
    if image is None and (why := _said(lines, LIBPNG_ERROR)):
        raise UnreadableImage(f"{path}: damaged PNG data ({why})")
    return image


def _said(lines: list[bytes], prefix: bytes) -> str:
    first = next((line for line in lines if line.startswith(prefix)), b"")
    return first.removeprefix(prefix).decode(errors="replace").strip()


def pass_on(lines: list[bytes]) -> None:
    """Write on to fd 2 what native code wrote there while it was captured, less the image decoders'
    lines, which the caller words itself (another thread's output, a progress bar's, stays as it was)."""
    if other := b"".join(line for line in lines if not line.startswith(DECODER_LINES)):
        os.write(2, other)


# What decoders inside OpenCV print themselves: libjpeg for a JPEG it decodes in spite of damage,
# libpng for a PNG it cannot decode, or a harmless quirk ("iCCP: known incorrect sRGB profile").
LIBJPEG_DAMAGE = b"Corrupt JPEG data: "
LIBPNG_ERROR = b"libpng error: "
DECODER_LINES = (LIBJPEG_DAMAGE, LIBPNG_ERROR, b"libpng warning: ")
TALKATIVE_FORMATS = (b"\xff\xd8", b"\x89PNG\r\n\x1a\n")  # JPEG, PNG
HEADER_BYTES = 65536  # where a PNG, JPEG, BMP or GIF says its size


def _check_header(path: Path, head: bytes) -> None:
    """Refuse an image whose header says it is over the pixel limit, before it is decoded."""
    size = header_size(head)
    if size and size[0] * size[1] > max_pixels:
        raise UnreadableImage(
            f"{path}: {size[0]}x{size[1]} pixels, over the limit of {max_pixels:,} ({limit_hint})"
        )


def _read_bounded(path: Path) -> bytearray:
    """The file's bytes; refused unread when larger than an image of its header's size, or within the
    pixel limit, can be (8 bytes a pixel: 16-bit RGBA, uncompressed, plus room for metadata), so a
    huge or sparse file is never read into memory. A pipe has no size to check first: its header is."""
    if str(path) == STDIN:
        return _read_stream(path, sys.stdin.buffer, None)
    if not path.is_file():
        return bytearray()
    with open(path, "rb") as stream:
        return _read_stream(path, stream, path.stat().st_size)


def _read_stream(path: Path, stream, size: int | None) -> bytearray:
    head = stream.read(HEADER_BYTES)
    _check_header(path, head)
    limit = max_pixels * 8 + (1 << 20)
    what = f"an image of {max_pixels:,} pixels takes ({limit_hint})"
    declared = header_size(head)
    if declared and declared[0] * declared[1] * 8 + METADATA_BYTES < limit:
        # Far more bytes than its pixels need: padding or a payload, not a photo.
        limit = declared[0] * declared[1] * 8 + METADATA_BYTES
        what = f"a {declared[0]}x{declared[1]} image takes"
    if size is not None and size > limit:
        raise UnreadableImage(f"{path}: {size / 2**20:,.0f} MiB, more than {what}")
    # Grown in place, chunk by chunk: one copy of the bytes in memory, not a buffer and its join.
    data = bytearray(head)
    while len(data) <= limit and (chunk := stream.read(min(READ_CHUNK, limit + 1 - len(data)))):
        data += chunk
    if len(data) > limit:  # a pipe, or a file that grew since its size was read
        raise UnreadableImage(f"{path}: over {limit / 2**20:,.0f} MiB, more than {what}")
    return data


READ_CHUNK = 4 << 20


# Room beyond the pixels for what a real photo carries besides them (EXIF, ICC profile, XMP, thumbnail).
METADATA_BYTES = 16 << 20


def header_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, JPEG, BMP or GIF header; None for another format or a short header."""
    try:
        if head[:8] == b"\x89PNG\r\n\x1a\n":
            return struct.unpack(">II", head[16:24])
        if head[:2] == b"BM":
            width, height = struct.unpack("<ii", head[18:26])
            return abs(width), abs(height)
        if head[:4] == b"GIF8":
            return struct.unpack("<HH", head[6:10])
        if head[:2] == b"\xff\xd8":
            return _jpeg_size(head)
    except struct.error:
        return None
    return None


def _jpeg_segments(data: bytes):
    """(marker, offset) of each JPEG header segment, up to and including the start of scan (DA)."""
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker in (0xD8, 0x01, 0xFF) or 0xD0 <= marker <= 0xD7:  # markers without a length, fill
            i += 1 if marker == 0xFF else 2
            continue
        yield marker, i
        if marker == 0xDA:
            return
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    for marker, i in _jpeg_segments(head):
        # Start-of-frame markers hold the size; C4, C8 and CC are other tables.
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and i + 9 <= len(head):
            height, width = struct.unpack(">HH", head[i + 5 : i + 9])
            return width, height
    return None


def _truncated_jpeg(data: bytes | bytearray) -> bool:
    """A JPEG whose image data stops before its end-of-image marker. The scan starts after the header
    segments (an EXIF thumbnail, with its own markers, is inside one); its entropy-coded data never
    holds FF D9, so the first FF D9 after it is the image's end. Data after the end (a phone's motion
    photo) does not count."""
    if data[:2] != b"\xff\xd8":
        return False
    scan = next((i for marker, i in _jpeg_segments(data) if marker == 0xDA), None)
    return scan is not None and data.find(b"\xff\xd9", scan) < 0
