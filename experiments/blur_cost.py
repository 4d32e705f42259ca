"""What the blurred training faces cost: the same network trained on the same number of faces, sharp
or blurred, scored on the same held-out sharp faces.

PublicTest is the only sharp split we have, so it is cut in two: TRAIN_FACES faces to train on, the rest
to score on. Runs of the shipped config (16x16), each with `fer-train fit`'s own pipeline:
  sharp     the PublicTest part as it is, no inference blur;
  blurred   the same faces blurred with the model's own Gaussian (sigma SIGMA, the shipped model's tuned
            inference blur, our estimate of how the training split was blurred), inference blur SIGMA;
  training  as many faces of the real (blurred) Training split, same class counts, inference blur SIGMA.
`sharp` against `blurred` is what the blur costs; `blurred` against `training` checks that a Gaussian
reproduces the training split's blur. Two more runs at 24x24 (`--downsample 2`) ask whether sharp faces,
or the training split's, gain from more than the shipped model's 16x16. The blur is tuned when each run
finishes, as in every run, and EarlyStopping picks the best epoch on the scored faces: all arms are
equally optimistic.

Usage: python experiments/blur_cost.py DATA WORKDIR   (WORKDIR gets the face folders and the runs)
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
from blur_sweep import blurred
from common import splits

from fer_train.fit import FitConfig, fit
from fer_train.spec import CLASSES

TRAIN_FACES = 2589
SIGMA = 3.25
# arm: (faces, inference blur, downsample)
ARMS = {
    "sharp": ("sharp", 0.0, 3),
    "blurred": ("blurred", SIGMA, 3),
    "training": ("training", SIGMA, 3),
    "sharp, 24x24": ("sharp", 0.0, 2),
    "training, 24x24": ("training", SIGMA, 2),
}
SHIPPED = dict(
    arch="cnn", width=1.0, downsample=3, first_kernel=3, dropout_scale=0.5, label_smoothing=0.1, epochs=80
)


def write_split(root: Path, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    """`root/split/<class>/*.png`, written under a temporary name first: an interrupted call leaves no
    half-written folder for the next one to train on."""
    if root.exists():
        return
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for cls in CLASSES:
        (tmp / split / cls).mkdir(parents=True)
    for i, (face, label) in enumerate(zip(images, labels, strict=True)):
        pixels = np.clip(face, 0, 255).round().astype(np.uint8)
        cv2.imwrite(str(tmp / split / CLASSES[label] / f"{i:05d}.png"), pixels)
    tmp.rename(root)


def same_counts(labels: np.ndarray, wanted: np.ndarray, rng) -> np.ndarray:
    """Indices into `labels` with as many faces per class as `wanted` has."""
    picks = [np.flatnonzero(labels == c) for c in range(len(CLASSES))]
    return np.concatenate([rng.choice(p, (wanted == c).sum(), replace=False) for c, p in enumerate(picks)])


def run_arm(work: Path, faces: str, blur: float, downsample: int) -> dict:
    """One arm's validation metrics, training it unless a previous call finished it."""
    out = work / f"run_{faces}_{downsample}"
    if (out / "metrics.json").exists():
        return json.loads((out / "metrics.json").read_text())
    options = {**SHIPPED, "downsample": downsample}
    cfg = FitConfig(
        data=str(work / faces),
        val_data=str(work / "held"),
        inference_blur=blur,
        command=f"blur_cost.py {out.name}",
        **options,
    )
    return fit(cfg, out)


def main(root: str, work: Path) -> None:
    train, test = splits(root)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(test))
    part, held = order[:TRAIN_FACES], order[TRAIN_FACES:]
    real = same_counts(train.labels, test.labels[part], rng)
    faces = {
        "sharp": test.images[part],
        "blurred": blurred(test.images[part], SIGMA),
        "training": train.images[real],
    }
    labels = {"sharp": test.labels[part], "blurred": test.labels[part], "training": train.labels[real]}
    write_split(work / "held", "test", test.images[held], test.labels[held])
    for name, images in faces.items():
        write_split(work / name, "train", images, labels[name])
    rows = [(arm, run_arm(work, *spec)) for arm, spec in ARMS.items()]
    print(
        f"\n| trained on {TRAIN_FACES} faces | working resolution | inference blur (tuned) "
        f"| accuracy on {len(held)} held-out sharp PublicTest faces | macro-F1 |"
    )
    print("|---|---|---|---|---|")
    for arm, metrics in rows:
        side = 48 // ARMS[arm][2]
        blur = metrics.get("inference_blur", {}).get("sigma", "none")
        print(f"| {arm} | {side}x{side} | {blur} | {metrics['accuracy']:.2%} | {metrics['macro_f1']:.4f} |")
    (work / "blur_cost.json").write_text(json.dumps({arm: m for arm, m in rows}, indent=2, default=str))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
