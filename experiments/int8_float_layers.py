"""int8 accuracy of a run when more of its front layers stay float (convert.FLOAT_LAYERS widened).

Usage: python experiments/int8_float_layers.py RUN DATA
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from common import models, splits

import fer_export.convert as convert
from fer_export.runtime import TFLiteRunner

CHOICES = (("standardize",), ("standardize", "downsample"), ("standardize", "downsample", "inference_blur"))


def main(run: Path, root: str) -> None:
    trained, _ = models(run)
    train, test = splits(root)
    rng = np.random.default_rng(0)
    rep = train.images[
        np.concatenate([rng.choice(np.flatnonzero(train.labels == c), 72, replace=False) for c in range(7)])
    ]
    print("| layers kept float | accuracy | size |\n|---|---|---|")
    for layers in CHOICES:
        convert.FLOAT_LAYERS = layers
        model = convert.convert(trained, "int8", rep)
        accuracy = (TFLiteRunner(model).predict(test.images).argmax(1) == test.labels).mean()
        print(f"| {', '.join(layers)} | {accuracy:.2%} | {len(model) // 1024} KiB |")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
