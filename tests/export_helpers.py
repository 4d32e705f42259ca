"""Helpers for the export tests: one tiny trained Keras model per test session, saved once."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np

from conftest import synthetic_faces

TINY_EPOCHS = 3


@functools.lru_cache(maxsize=1)
def tiny_model_path() -> Path:
    """A width-0.125 FER CNN fitted briefly on synthetic faces, saved as .keras (trained once per session)."""
    import keras

    from fer_train.models import build_model

    keras.utils.set_random_seed(0)
    images, labels = synthetic_faces(12, seed=1)
    model = build_model("cnn", width=0.125)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images[..., None].astype(np.float32), labels, epochs=TINY_EPOCHS, batch_size=16, verbose=0)
    path = Path(tempfile.mkdtemp(prefix="fer-export-test-")) / "tiny.keras"
    model.save(path)
    return path


def tiny_model():
    import keras

    return keras.models.load_model(tiny_model_path(), compile=False)


def wrong_input_model_path() -> Path:
    """A model that takes 64x64x3 images: export must refuse it."""
    import keras
    from keras import layers

    inputs = keras.Input((64, 64, 3))
    x = layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, layers.Dense(7, activation="softmax")(x))
    path = Path(tempfile.mkdtemp(prefix="fer-export-test-")) / "wrong.keras"
    model.save(path)
    return path
