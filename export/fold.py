"""Fold a BatchNormalization that feeds a Dense layer into that Dense, before int8 quantization.

The FER CNN puts BatchNorm after the activation (Conv/Dense - ELU - BatchNorm), so the converter cannot
fold it into the preceding layer and keeps it as a per-channel MUL and ADD. Int8 quantizes that MUL's
constant per tensor; after the Dense block a few nearly dead units have BatchNorm multipliers 300 times
larger than the rest, so the others round to one or two steps and the int8 model's answers turn
to noise (7.8% top-1 agreement on FER2013 in a trial). Folding the BatchNorm into the next Dense is
exact (y = (x*s + t) W + b = x (s W) + (t W + b)), only Dropout lies between them, and the result is
checked against the original model before it is used.
"""

from __future__ import annotations

import numpy as np

PASS_THROUGH = ("Dropout", "SpatialDropout1D", "GaussianDropout", "GaussianNoise", "AlphaDropout")


def _is(layer, *names: str) -> bool:
    return type(layer).__name__ in names


def _chain(model) -> list | None:
    """The model's layers when it is a plain chain (one input, each layer feeding the next), else None."""
    layers = [layer for layer in model.layers if not _is(layer, "InputLayer")]
    if len(model.inputs) != 1 or len(model.outputs) != 1 or not layers:
        return None
    return layers


def _affine(bn) -> tuple[np.ndarray, np.ndarray]:
    """BatchNorm at inference as x * s + t."""
    mean = np.asarray(bn.moving_mean, dtype=np.float64)
    var = np.asarray(bn.moving_variance, dtype=np.float64)
    gamma = np.asarray(bn.gamma, dtype=np.float64) if bn.scale else np.ones_like(mean)
    beta = np.asarray(bn.beta, dtype=np.float64) if bn.center else np.zeros_like(mean)
    s = gamma / np.sqrt(var + bn.epsilon)
    return s, beta - mean * s


def _foldable(layers: list, i: int) -> int | None:
    """Index of the Dense that BatchNorm `layers[i]` can fold into, or None."""
    bn = layers[i]
    if not _is(bn, "BatchNormalization") or bn.axis not in (-1, [-1], 1, [1]):
        return None
    j = i + 1
    while j < len(layers) and _is(layers[j], *PASS_THROUGH):
        j += 1
    if j < len(layers) and _is(layers[j], "Dense") and len(bn.output.shape) == 2:
        return j
    return None


def fold_batchnorm_into_dense(model, probe: np.ndarray, atol: float = 1e-4):
    """A copy of `model` with every BatchNorm-(Dropout)-Dense pair folded; `model` itself when none
    applies or when the folded copy does not reproduce the original on `probe` within `atol`."""
    import keras

    layers = _chain(model)
    if layers is None:
        return model
    targets = {i: _foldable(layers, i) for i in range(len(layers))}
    targets = {i: j for i, j in targets.items() if j is not None}
    if not targets:
        return model
    folded = {j: _fold(layers[i], layers[j]) for i, j in targets.items()}
    try:
        x = inputs = keras.Input(model.inputs[0].shape[1:], name=model.inputs[0].name)
        for k, layer in enumerate(layers):
            if k in targets:
                continue
            x = folded[k](x) if k in folded else layer(x)
        copy = keras.Model(inputs, x, name=model.name)
    except (ValueError, TypeError):
        return model  # not a plain chain after all
    expected = model.predict(probe, verbose=0)
    if np.abs(copy.predict(probe, verbose=0) - expected).max() > atol:
        return model
    return copy


def _fold(bn, dense):
    import keras

    s, t = _affine(bn)
    kernel = np.asarray(dense.kernel, dtype=np.float64)
    bias = np.asarray(dense.bias, dtype=np.float64) if dense.use_bias else np.zeros(kernel.shape[1])
    config = dense.get_config() | {"use_bias": True, "name": dense.name}
    layer = keras.layers.Dense.from_config(config)
    layer.build((None, kernel.shape[0]))
    layer.set_weights([(s[:, None] * kernel).astype(np.float32), (bias + t @ kernel).astype(np.float32)])
    return layer
