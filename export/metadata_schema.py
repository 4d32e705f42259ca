"""Write and read the TFLite `ModelMetadata` flatbuffer (tflite-support's metadata_schema.fbs, file id M001).

Android Studio's ML binding, the TFLite Support library and MediaPipe Tasks read this buffer to learn a
model's input colour space, size and normalization and which associated file holds the labels. The
generated Python bindings ship only with tflite-support and MediaPipe's metadata writers, neither of which
installs cleanly here, so this module builds the few tables we need with the plain `flatbuffers` runtime.
The field slots below are the schema's field order; they are an ABI and must never be renumbered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import flatbuffers
from flatbuffers import number_types as N
from flatbuffers.table import Table

FILE_IDENTIFIER = b"M001"
# The oldest metadata parser that understands every field written here (all of them date from 1.0.0).
MIN_PARSER_VERSION = "1.0.0"

# enum AssociatedFileType : byte
DESCRIPTIONS, TENSOR_AXIS_LABELS = 1, 2
# enum ColorSpaceType : byte
COLOR_SPACES = {"unknown": 0, "rgb": 1, "grayscale": 2}
# union ContentProperties / union ProcessUnitOptions: type tags
FEATURE_PROPERTIES, IMAGE_PROPERTIES = 1, 2
NORMALIZATION_OPTIONS = 1


class MetadataFormatError(ValueError):
    """The bytes are not a ModelMetadata flatbuffer."""


@dataclass
class AssociatedFile:
    name: str
    description: str = ""
    type: int = DESCRIPTIONS


@dataclass
class TensorMetadata:
    name: str
    description: str = ""
    image_color: str | None = None  # "grayscale" or "rgb" for an image tensor, None for a feature tensor
    image_size: tuple[int, int] | None = None  # (width, height)
    mean: list[float] | None = None  # out-of-graph normalization an app must apply: (x - mean) / std
    std: list[float] | None = None
    stats_min: list[float] | None = None
    stats_max: list[float] | None = None
    associated_files: list[AssociatedFile] = field(default_factory=list)


@dataclass
class ModelMetadata:
    name: str
    description: str = ""
    version: str = ""
    author: str = ""
    license: str = ""
    inputs: list[TensorMetadata] = field(default_factory=list)
    outputs: list[TensorMetadata] = field(default_factory=list)
    associated_files: list[AssociatedFile] = field(default_factory=list)
    min_parser_version: str = MIN_PARSER_VERSION


# --- Writing ---------------------------------------------------------------------------------------


def build(meta: ModelMetadata) -> bytes:
    """Serialize `meta` as a ModelMetadata flatbuffer with the M001 file identifier."""
    b = flatbuffers.Builder(1024)
    inputs = _table_vector(b, [_tensor(b, t) for t in meta.inputs])
    outputs = _table_vector(b, [_tensor(b, t) for t in meta.outputs])
    subgraph_name = b.CreateString(meta.name)
    b.StartObject(10)  # SubGraphMetadata: name, description, input/output_tensor_metadata, ...
    b.PrependUOffsetTRelativeSlot(0, subgraph_name, 0)
    b.PrependUOffsetTRelativeSlot(2, inputs, 0)
    b.PrependUOffsetTRelativeSlot(3, outputs, 0)
    subgraphs = _table_vector(b, [b.EndObject()])
    files = _table_vector(b, [_file(b, f) for f in meta.associated_files]) if meta.associated_files else None
    strings = {k: b.CreateString(v) for k, v in _model_strings(meta).items() if v}
    b.StartObject(8)  # ModelMetadata
    for slot, key in enumerate(("name", "description", "version")):
        if key in strings:
            b.PrependUOffsetTRelativeSlot(slot, strings[key], 0)
    b.PrependUOffsetTRelativeSlot(3, subgraphs, 0)
    for slot, key in ((4, "author"), (5, "license")):
        if key in strings:
            b.PrependUOffsetTRelativeSlot(slot, strings[key], 0)
    if files is not None:
        b.PrependUOffsetTRelativeSlot(6, files, 0)
    b.PrependUOffsetTRelativeSlot(7, strings["min_parser_version"], 0)
    b.Finish(b.EndObject(), file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())


def _model_strings(meta: ModelMetadata) -> dict[str, str]:
    keys = ("name", "description", "version", "author", "license", "min_parser_version")
    return {k: getattr(meta, k) for k in keys}


def _table_vector(b: flatbuffers.Builder, offsets: list[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def _float_vector(b: flatbuffers.Builder, values: list[float]) -> int:
    b.StartVector(4, len(values), 4)
    for v in reversed(values):
        b.PrependFloat32(float(v))
    return b.EndVector()


def _file(b: flatbuffers.Builder, f: AssociatedFile) -> int:
    name = b.CreateString(f.name)
    description = b.CreateString(f.description) if f.description else None
    b.StartObject(5)  # AssociatedFile: name, description, type, locale, version
    b.PrependUOffsetTRelativeSlot(0, name, 0)
    if description is not None:
        b.PrependUOffsetTRelativeSlot(1, description, 0)
    b.PrependInt8Slot(2, f.type, 0)
    return b.EndObject()


def _content(b: flatbuffers.Builder, t: TensorMetadata) -> int:
    if t.image_color is None:
        b.StartObject(0)  # FeatureProperties has no fields
        props, kind = b.EndObject(), FEATURE_PROPERTIES
    else:
        size = None
        if t.image_size is not None:
            b.StartObject(2)  # ImageSize: width, height
            b.PrependUint32Slot(0, t.image_size[0], 0)
            b.PrependUint32Slot(1, t.image_size[1], 0)
            size = b.EndObject()
        b.StartObject(2)  # ImageProperties: color_space, default_size
        b.PrependInt8Slot(0, COLOR_SPACES[t.image_color], 0)
        if size is not None:
            b.PrependUOffsetTRelativeSlot(1, size, 0)
        props, kind = b.EndObject(), IMAGE_PROPERTIES
    b.StartObject(3)  # Content: content_properties_type, content_properties, range
    b.PrependUint8Slot(0, kind, 0)
    b.PrependUOffsetTRelativeSlot(1, props, 0)
    return b.EndObject()


def _normalization(b: flatbuffers.Builder, mean: list[float], std: list[float]) -> int:
    mean_v, std_v = _float_vector(b, mean), _float_vector(b, std)
    b.StartObject(2)  # NormalizationOptions: mean, std
    b.PrependUOffsetTRelativeSlot(0, mean_v, 0)
    b.PrependUOffsetTRelativeSlot(1, std_v, 0)
    options = b.EndObject()
    b.StartObject(2)  # ProcessUnit: options_type, options
    b.PrependUint8Slot(0, NORMALIZATION_OPTIONS, 0)
    b.PrependUOffsetTRelativeSlot(1, options, 0)
    return _table_vector(b, [b.EndObject()])


def _stats(b: flatbuffers.Builder, lo: list[float], hi: list[float]) -> int:
    hi_v, lo_v = _float_vector(b, hi), _float_vector(b, lo)
    b.StartObject(2)  # Stats: max, min
    b.PrependUOffsetTRelativeSlot(0, hi_v, 0)
    b.PrependUOffsetTRelativeSlot(1, lo_v, 0)
    return b.EndObject()


def _tensor(b: flatbuffers.Builder, t: TensorMetadata) -> int:
    name = b.CreateString(t.name)
    description = b.CreateString(t.description) if t.description else None
    content = _content(b, t)
    units = _normalization(b, t.mean, t.std) if t.mean is not None and t.std is not None else None
    stats = (
        _stats(b, t.stats_min, t.stats_max) if t.stats_min is not None and t.stats_max is not None else None
    )
    files = _table_vector(b, [_file(b, f) for f in t.associated_files]) if t.associated_files else None
    b.StartObject(7)  # TensorMetadata
    b.PrependUOffsetTRelativeSlot(0, name, 0)
    if description is not None:
        b.PrependUOffsetTRelativeSlot(1, description, 0)
    b.PrependUOffsetTRelativeSlot(3, content, 0)
    if units is not None:
        b.PrependUOffsetTRelativeSlot(4, units, 0)
    if stats is not None:
        b.PrependUOffsetTRelativeSlot(5, stats, 0)
    if files is not None:
        b.PrependUOffsetTRelativeSlot(6, files, 0)
    return b.EndObject()


# --- Reading ---------------------------------------------------------------------------------------


def parse(buf: bytes) -> ModelMetadata:
    """Decode a ModelMetadata flatbuffer written by any tool (tflite-support, MediaPipe or `build`)."""
    buf = bytearray(buf)
    if len(buf) < 8 or bytes(buf[4:8]) != FILE_IDENTIFIER:
        raise MetadataFormatError("not a TFLite ModelMetadata buffer (file identifier M001 missing)")
    try:
        root = _Reader(
            buf, N.UOffsetTFlags.py_type(flatbuffers.encode.Get(N.UOffsetTFlags.packer_type, buf, 0))
        )
        return _read_model(root)
    except (IndexError, ValueError, UnicodeDecodeError) as e:
        raise MetadataFormatError(f"damaged ModelMetadata buffer ({e})") from None


class _Reader:
    """Typed field access on one flatbuffer table, by slot number."""

    def __init__(self, buf: bytearray, pos: int):
        self.t = Table(buf, pos)

    def _offset(self, slot: int) -> int:
        return self.t.Offset(4 + 2 * slot)

    def string(self, slot: int) -> str:
        o = self._offset(slot)
        return self.t.String(o + self.t.Pos).decode("utf-8") if o else ""

    def int8(self, slot: int) -> int:
        o = self._offset(slot)
        return self.t.Get(N.Int8Flags, o + self.t.Pos) if o else 0

    def uint32(self, slot: int) -> int:
        o = self._offset(slot)
        return self.t.Get(N.Uint32Flags, o + self.t.Pos) if o else 0

    def table(self, slot: int) -> _Reader | None:
        o = self._offset(slot)
        return _Reader(self.t.Bytes, self.t.Indirect(o + self.t.Pos)) if o else None

    def tables(self, slot: int) -> list[_Reader]:
        o = self._offset(slot)
        if not o:
            return []
        start = self.t.Vector(o)
        return [_Reader(self.t.Bytes, self.t.Indirect(start + 4 * i)) for i in range(self.t.VectorLen(o))]

    def floats(self, slot: int) -> list[float] | None:
        o = self._offset(slot)
        if not o:
            return None
        start = self.t.Vector(o)
        return [self.t.Get(N.Float32Flags, start + 4 * i) for i in range(self.t.VectorLen(o))]


def _read_file(r: _Reader) -> AssociatedFile:
    return AssociatedFile(name=r.string(0), description=r.string(1), type=r.int8(2))


def _read_tensor(r: _Reader) -> TensorMetadata:
    t = TensorMetadata(name=r.string(0), description=r.string(1))
    content = r.table(3)
    if content is not None and content.int8(0) == IMAGE_PROPERTIES:
        props = content.table(1)
        colors = {v: k for k, v in COLOR_SPACES.items()}
        t.image_color = colors.get(props.int8(0), "unknown") if props else "unknown"
        size = props.table(1) if props else None
        t.image_size = (size.uint32(0), size.uint32(1)) if size else None
    for unit in r.tables(4):
        options = unit.table(1)
        if unit.int8(0) == NORMALIZATION_OPTIONS and options is not None:
            t.mean, t.std = options.floats(0), options.floats(1)
    stats = r.table(5)
    if stats is not None:
        t.stats_max, t.stats_min = stats.floats(0), stats.floats(1)
    t.associated_files = [_read_file(f) for f in r.tables(6)]
    return t


def _read_model(r: _Reader) -> ModelMetadata:
    meta = ModelMetadata(
        name=r.string(0),
        description=r.string(1),
        version=r.string(2),
        author=r.string(4),
        license=r.string(5),
        associated_files=[_read_file(f) for f in r.tables(6)],
        min_parser_version=r.string(7),
    )
    subgraphs = r.tables(3)
    if subgraphs:
        meta.inputs = [_read_tensor(t) for t in subgraphs[0].tables(2)]
        meta.outputs = [_read_tensor(t) for t in subgraphs[0].tables(3)]
    return meta
