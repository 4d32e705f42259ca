"""What a .tflite says about itself: labels and input spec from the files packed into it.

Export appends `fer_model.json` and `labels.txt` as a zip archive at the end of the .tflite, the way
TFLite's metadata populator packs associated files, so `zipfile` reads them without any TFLite library.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from fer_edge.errors import ModelError

MODEL_JSON = "fer_model.json"
LABELS_TXT = "labels.txt"
FORMAT = "fer-model/1"
# The card's CRC-32 of the model's own bytes (all before the packed files), written at export: weights
# damaged on a disk or in a copy would otherwise run, scoring faces a little wrong without a word.
CRC_FIELD = "flatbuffer_crc32"
HEX_DIGITS = "0123456789abcdefABCDEF"


@dataclass
class ModelInfo:
    labels: list[str] | None = None
    name: str | None = None
    variant: str | None = None
    input: dict = field(default_factory=dict)
    output: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)


# A model file is untrusted input: its card and labels are a few kB, so anything packed larger than this
# is refused before it is read (a zip entry can claim any size, and decompress to far more than it takes).
MAX_PACKED_BYTES = 1 << 20
# A FER model is a few MB and a TFLite flatbuffer cannot pass 2 GiB: a larger file is refused before
# anything reads it whole (fer-export inspect) or maps it (the interpreter).
MAX_MODEL_BYTES = 512 << 20


def check_model_size(path: str | Path) -> None:
    size = Path(path).stat().st_size
    if size > MAX_MODEL_BYTES:
        raise ModelError(
            f"{path}: {size / 2**20:,.0f} MiB, larger than a model file may be ({MAX_MODEL_BYTES >> 20} MiB)"
        )


def read_model_bytes(path: str | Path) -> bytes:
    """The whole model file, once its size is checked."""
    check_model_size(path)
    return Path(path).read_bytes()


def read_labels_file(path: str | Path) -> list[str]:
    """The labels in a text file, one per line; read with the bound of packed labels (/dev/zero or a
    mistaken video would otherwise be read until memory runs out)."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise ModelError(f"{path}: not a regular file; --labels takes a text file, one label per line")
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_PACKED_BYTES + 1)
    except OSError as err:
        raise ModelError(f"{path}: cannot read labels ({err.strerror or err})") from err
    if len(data) > MAX_PACKED_BYTES:
        raise ModelError(f"{path}: larger than {MAX_PACKED_BYTES:,} bytes; not a labels file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelError(f"{path}: not UTF-8 text; --labels takes a text file, one label per line") from None
    labels = parse_labels(text)
    if not labels:
        raise ModelError(f"{path}: no labels in it (one label per line)")
    return labels


def parse_labels(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def packed_files(source: str | Path | bytes, names=(MODEL_JSON, LABELS_TXT)) -> dict[str, bytes]:
    """The associated files packed into a .tflite (those in `names`; all when None), each at most
    MAX_PACKED_BYTES; empty for a plain .tflite. A damaged, encrypted, oversized or oddly compressed
    entry is a ModelError with one line."""
    where = "the model" if isinstance(source, bytes) else str(source)
    try:
        with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source) as archive:
            entries = [i for i in archive.infolist() if names is None or i.filename in names]
            return {i.filename: _read_entry(archive, i, where) for i in entries}
    except (zipfile.BadZipFile, OSError, KeyError, EOFError):
        if _cut_off_packing(source):
            raise ModelError(
                f"{where}: its packed {MODEL_JSON} and {LABELS_TXT} are cut off or damaged "
                "(an interrupted copy?); copy the model again"
            ) from None
        return {}


def _cut_off_packing(source: str | Path | bytes) -> bool:
    """Whether a zip entry of ours starts near the end although no archive can be read: a model whose
    copy stopped inside its packed files, which would otherwise read as a model that carries none."""
    tail_bytes = 2 * MAX_PACKED_BYTES + 4096  # both files at their largest, and their headers
    if isinstance(source, bytes):
        tail = source[-tail_bytes:]
    else:
        try:
            with open(source, "rb") as file:
                file.seek(max(0, file.seek(0, 2) - tail_bytes))
                tail = file.read(tail_bytes)
        except OSError:
            return False
    names = (MODEL_JSON.encode(), LABELS_TXT.encode())
    start = tail.find(b"PK\x03\x04")
    while start >= 0:  # a local file header: its name follows 30 bytes in
        name_length = int.from_bytes(tail[start + 26 : start + 28], "little")
        if tail[start + 30 : start + 30 + name_length] in names:
            return True
        start = tail.find(b"PK\x03\x04", start + 1)
    return False


def _read_entry(archive: zipfile.ZipFile, entry: zipfile.ZipInfo, where: str) -> bytes:
    if entry.file_size > MAX_PACKED_BYTES:
        raise ModelError(
            f"{where}: packed file {entry.filename} claims {entry.file_size:,} bytes "
            f"(at most {MAX_PACKED_BYTES:,} read); not a model this toolkit wrote"
        )
    if entry.flag_bits & 0x1:  # zipfile would name the entry in its repr; we name it in words
        raise ModelError(f"{where}: packed file {entry.filename} is encrypted; models carry plain files")
    try:
        with archive.open(entry) as f:
            data = f.read(MAX_PACKED_BYTES + 1)  # the header may lie about the size
    except NotImplementedError:
        raise ModelError(f"{where}: packed file {entry.filename} uses an unsupported compression") from None
    except RuntimeError as err:
        raise ModelError(f"{where}: packed file {entry.filename} cannot be read ({err})") from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise ModelError(f"{where}: packed file {entry.filename} is damaged ({err})") from None
    if len(data) > MAX_PACKED_BYTES:
        raise ModelError(f"{where}: packed file {entry.filename} is larger than {MAX_PACKED_BYTES:,} bytes")
    return data


# The card's fields and the JSON types they must have; a model file is untrusted, so a wrong type is
# refused where the card is read rather than met as a TypeError wherever the field is used.
FIELD_TYPES = {"labels": list, "name": str, "variant": str, "input": dict, "output": dict, "source": dict}
JSON_TYPE_NAMES = {list: "list", str: "string", dict: "object"}


def card_problem(meta) -> str | None:
    """What is wrong with a parsed model card (`fer-edge` and `fer-export inspect` both ask), or None."""
    family = FORMAT.split("/")[0] + "/"  # any version of the format: fields are only ever added
    if not isinstance(meta, dict) or not str(meta.get("format", "")).startswith(family):
        return f"is not in the {FORMAT} format"
    for key, kind in FIELD_TYPES.items():
        if meta.get(key) is not None and not isinstance(meta[key], kind):
            return f"has a malformed {key!r} (not a JSON {JSON_TYPE_NAMES[kind]})"
    if not all(isinstance(x, str) for x in meta.get("labels") or []):
        return "has a malformed 'labels' (not a list of names)"
    crc = meta.get(CRC_FIELD)
    if crc is not None and not (isinstance(crc, str) and len(crc) == 8 and set(crc) <= set(HEX_DIGITS)):
        return f"has a malformed {CRC_FIELD!r} (not 8 hexadecimal digits)"
    # What is printed to a terminal must be text: an escape sequence in a hostile card rewrites the screen.
    for key in ("name", "variant"):
        if isinstance(meta.get(key), str) and not meta[key].isprintable():
            return f"has a {key!r} with control characters"
    if not all(x.isprintable() for x in meta.get("labels") or []):
        return "has 'labels' with control characters"
    return None


def read_model_info(path: str | Path | bytes) -> ModelInfo:
    """The model's card and labels (a path, or the model's bytes); its weights checked against the card."""
    files = packed_files(path)
    where = "the model" if isinstance(path, bytes) else str(path)
    info = ModelInfo()
    if MODEL_JSON in files:
        try:
            meta = json.loads(files[MODEL_JSON].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ModelError(f"{where}: its {MODEL_JSON} is not valid JSON ({err})") from err
        problem = card_problem(meta)
        if problem:
            raise ModelError(f"{where}: its {MODEL_JSON} {problem}")
        if meta.get(CRC_FIELD):
            check_flatbuffer_crc(path, meta[CRC_FIELD])
        info.labels = [str(x) for x in meta.get("labels") or []] or None
        info.name = meta.get("name")
        info.variant = meta.get("variant")
        info.input = dict(meta.get("input") or {})
        info.output = dict(meta.get("output") or {})
        info.source = dict(meta.get("source") or {})
    if info.labels is None and LABELS_TXT in files:
        info.labels = parse_labels(files[LABELS_TXT].decode("utf-8", errors="replace")) or None
    return info


def flatbuffer_crc32(flatbuffer: bytes) -> str:
    return f"{zlib.crc32(flatbuffer):08x}"


def check_flatbuffer_crc(source: str | Path | bytes, expected: str) -> None:
    """ModelError unless the bytes before the packed files have the CRC-32 the card records."""
    where = "the model" if isinstance(source, bytes) else str(source)
    with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source) as archive:
        end = min(entry.header_offset for entry in archive.infolist())  # where the packed files start
    if isinstance(source, bytes):
        crc = zlib.crc32(source[:end])
    else:
        crc = 0
        with open(source, "rb") as file:
            while end > 0 and (chunk := file.read(min(end, 1 << 20))):
                crc, end = zlib.crc32(chunk, crc), end - len(chunk)
    if f"{crc:08x}" != expected.lower():
        raise ModelError(
            f"{where}: damaged: its weights do not match the CRC-32 written at export "
            f"({expected.lower()}, now {crc:08x}); copy the model again, or export it again if another "
            "tool rewrote it"
        )
