"""What the experiments share: a run's model with and without its inference blur, and the two splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fer_train import data
from fer_train.models import build_cnn, load_model


def models(run: Path):
    """The run's best model, and the same weights without the inference blur (what training sees)."""
    trained = load_model(run / "best.keras", compile=False)
    options = json.loads((run / "config.json").read_text())["model_options"]
    unblurred = build_cnn(**{**options, "inference_blur": 0.0})
    weighted = [layer for layer in trained.layers if layer.weights]
    for src, dst in zip(weighted, [layer for layer in unblurred.layers if layer.weights], strict=True):
        dst.set_weights(src.get_weights())
    return trained, unblurred


def splits(root: str) -> tuple[data.Dataset, data.Dataset]:
    return data.load(root, "train"), data.load(root, "test")


def predict(model, images: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(images[..., None].astype(np.float32), batch_size=256, verbose=0))
