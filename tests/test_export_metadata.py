"""The TFLite ModelMetadata flatbuffer and the zip-appended associated files, without TensorFlow."""

from __future__ import annotations

import io
import zipfile

import flatbuffers
import pytest

from fer_export import metadata_schema as ms
from fer_export.model_file import ModelFileError, check_tflite, read_card, read_files
from fer_export.representative import stratified_indices


def full_metadata() -> ms.ModelMetadata:
    return ms.ModelMetadata(
        name="fer_cnn",
        description="emotions",
        version="3",
        author="someone",
        license="Apache-2.0",
        inputs=[
            ms.TensorMetadata(
                name="image",
                description="a face",
                image_color="grayscale",
                image_size=(48, 48),
                mean=[0.0],
                std=[1.0],
                stats_min=[0.0],
                stats_max=[255.0],
            )
        ],
        outputs=[
            ms.TensorMetadata(
                name="probabilities",
                stats_min=[0.0],
                stats_max=[1.0],
                associated_files=[ms.AssociatedFile("labels.txt", "labels", ms.TENSOR_AXIS_LABELS)],
            )
        ],
        associated_files=[ms.AssociatedFile("fer_model.json", "card", ms.DESCRIPTIONS)],
    )


def test_metadata_round_trips_through_the_flatbuffer():
    meta = full_metadata()
    buf = ms.build(meta)
    assert buf[4:8] == b"M001"
    assert ms.parse(buf) == meta


def test_rgb_and_feature_tensors_round_trip():
    meta = ms.ModelMetadata(
        name="m",
        inputs=[
            ms.TensorMetadata(
                name="rgb", image_color="rgb", image_size=(48, 48), mean=[0, 0, 0], std=[1, 1, 1]
            )
        ],
        outputs=[ms.TensorMetadata(name="scores")],
    )
    back = ms.parse(ms.build(meta))
    assert back.inputs[0].image_color == "rgb" and back.inputs[0].mean == [0.0, 0.0, 0.0]
    assert back.outputs[0].image_color is None and back.outputs[0].associated_files == []


def test_root_table_fields_sit_in_the_schema_slots():
    """Read the root table with the bare flatbuffers runtime: slot numbers are the schema's ABI."""
    buf = bytearray(ms.build(full_metadata()))
    root = flatbuffers.encode.Get(flatbuffers.number_types.UOffsetTFlags.packer_type, buf, 0)
    table = flatbuffers.table.Table(buf, root)

    def string(slot):
        o = table.Offset(4 + 2 * slot)
        return table.String(o + table.Pos).decode()

    assert string(0) == "fer_cnn"  # name
    assert string(2) == "3"  # version
    assert string(4) == "someone"  # author
    assert string(7) == ms.MIN_PARSER_VERSION  # min_parser_version
    assert table.VectorLen(table.Offset(4 + 2 * 3)) == 1  # one subgraph_metadata


@pytest.mark.parametrize("data", [b"", b"12345678", b"\x00\x00\x00\x00TFL3xxxx"])
def test_parse_rejects_what_is_not_model_metadata(data):
    with pytest.raises(ms.MetadataFormatError):
        ms.parse(data)


def test_check_tflite_rejects_other_files():
    with pytest.raises(ModelFileError, match="TFL3"):
        check_tflite(b"PK\x03\x04 not a model")


def test_associated_files_are_read_from_an_appended_zip():
    stream = io.BytesIO(b"\x1c\x00\x00\x00TFL3" + bytes(100))
    with zipfile.ZipFile(stream, "a") as archive:
        archive.writestr("fer_model.json", '{"format": "fer-model/1"}')
        archive.writestr("labels.txt", "a\nb\n")
    model = stream.getvalue()
    assert read_files(model) == {"fer_model.json": b'{"format": "fer-model/1"}', "labels.txt": b"a\nb\n"}
    assert read_card(model) == {"format": "fer-model/1"}
    assert read_files(b"\x1c\x00\x00\x00TFL3" + bytes(100)) == {}


def test_stratified_indices_share_evenly_and_fill_from_larger_classes():
    labels = [0] * 100 + [1] * 3 + [2] * 50
    idx = stratified_indices(labels, 30, seed=1)
    picked = [labels[i] for i in idx]
    assert len(idx) == len(set(idx)) == 30
    assert picked.count(1) == 3  # the rare class gives all it has
    assert abs(picked.count(0) - picked.count(2)) <= 1  # the rest is split evenly
    assert len(stratified_indices(labels, 1000)) == len(labels)
