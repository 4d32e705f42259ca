"""The model registry: named models with their recipes, raw pixels in, probabilities out."""

from __future__ import annotations

import numpy as np
import pytest

from fer_train.backend import import_keras
from fer_train.models import MODELS, build_model, load_model

keras = import_keras()


def test_registry_builds_every_model_on_raw_gray_pixels():
    assert {"fer_res_l", "fer_res", "fer_small", "fer_nano", "cnn", "vgg16", "inceptionv3"} <= set(MODELS)
    for name in ("fer_nano", "cnn"):
        model = build_model(name, **({"width": 0.125} if name == "cnn" else {}))
        assert model.input_shape == (None, 48, 48, 1) and model.output_shape == (None, 7)
    with pytest.raises(ValueError, match="unknown model"):
        build_model("resnet")
    with pytest.raises(ValueError, match="takes no option width"):
        build_model("fer_nano", width=2.0)


def test_a_recipe_comes_with_the_name_and_options_override_it():
    from fer_train.fit import recipe_config

    cfg = recipe_config("fer_res", "data")
    assert (cfg.model, cfg.optimizer, cfg.schedule) == ("fer_res", "sgd", "cosine")
    assert cfg.epochs == MODELS["fer_res"].recipe["epochs"] and cfg.label_smoothing > 0
    assert recipe_config("fer_res", "data", epochs=3, optimizer="adam").epochs == 3
    assert recipe_config("cnn", "data").schedule == "plateau"


def test_a_recipe_names_its_teachers_as_shipped_runs_found_from_any_folder(tmp_path, monkeypatch):
    from fer_models import MODELS_DIR
    from fer_train.fit import _teacher_paths, recipe_config

    monkeypatch.chdir(tmp_path)  # not the checkout: the names still find the shipped runs
    nano = recipe_config("fer_nano", "data")
    assert (nano.teacher, nano.distill) == ("fer_res_l,fer_small", 0.5)
    runs = MODELS_DIR / "runs"
    assert _teacher_paths(nano) == [runs / "fer_res_l" / "model.keras", runs / "fer_small" / "model.keras"]
    # A file or folder of that name here is what the user means.
    (tmp_path / "fer_small").write_bytes(b"")
    assert _teacher_paths(nano)[1] == tmp_path.joinpath("fer_small").relative_to(tmp_path)
    # --distill 0 turns the recipe's teacher off; a teacher given with it stays (and is refused later).
    assert recipe_config("fer_nano", "data", distill=0.0).teacher is None
    assert recipe_config("fer_nano", "data", distill=0.0, teacher="t.keras").teacher == "t.keras"


def test_the_default_is_fer_res_l_and_nano_is_smaller():
    from fer_train.models import DEFAULT_MODEL, macs_per_face

    assert DEFAULT_MODEL == "fer_res_l"
    nano, previous, default = build_model("fer_nano"), build_model("fer_res"), build_model(DEFAULT_MODEL)
    small = build_model("fer_small")
    assert nano.count_params() < previous.count_params() / 1.5 < default.count_params() / 1.5
    # Counted by hand from the architectures (models/README.md): 14, 49, 69 and 114 M multiply-adds per
    # face; 2.2 M parameters keep the int8 file under 2.5 MB.
    assert [round(macs_per_face(m) / 1e6) for m in (nano, previous, small, default)] == [14, 49, 69, 114]
    assert default.count_params() < 2_300_000


def test_multiply_adds_of_separable_and_depthwise_convolutions():
    """A mini-Xception-style model is mostly separable convolutions: each counts its depthwise part
    (3x3 per input channel) and its pointwise part (input x output channels), at the output's size."""
    import keras
    from keras import layers

    from fer_train.models import macs_per_face

    inputs = keras.Input((48, 48, 8))
    x = layers.SeparableConv2D(16, 3, strides=2, padding="same")(inputs)  # 24x24
    x = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x)  # 24x24x32
    model = keras.Model(inputs, x)
    assert macs_per_face(model) == 24 * 24 * 8 * (9 + 16) + 24 * 24 * 32 * 9


def test_width_scales_the_cnn():
    assert build_model("cnn", width=0.5).count_params() < build_model("cnn").count_params() / 3


@pytest.mark.parametrize(
    "options, message",
    [
        ({"width": 100}, "width 100: a filter-count multiplier from 0.1 to 4"),
        ({"first_kernel": 4}, "first_kernel 4: 1, 3, 5 or 7"),
    ],
)
def test_a_cnn_option_out_of_bounds_is_refused_before_any_memory_is_taken(options, message):
    # width 100 once built 13 G parameters' worth of initializers: 22 GB, then a TensorFlow traceback.
    with pytest.raises(ValueError, match=message):
        build_model("cnn", **options)


def test_tensorflow_out_of_memory_is_one_line_naming_the_tensor():
    import tensorflow as tf

    from fer_train.backend import out_of_memory_as
    from fer_train.fit import TrainError

    with pytest.raises(TrainError) as caught, out_of_memory_as(TrainError, "use a smaller --batch-size"):
        tf.zeros([2**20, 2**20])  # 4 TiB: refused by the allocator at once
    assert str(caught.value) == (
        "out of memory: TensorFlow could not allocate a 1048576x1048576 tensor; use a smaller --batch-size"
    )


def test_a_residual_model_saves_loads_and_exports_all_integer(tmp_path):
    from conftest import synthetic_faces
    from fer_edge.classifier import Classifier
    from fer_export import export_variant

    faces, labels = synthetic_faces(6)
    model = build_model("fer_nano")
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(faces[..., None].astype(np.float32), labels, epochs=2, verbose=0)
    model.save(tmp_path / "m.keras")
    again = load_model(tmp_path / "m.keras")
    x = faces[..., None].astype(np.float32)
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    path = export_variant(model, "int8", tmp_path / "m.tflite", rep_images=faces)
    from fer_export.convert import float_ops_of

    assert (
        float_ops_of(path.read_bytes()) == {}
    )  # every op int8: nothing left for an accelerator to hand back
    probs = Classifier(path).predict(faces)
    assert np.abs(probs - model.predict(x, verbose=0)).mean() < 0.05
