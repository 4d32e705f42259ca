"""The Classifier on real .tflite files run by the real LiteRT interpreter."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from edge_helpers import convert, model_json, tiny_models, write_model

from conftest import synthetic_faces
from fer_edge.classifier import Classifier, ModelError
from fer_train.spec import CLASSES


@pytest.fixture(scope="module")
def models():
    return tiny_models()


@pytest.fixture(scope="module")
def faces_and_reference(models):
    images, _ = synthetic_faces(per_class=3, seed=2)
    reference = models["keras"].predict(images[..., None].astype("float32"), verbose=0)
    return images, reference


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_predicts_what_keras_predicts(models, faces_and_reference, variant):
    images, reference = faces_and_reference
    clf = Classifier(models[variant])
    probs = clf.predict(images)
    assert probs.shape == (len(images), len(CLASSES)) and probs.dtype == np.float32
    assert np.allclose(probs.sum(axis=1), 1.0, atol=0.03)
    tolerance = 1e-4 if variant == "fp32" else 0.08
    assert np.abs(probs - reference).max() < tolerance
    agreement = (probs.argmax(1) == reference.argmax(1)).mean()
    assert agreement >= (1.0 if variant == "fp32" else 0.8)


def test_reads_its_description_from_the_model(models):
    clf = Classifier(models["int8"], threads=2)
    assert clf.labels == list(CLASSES)
    assert (clf.input_size, clf.channels, clf.variant) == (48, 1, "int8")
    assert clf.input_dtype == np.int8
    assert Classifier(models["fp32"]).variant == "fp32"


def test_batches_of_any_size_give_the_same_answers(models):
    images, _ = synthetic_faces(per_class=1, seed=5)
    clf = Classifier(models["int8"])
    together = clf.predict(images)
    one_by_one = np.concatenate([clf.predict(images[i : i + 1]) for i in range(len(images))])
    assert np.allclose(together, one_by_one, atol=1e-6)
    assert clf.predict(images[:0]).shape == (0, len(CLASSES))
    assert np.allclose(clf.predict(images[:3]), together[:3], atol=1e-6)


def test_takes_colour_channels_and_other_sizes(models):
    import cv2

    images, _ = synthetic_faces(per_class=1, seed=6)
    clf = Classifier(models["fp32"])
    gray = clf.predict(images)
    bgr = np.stack([cv2.cvtColor(f, cv2.COLOR_GRAY2RGB) for f in images])
    assert np.allclose(clf.predict(bgr), gray, atol=1e-3)
    big = np.stack([cv2.resize(f, (96, 96), interpolation=cv2.INTER_NEAREST) for f in images])
    assert (clf.predict(big).argmax(1) == gray.argmax(1)).mean() >= 0.8


def test_one_colour_face_is_one_face_and_pixels_must_be_raw(models):
    images, _ = synthetic_faces(per_class=1, seed=7)
    clf = Classifier(models["fp32"])
    colour = np.repeat(images[0][..., None], 3, axis=-1)  # (48, 48, 3): one face, not 48 of 48x3
    assert np.allclose(clf.predict(colour), clf.predict(images[:1]), atol=1e-3)
    assert np.allclose(clf.predict(images.astype(np.float32)), clf.predict(images), atol=1e-6)
    # The model normalizes: faces scaled beforehand would be read as nearly black, so they are refused.
    for bad, message in [
        (images / 255.0, "scaled to 0-1"),
        (images / 127.5 - 1.0, "raw pixel values 0-255"),
        (np.full((48, 48), np.nan, np.float32), "NaN"),
    ]:
        with pytest.raises(ValueError, match=message):
            clf.predict(bad)


def test_uint8_input_model_is_fed_the_pixels_themselves(models, tmp_path):
    path = write_model(tmp_path / "u8.tflite", convert(models["keras"], "uint8"), model_json("uint8"))
    images, _ = synthetic_faces(per_class=2, seed=2)
    clf = Classifier(path)
    assert clf.input_dtype == np.uint8
    assert (
        clf.predict(images).argmax(1) == Classifier(models["int8"]).predict(images).argmax(1)
    ).mean() >= 0.9


def test_labels_from_labels_txt_or_a_file_when_no_json(models, tmp_path):
    flatbuffer = _flatbuffer(models["fp32"])
    with_txt = write_model(tmp_path / "txt.tflite", flatbuffer, meta=None, labels_txt=True)
    assert Classifier(with_txt).labels == list(CLASSES)
    plain = write_model(tmp_path / "plain.tflite", flatbuffer, meta=None, labels_txt=False)
    with pytest.raises(ModelError, match="--labels"):
        Classifier(plain)
    names = tmp_path / "labels.txt"
    names.write_text("\n".join(c.upper() for c in CLASSES) + "\n")
    assert Classifier(plain, labels=names).labels[0] == "ANGRY"
    names.write_text("a\nb\n")
    with pytest.raises(ModelError, match="2 labels for 7"):
        Classifier(plain, labels=names)
    # A labels file is read with a bound: a device or a mistaken large file is one error, not all memory.
    for bad, message in [("/dev/zero", "not a regular file"), (tmp_path / "big.txt", "larger than")]:
        if bad != "/dev/zero":
            bad.write_text("happy\n" * 200_000)
        with pytest.raises(ModelError, match=message):
            Classifier(plain, labels=bad)


def test_a_face_detector_given_as_the_classifier_says_where_it_goes(shared):
    with pytest.raises(ModelError, match=r"not a face classifier .* goes to --detector-model"):
        Classifier(shared / "models" / "blaze_face_short_range.tflite")


def test_bad_model_files_give_one_line_errors(models, tmp_path):
    with pytest.raises(ModelError, match="no such model file"):
        Classifier(tmp_path / "missing.tflite")
    with pytest.raises(ModelError, match="a folder; give a .tflite file"):
        Classifier(tmp_path)
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a flatbuffer at all" * 10)
    with pytest.raises(ModelError, match="not a usable TFLite model"):
        Classifier(junk)
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(_flatbuffer(models["fp32"])[:2000])
    with pytest.raises(ModelError) as info:
        Classifier(truncated)
    assert "\n" not in str(info.value)
    bad_json = tmp_path / "badjson.tflite"
    bad_json.write_bytes(_flatbuffer(models["fp32"]))
    with zipfile.ZipFile(bad_json, "a") as archive:
        archive.writestr("fer_model.json", "{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        Classifier(bad_json)


def test_thread_counts_outside_1_to_64_are_refused(models, tmp_path):
    """100,000 interpreter threads abort the process (XNNPACK's pool cannot be made): refused up front,
    in the API and on the command line, before any model is opened."""
    import subprocess
    import sys

    path = models["int8"]
    for threads in (0, -1, 65, 100_000, 2.0, True):
        with pytest.raises(ValueError, match="threads: a whole number from 1 to 64"):
            Classifier(path, threads=threads)
    assert Classifier(path, threads=np.int64(2)).threads == 2
    face = str(tmp_path / "face.png")
    import cv2

    cv2.imwrite(face, synthetic_faces(per_class=1)[0][0])
    cli = [sys.executable, "-m", "fer_edge", "predict", face, "--crops", "-m", str(path), "--threads"]
    refused = subprocess.run([*cli, "100000"], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "less than or equal to 64" in refused.stderr
    assert subprocess.run([*cli, "64"], capture_output=True, text=True, timeout=120).returncode == 0


def test_wrong_shape_model_is_refused(tmp_path):
    import keras
    import tensorflow as tf

    inputs = keras.Input((10,))
    model = keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(inputs))
    path = tmp_path / "dense.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("fer_model.json", json.dumps(model_json("fp32")))
    with pytest.raises(ModelError, match="input shape"):
        Classifier(path)


def test_a_model_that_scores_nan_is_an_error_not_a_label(tmp_path):
    """A float model whose scores came out NaN was printed as 'angry nan', and as JSON that is not JSON."""
    import subprocess
    import sys

    import cv2
    import keras

    inputs = keras.Input((48, 48, 1))
    logits = keras.layers.Dense(7)(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: keras.ops.log(t - 1e9))(logits))
    path = write_model(tmp_path / "nan.tflite", convert(model, "fp32"), model_json("fp32"))
    face = synthetic_faces(per_class=1)[0][0]
    with pytest.raises(ModelError, match="NaN or infinite scores"):
        Classifier(path).predict(face)
    cli = [sys.executable, "-m", "fer_edge", "predict", "--crops", "--json", "-m", str(path)]
    image = tmp_path / "face.png"
    cv2.imwrite(str(image), face)
    done = subprocess.run([*cli, str(image)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == "", done.stdout
    assert (
        done.stderr.strip().splitlines()[-1]
        == f"error: {path}: gives NaN or infinite scores; not a working classifier"
    )


def test_a_model_ending_in_logits_scores_their_softmax(tmp_path):
    """Another project's model without a softmax was printed as 'neutral 130.97'; independent sigmoid
    scores (0-1, not summing to 1) are kept as they are."""
    import subprocess
    import sys

    import cv2
    import keras

    inputs = keras.Input((48, 48, 1))
    features = keras.layers.Flatten()(keras.layers.Rescaling(1 / 25.5)(inputs))
    keras.utils.set_random_seed(0)
    logits = keras.Model(inputs, keras.layers.Dense(7)(features))
    sigmoid = keras.Model(inputs, keras.layers.Dense(7, activation="sigmoid")(features))
    faces = synthetic_faces(per_class=1, seed=4)[0]
    raw = logits.predict(faces[..., None].astype("float32"), verbose=0)
    assert raw.max() > 1.5 or raw.min() < -0.5  # logits indeed, outside 0-1
    path = write_model(tmp_path / "logits.tflite", convert(logits, "fp32"), model_json("fp32"))
    clf = Classifier(path)
    expected = np.exp(raw) / np.exp(raw).sum(axis=1, keepdims=True)
    assert clf.softmax and clf.describe()["output"]["softmax_applied"] is True
    assert np.allclose(clf.predict(faces), expected, atol=1e-5)
    kept = Classifier(write_model(tmp_path / "sigmoid.tflite", convert(sigmoid, "fp32"), model_json("fp32")))
    reference = sigmoid.predict(faces[..., None].astype("float32"), verbose=0)
    assert not kept.softmax and np.allclose(kept.predict(faces), reference, atol=1e-5)
    image = tmp_path / "face.png"
    cv2.imwrite(str(image), faces[0])
    cli = [sys.executable, "-m", "fer_edge", "predict", "--crops", "--json", "-m", str(path), str(image)]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and f"note: {path} gives logits; scores are their softmax" in done.stderr
    assert json.loads(done.stdout)["score"] == pytest.approx(expected[0].max(), abs=1e-4)


def _flatbuffer(path) -> bytes:
    """The model without its packed files: the bytes before the zip archive."""
    data = path.read_bytes()
    start = data.find(b"PK\x03\x04")
    return data[:start] if start > 0 else data


def test_rgb_mobile_variant_takes_the_same_faces(models, tmp_path):
    """A --mobile export takes RGB; gray crops are repeated to three channels and answer as before."""
    export = pytest.importorskip("fer_export")
    images, _ = synthetic_faces(per_class=2, seed=2)
    path = export.export_variant(models["keras"], "fp32", tmp_path / "rgb.tflite", mobile=True)
    clf = Classifier(path)
    assert clf.channels == 3
    assert np.allclose(clf.predict(images), Classifier(models["fp32"]).predict(images), atol=1e-4)


def test_a_shipped_models_name_is_that_model_as_in_emotion_recognizer():
    from fer_models import shipped

    path = shipped("nano")
    if path is None:
        pytest.skip("the nano model is not shipped in this checkout")
    faces = synthetic_faces(4, seed=3)[0]
    by_name, by_path = Classifier("nano"), Classifier(path)
    assert by_name.path == path
    np.testing.assert_array_equal(by_name.predict(faces), by_path.predict(faces))
    # A mistyped name is told from a missing file: the message lists the names.
    with pytest.raises(ModelError, match=r"nanoo: no such model file or shipped model \(default, .*nano"):
        Classifier("nanoo")
    with pytest.raises(ModelError, match=r"nanoo.tflite: no such model file$"):
        Classifier("nanoo.tflite")
