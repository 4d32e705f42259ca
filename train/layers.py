"""Custom Keras layers of the FER models, registered so that saved .keras files load anywhere."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="fer_train")
class InferenceBlur(keras.layers.Layer):
    """Gaussian blur at inference only: sharp faces are blurred to look like the blurred training faces.

    The FER2013 training split we train on is heavily blurred (its faces' Laplacian variance matches
    the test faces' after a Gaussian blur of sigma ~3), while test faces and camera crops are sharp.
    Training sees its faces as they are; validation, export and every app see the blurred face, so both
    sides of the model meet the same distribution. Mirror padding keeps the borders' brightness.
    """

    def __init__(self, sigma: float = 3.0, **kwargs):
        super().__init__(**kwargs)
        self.sigma = float(sigma)
        radius = max(1, int(round(3 * self.sigma)))
        taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / self.sigma) ** 2)
        self.radius, self.taps = radius, (taps / taps.sum()).astype("float32")

    def call(self, x, training=None):
        if training:
            return x
        r = self.radius
        x = ops.pad(x, [[0, 0], [r, r], [r, r], [0, 0]], mode="reflect")
        x = ops.conv(x, ops.convert_to_tensor(self.taps.reshape(-1, 1, 1, 1)), padding="valid")
        return ops.conv(x, ops.convert_to_tensor(self.taps.reshape(1, -1, 1, 1)), padding="valid")

    def get_config(self):
        return {**super().get_config(), "sigma": self.sigma}
