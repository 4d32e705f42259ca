"""The inference blur: PublicTest accuracy per Gaussian sigma, the training faces' tolerance to more
blur, and the alternative of shrinking the test face and enlarging it back.

Usage: python experiments/blur_sweep.py RUN DATA
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
from common import models, predict, splits

from fer_train.layers import InferenceBlur

SIGMAS = (2.0, 2.5, 3.0, 3.5, 4.0)
EXTRA = (0.0, 0.5, 1.0, 1.5, 2.0)
SHRINK = (10, 12, 14, 16, 20, 24)


def blurred(images: np.ndarray, sigma: float) -> np.ndarray:
    """The model's own blur layer, kept in float as inside the model."""
    x = images[..., None].astype(np.float32)
    if not sigma:
        return x[..., 0]
    return np.concatenate(
        [np.asarray(InferenceBlur(sigma)(x[i : i + 512]))[..., 0] for i in range(0, len(x), 512)]
    )


def accuracy(model, images, labels) -> str:
    return f"{(predict(model, images).argmax(1) == labels).mean():.2%}"


def main(run: Path, root: str) -> None:
    _, unblurred = models(run)
    train, test = splits(root)
    print("| PublicTest blurred with sigma | accuracy |\n|---|---|")
    for sigma in SIGMAS:
        print(f"| {sigma} | {accuracy(unblurred, blurred(test.images, sigma), test.labels)} |")
    sample = np.random.default_rng(0).choice(len(train), 3000, replace=False)
    images, labels = train.images[sample], train.labels[sample]
    print("\n| 3,000 training faces, extra blur sigma | accuracy |\n|---|---|")
    for sigma in EXTRA:
        print(f"| {sigma} | {accuracy(unblurred, blurred(images, sigma), labels)} |")

    print("\n| PublicTest shrunk to k x k (area), enlarged back (bilinear) | accuracy |\n|---|---|")
    for k in SHRINK:
        shrunk = [
            cv2.resize(cv2.resize(face, (k, k), interpolation=cv2.INTER_AREA), (48, 48))
            for face in test.images
        ]
        print(f"| {k} | {accuracy(unblurred, np.stack(shrunk).astype(np.float32), test.labels)} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
