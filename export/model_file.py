"""Make a .tflite self-describing, and read that description back.

Two layers, both as TFLite's own metadata populator writes them:
  1. a `TFLITE_METADATA` entry in the model's `metadata` list pointing at a buffer that holds a
     ModelMetadata flatbuffer (what Android Studio, TFLite Support and MediaPipe Tasks read);
  2. associated files (labels.txt, fer_model.json) appended to the flatbuffer as an uncompressed zip
     archive, so `zipfile.ZipFile(model.tflite)` opens them and the interpreter ignores them.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from pathlib import Path

import flatbuffers
import numpy as np

from fer_edge.errors import ModelError
from fer_edge.model_info import (
    CRC_FIELD,
    FORMAT,
    LABELS_TXT,
    MODEL_JSON,
    card_problem,
    flatbuffer_crc32,
    packed_files,
    read_model_bytes,
)
from fer_export import metadata_schema as ms

METADATA_NAME = "TFLITE_METADATA"
TFLITE_IDENTIFIER = b"TFL3"
# The names of the packed files and the card's format are the runtime's: the reader defines them.
LABELS_FILE = LABELS_TXT
CARD_FILE = MODEL_JSON
CARD_FORMAT = FORMAT


class ModelFileError(ValueError):
    """The bytes are not a TFLite model, or its embedded description is damaged."""


def _schema():
    # ai-edge-litert ships the generated TFLite schema bindings; they are the interpreter's own schema.
    from ai_edge_litert import schema_py_generated as schema

    return schema


def check_tflite(model: bytes) -> None:
    if len(model) < 8 or model[4:8] != TFLITE_IDENTIFIER:
        raise ModelFileError("not a TFLite flatbuffer (file identifier TFL3 missing)")


def embed(model: bytes, metadata: bytes, files: dict[str, bytes]) -> bytes:
    """The model with `metadata` as its TFLITE_METADATA buffer and `files` zip-appended.

    Any previous TFLITE_METADATA entry and appended archive are replaced, so embedding is idempotent.
    A card among `files` gets the CRC-32 of the model's bytes, which every reader checks.
    """
    check_tflite(model)
    schema = _schema()
    flat = schema.ModelT.InitFromObj(schema.Model.GetRootAs(bytearray(model), 0))
    flat.buffers = flat.buffers or []
    _inline_external_buffers(flat, model)
    flat.metadata = [m for m in (flat.metadata or []) if _name(m.name) != METADATA_NAME]
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(metadata, dtype=np.uint8)
    flat.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(flat.buffers) - 1
    flat.metadata.append(entry)
    builder = flatbuffers.Builder(len(model) + len(metadata) + 1024)
    builder.Finish(flat.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    flatbuffer = bytes(builder.Output())
    if CARD_FILE in files:
        files = {**files, CARD_FILE: with_crc(files[CARD_FILE], flatbuffer)}
    return _append_zip(flatbuffer, files)


def with_crc(packed_card: bytes, flatbuffer: bytes) -> bytes:
    """The card (as packed) with the flatbuffer's CRC-32 as its last field."""
    card = json.loads(packed_card.decode("utf-8"))
    return card_json({**card, CRC_FIELD: flatbuffer_crc32(flatbuffer)})


def card_json(card: dict) -> bytes:
    """A card as it is packed: indented JSON, readable with `unzip -p model.tflite fer_model.json`."""
    return (json.dumps(card, indent=2) + "\n").encode("utf-8")


def _inline_external_buffers(flat, model: bytes) -> None:
    """Move buffers stored after the flatbuffer (offset/size, as litert-quantizer writes them) inline.

    Re-serializing keeps only the flatbuffer itself, so data addressed by offset would be cut off.
    """
    for buffer in flat.buffers:
        offset, size = int(getattr(buffer, "offset", 0) or 0), int(getattr(buffer, "size", 0) or 0)
        if offset > 1:
            if offset + size > len(model):
                raise ModelFileError(
                    f"damaged TFLite model (buffer data at {offset}+{size} lies past its end)"
                )
            buffer.data = np.frombuffer(model, dtype=np.uint8, count=size, offset=offset)
            buffer.offset, buffer.size = 0, 0


def _name(name) -> str:
    return name.decode("utf-8") if isinstance(name, bytes) else str(name or "")


def _append_zip(model: bytes, files: dict[str, bytes]) -> bytes:
    stream = io.BytesIO(model)
    # ZIP_STORED: TFLite Support and MediaPipe map associated files in place and refuse compressed ones.
    with zipfile.ZipFile(stream, "a", compression=zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data)
    return stream.getvalue()


def read_metadata(model: bytes) -> ms.ModelMetadata | None:
    """The model's ModelMetadata, or None when it has no TFLITE_METADATA entry."""
    check_tflite(model)
    schema = _schema()
    try:
        root = schema.Model.GetRootAs(bytearray(model), 0)
        for i in range(root.MetadataLength()):
            entry = root.Metadata(i)
            if _name(entry.Name()) == METADATA_NAME:
                data = root.Buffers(entry.Buffer()).DataAsNumpy()
                return ms.parse(bytes(data))
    except struct.error:  # its reason is flatbuffers' internal offsets, which say nothing to a user
        reason = f"cut short? it points past its {len(model):,} bytes"
        raise ModelFileError(f"damaged TFLite model ({reason})") from None
    except (IndexError, ValueError, TypeError, AttributeError) as e:
        raise ModelFileError(f"damaged TFLite model ({e})") from None
    return None


def read_files(model: bytes) -> dict[str, bytes]:
    """The associated files zip-appended to the model ({} when there are none), each bounded in size
    (the runtime's reader: a model file is untrusted input)."""
    try:
        return packed_files(model, names=None)
    except ModelError as e:
        raise ModelFileError(str(e)) from None


def read_card(path_or_bytes: str | Path | bytes) -> dict | None:
    """The fer_model.json model card inside a .tflite, or None when it has none."""
    if isinstance(path_or_bytes, bytes):
        model = path_or_bytes
    else:
        try:
            model = read_model_bytes(path_or_bytes)
        except ModelError as e:
            raise ModelFileError(str(e)) from None
    raw = read_files(model).get(CARD_FILE)
    if raw is None:
        return None
    try:
        card = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{CARD_FILE} inside the model is not valid JSON ({e})") from None
    problem = card_problem(card)
    if problem:
        raise ModelFileError(f"{CARD_FILE} inside the model {problem}")
    return card
