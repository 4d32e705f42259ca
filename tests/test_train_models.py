"""The model registry and the layers inside the models: raw pixels in, probabilities out."""

from __future__ import annotations

import numpy as np
import pytest

from fer_train.backend import import_keras
from fer_train.models import ARCHS, build_cnn, build_model, load_model

keras = import_keras()


def test_registry_builds_every_architecture_on_raw_gray_pixels():
    assert set(ARCHS) == {"cnn", "vgg16", "inceptionv3"}
    model = build_model("cnn", width=0.125)
    assert model.input_shape == (None, 48, 48, 1) and model.output_shape == (None, 7)
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("resnet")


def test_width_scales_the_parameters():
    assert build_cnn(width=0.5).count_params() < build_cnn(width=1.0).count_params() / 3


def test_downsample_halves_the_feature_maps_and_the_cost():
    full, half = build_cnn(width=0.25), build_cnn(width=0.25, downsample=2)
    assert half.input_shape == (None, 48, 48, 1) and half.output_shape == (None, 7)
    assert half.get_layer("downsample").output.shape[1:3] == (24, 24)
    # The convolutions keep their weights; only the Dense layer after Flatten sees 4x fewer inputs.
    assert half.count_params() < full.count_params()
    face = np.full((1, 48, 48, 1), 7.0, np.float32)
    pooled = keras.Model(half.input, half.get_layer("downsample").output)
    np.testing.assert_allclose(np.asarray(pooled(face)), 7.0 / 255.0, rtol=1e-6)


def test_downsample_that_would_pool_the_face_away_is_refused():
    with pytest.raises(ValueError, match="downsample must be 1 to 6"):
        build_cnn(width=0.125, downsample=7)


def test_standardization_makes_the_cnn_blind_to_brightness_and_contrast():
    model = build_cnn(width=0.125)
    face = np.random.default_rng(0).integers(40, 200, (1, 48, 48, 1)).astype(np.float32)
    dimmer = (face - 120) * 0.7 + 100  # lower contrast, darker
    brighter = face + 30
    reference = model.predict(face, verbose=0)
    # Not exactly equal: the standardization's epsilon keeps flat faces stable at a small cost.
    np.testing.assert_allclose(model.predict(dimmer, verbose=0), reference, atol=1e-2)
    np.testing.assert_allclose(model.predict(brighter, verbose=0), reference, atol=1e-4)


def test_inference_blur_is_identity_in_training_and_gaussian_at_inference(tmp_path):
    import cv2

    model = build_cnn(width=0.125, inference_blur=3.0)
    blur = keras.Model(model.input, model.get_layer("inference_blur").output)
    x = np.random.default_rng(1).integers(0, 255, (2, 48, 48, 1)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(blur(x, training=True)) * 255, x, atol=1e-3)
    expected = cv2.GaussianBlur(x[0, ..., 0], (19, 19), 3.0, borderType=cv2.BORDER_REFLECT_101)
    np.testing.assert_allclose(np.asarray(blur(x, training=False))[0, ..., 0] * 255, expected, atol=1e-2)
    model.save(tmp_path / "m.keras")
    again = load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_a_blurring_model_exports_to_int8_and_matches_keras(tmp_path):
    from conftest import synthetic_faces
    from fer_edge.classifier import Classifier
    from fer_export import export_variant

    faces, labels = synthetic_faces(6)
    model = build_cnn(width=0.125, inference_blur=3.0)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(faces[..., None].astype(np.float32), labels, epochs=2, verbose=0)
    path = export_variant(model, "int8", tmp_path / "m.tflite", rep_images=faces)
    probs = Classifier(path).predict(faces)
    keras_probs = model.predict(faces[..., None].astype(np.float32), verbose=0)
    assert np.abs(probs - keras_probs).mean() < 0.05
