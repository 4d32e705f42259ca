"""On-the-fly augmentation from Keras preprocessing layers (the replacement for ImageDataGenerator).

The defaults mirror the usual FER2013 ImageDataGenerator settings: rotation 10 degrees, shifts and zoom
of 10%, horizontal flips, brightness +-20%; `erasing` adds random erasing (a noise patch over up to a
third of the face, with that probability), which the residual models' recipe uses. `build_mixup` is
MixUp: it blends each training face with another one of its batch, and their targets alike. They run in
the tf.data pipeline, on training batches only, so evaluation and export always see the face as it is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class AugmentConfig:
    rotation_deg: float = 10.0
    shift: float = 0.1
    zoom: float = 0.1
    flip: bool = True
    brightness: float = 0.2
    erasing: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def build_augmenter(cfg: AugmentConfig, seed: int = 0):
    """A Sequential of random layers for batches of raw 0-255 faces shaped (B, 48, 48, 1)."""
    import keras
    from keras import layers

    steps = []
    if cfg.flip:
        steps.append(layers.RandomFlip("horizontal", seed=seed))
    if cfg.rotation_deg:
        steps.append(layers.RandomRotation(cfg.rotation_deg / 360.0, fill_mode="nearest", seed=seed))
    if cfg.shift:
        steps.append(layers.RandomTranslation(cfg.shift, cfg.shift, fill_mode="nearest", seed=seed))
    if cfg.zoom:
        steps.append(layers.RandomZoom(cfg.zoom, cfg.zoom, fill_mode="nearest", seed=seed))
    if cfg.brightness:
        steps.append(layers.RandomBrightness(cfg.brightness, value_range=(0.0, 255.0), seed=seed))
    if cfg.erasing:
        steps.append(layers.RandomErasing((cfg.erasing, cfg.erasing), value_range=(0.0, 255.0), seed=seed))
    return keras.Sequential(steps, name="augment")


def build_mixup(alpha: float, seed: int = 0):
    """Keras's MixUp for batches {"images", "labels"}: weights drawn from Beta(alpha, alpha)."""
    import keras

    return keras.layers.MixUp(alpha=alpha, seed=seed, name="mixup")
