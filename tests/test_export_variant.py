"""`fer_export.export_variant` with the real TFLite converter and the real LiteRT interpreter."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from export_helpers import tiny_model, wrong_input_model_path

from conftest import synthetic_faces
from fer_edge.classifier import Classifier
from fer_export import (
    ExportError,
    VerificationError,
    export_variant,
    load_keras_model,
    read_card,
    read_metadata,
)
from fer_export.model_file import embed
from fer_export.verify import Tolerance
from fer_train.spec import CLASSES

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def faces():
    return synthetic_faces(8, seed=3)


@pytest.fixture(scope="module")
def keras_probs(model, faces):
    return model.predict(faces[0][..., None].astype(np.float32), verbose=0)


EXPECTED_IO = {
    ("fp32", "int8"): ("float32", None),
    ("fp16", "int8"): ("float32", None),
    ("dynamic", "int8"): ("float32", None),
    ("int8", "int8"): ("int8", (1.0, -128)),
    ("int8", "uint8"): ("uint8", (1.0, 0)),
    ("int8", "float32"): ("float32", None),
}
FLOAT_MAX_DIFF = {"fp32": 1e-4, "fp16": 1e-2}


@pytest.mark.parametrize(("mode", "io_type"), list(EXPECTED_IO))
def test_every_mode_converts_runs_and_describes_itself(tmp_path, model, faces, keras_probs, mode, io_type):
    images, _ = faces
    out = export_variant(
        model, mode, tmp_path / f"m_{mode}.tflite", rep_images=images, io_type=io_type, name="tiny"
    )
    data = out.read_bytes()

    runner = Classifier(data)
    dtype, quant = EXPECTED_IO[(mode, io_type)]
    assert runner.input_dtype == dtype
    if quant is not None:  # the camera byte (minus 128 for int8) is the model input, no float preprocessing
        scale, zero = runner.input_quantization
        assert scale == pytest.approx(quant[0]) and zero == quant[1]
    probs = runner.predict(images)
    assert probs.shape == (len(images), len(CLASSES))
    assert np.allclose(probs.sum(1), 1.0, atol=0.05)
    assert (probs.argmax(1) == keras_probs.argmax(1)).mean() >= 0.85
    if mode in FLOAT_MAX_DIFF:  # float variants match Keras to rounding (fp32) or half precision (fp16)
        assert np.abs(probs - keras_probs).max() < FLOAT_MAX_DIFF[mode]

    card = read_card(out)
    assert card["format"] == "fer-model/1" and card["variant"] == mode and card["name"] == "tiny"
    assert card["labels"] == list(CLASSES)
    assert card["input"] | {"normalization": None} == {
        "height": 48,
        "width": 48,
        "channels": 1,
        "color": "grayscale",
        "range": [0, 255],
        "dtype": dtype,
        "normalization": None,
    }
    assert card["output"] == {"kind": "probabilities", "dtype": runner.output_dtype}
    with zipfile.ZipFile(out) as archive:
        assert archive.read("labels.txt").decode().split() == list(CLASSES)
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())

    meta = read_metadata(data)
    assert meta.name == "tiny"
    (image,) = meta.inputs
    assert (image.image_color, image.image_size, image.mean, image.std) == (
        "grayscale",
        (48, 48),
        [0.0],
        [1.0],
    )
    (output,) = meta.outputs
    assert [(f.name, f.type) for f in output.associated_files] == [("labels.txt", 2)]
    assert [f.name for f in meta.associated_files] == ["fer_model.json"]


def test_int8_is_full_integer_and_the_card_lists_what_stays_float(tmp_path, model, faces, keras_probs):
    images, _ = faces
    out = export_variant(model, "int8", tmp_path / "m.tflite", rep_images=images)
    runner = Classifier(out.read_bytes())
    assert runner.input_dtype == runner.output_dtype == "int8"  # the camera byte in, int8 out
    assert (runner.predict(images).argmax(1) == keras_probs.argmax(1)).mean() >= 0.85
    source = read_card(out)["source"]
    # Read from the file's ops: TF's quantizer leaves every ELU float even in full-integer mode, and the
    # card must say so rather than claim an all-int8 model.
    assert source["float_ops"] == {"ELU": 7}
    assert source["quantization"].startswith("integer (ELU 7 ops in float32)")


def test_mobile_variant_takes_rgb_and_matches_the_gray_model(tmp_path, model, faces, keras_probs):
    images, _ = faces
    out = export_variant(model, "fp32", tmp_path / "rgb.tflite", mobile=True)
    runner = Classifier(out.read_bytes())
    assert runner.channels == 3
    rgb = np.repeat(images[..., None], 3, axis=-1)
    assert np.abs(runner.predict(rgb) - keras_probs).max() < 1e-4
    card = read_card(out)
    assert (card["input"]["channels"], card["input"]["color"]) == (3, "rgb")
    assert read_metadata(out.read_bytes()).inputs[0].image_color == "rgb"


def test_embedding_twice_keeps_one_metadata_entry(tmp_path, model):
    from ai_edge_litert import schema_py_generated as schema

    data = export_variant(model, "fp32", tmp_path / "m.tflite").read_bytes()
    again = embed(data, b"\x08\x00\x00\x00M001\x00\x00\x00\x00", {"labels.txt": b"x\n"})
    root = schema.Model.GetRootAs(bytearray(again), 0)
    names = [root.Metadata(i).Name().decode() for i in range(root.MetadataLength())]
    assert names.count("TFLITE_METADATA") == 1
    assert zipfile.ZipFile(tmp_path / "m.tflite").namelist() == ["labels.txt", "fer_model.json"]


def test_a_variant_beyond_tolerance_fails_and_writes_nothing(tmp_path, model, faces):
    images, _ = faces
    out = tmp_path / "strict.tflite"
    with pytest.raises(VerificationError, match="disagrees with the Keras model") as caught:
        export_variant(
            model, "int8", out, rep_images=images, tolerance=Tolerance(mean_abs=0.0, agreement=1.0)
        )
    assert caught.value.check.passed is False and caught.value.check.mean_abs_diff > 0
    assert not out.exists()


def test_existing_output_needs_force(tmp_path, model):
    out = tmp_path / "m.tflite"
    export_variant(model, "fp16", out)
    old = out.read_bytes()
    with pytest.raises(FileExistsError, match="--force"):
        export_variant(model, "fp32", out)
    assert out.read_bytes() == old
    export_variant(model, "fp32", out, force=True)
    assert out.read_bytes()[4:8] == b"TFL3" and out.read_bytes() != old
    # a file of another kind at that path is not the tool's to replace
    for other in (b"old", old[: old.index(b"PK\x03\x04")]):  # not a model; a model without our card
        out.write_bytes(other)
        with pytest.raises(FileExistsError, match="not a TFLite model with a FER card this tool wrote"):
            export_variant(model, "fp32", out, force=True)
        assert out.read_bytes() == other


@pytest.mark.parametrize(
    ("rep", "message"),
    [
        (np.zeros((0, 48, 48), np.uint8), "empty"),
        (np.zeros((5, 32, 32), np.uint8), r"shape \(5, 32, 32\)"),
        (np.zeros((5, 48, 48, 3), np.uint8), "shape"),
        (np.full((5, 48, 48), 300.0), "outside 0-255"),
    ],
)
def test_bad_representative_data_is_refused(tmp_path, model, rep, message):
    with pytest.raises(ExportError, match=message):
        export_variant(model, "int8", tmp_path / "m.tflite", rep_images=rep)
    assert not (tmp_path / "m.tflite").exists()


def test_int8_without_representative_data_is_refused(tmp_path, model):
    with pytest.raises(ExportError, match="representative"):
        export_variant(model, "int8", tmp_path / "m.tflite")


def test_a_model_that_does_not_take_48x48x1_is_refused(tmp_path):
    with pytest.raises(ExportError, match="64x64x3"):
        export_variant(load_keras_model(wrong_input_model_path()), "fp32", tmp_path / "m.tflite")


def test_model_files_that_are_not_keras_are_refused(tmp_path):
    with pytest.raises(ExportError, match="no such model file"):
        load_keras_model(tmp_path / "missing.keras")
    text = tmp_path / "model.txt"
    text.write_text("hello")
    with pytest.raises(ExportError, match="not a Keras model file"):
        load_keras_model(text)
    broken = tmp_path / "broken.keras"
    broken.write_bytes(b"not a zip")
    with pytest.raises(ExportError, match="not a loadable Keras model"):
        load_keras_model(broken)


def _with_external_buffer(model: bytes) -> bytes:
    """The model with its largest buffer stored after the flatbuffer (offset/size), as litert-quantizer
    writes large models."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    flat = schema.ModelT.InitFromObj(schema.Model.GetRootAs(bytearray(model), 0))
    index = max(
        range(len(flat.buffers)),
        key=lambda i: 0 if flat.buffers[i].data is None else len(flat.buffers[i].data),
    )
    data = bytes(np.asarray(flat.buffers[index].data, dtype=np.uint8))
    flat.buffers[index].data = None

    def pack(offset: int) -> bytes:
        flat.buffers[index].offset, flat.buffers[index].size = offset, len(data)
        builder = flatbuffers.Builder(0)
        builder.Finish(flat.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())

    head = pack(1)  # same encoded size as the final offset: the field is present either way
    start = (len(head) + 15) // 16 * 16
    head = pack(start)
    return head + bytes(start - len(head)) + data


def test_buffers_stored_after_the_flatbuffer_survive_embedding(tmp_path, model, faces, keras_probs):
    images, _ = faces
    from fer_export.convert import convert

    external = _with_external_buffer(convert(model, "fp32"))
    # The layout is valid:
    assert np.abs(Classifier(external, labels=CLASSES).predict(images) - keras_probs).max() < 1e-4
    embedded = embed(external, b"\x08\x00\x00\x00M001\x00\x00\x00\x00", {"labels.txt": b"x\n"})
    assert np.abs(Classifier(embedded, labels=CLASSES).predict(images) - keras_probs).max() < 1e-4
