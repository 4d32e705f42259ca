"""The faces an export needs: the representative (calibration) set and the eval data.

Calibration faces are drawn evenly across the seven classes: calibration sets each activation's int8
range from what it sees, so the rare classes (disgust is 1.5% of FER2013's training split) get an
equal share; a proportional draw of 500 would hold about seven disgust faces, and the ranges would be
set almost entirely by the common classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fer_export.variant import check_images
from fer_train.spec import CLASSES


@dataclass
class Data:
    images: np.ndarray | None = None
    labels: np.ndarray | None = None
    info: dict = field(default_factory=dict)


def load_split(
    path: Path, split: str, limit: int, seed: int, skip_bad: bool, what: str, calibration: bool
) -> Data:
    from fer_train.data import load

    data = load(path, split=split, skip_bad=skip_bad)
    images = check_images(data.images, f"{what} ({path}, split {split})")
    labels = data.labels
    if limit and limit < len(labels):
        # Calibration wants every class; an eval subset keeps the split's own class mix.
        rng = np.random.default_rng(seed)
        idx = (
            stratified_indices(labels, limit, seed)
            if calibration
            else np.sort(rng.permutation(len(labels))[:limit])
        )
        images, labels = images[idx], labels[idx]
    counts = np.bincount(labels, minlength=len(CLASSES))
    info = {
        "source": str(path),
        "split": data.split,
        "samples": int(len(labels)),
        "per_class": {c: int(n) for c, n in zip(CLASSES, counts, strict=True)},
    }
    return Data(images, labels, info)


def stratified_indices(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of `n` samples, as even across classes as the data allows, in a shuffled order.

    A class with fewer than its share gives all it has, and the shortfall goes to the other classes.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    pools = {c: rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)}
    n = min(n, len(labels))
    taken = {c: 0 for c in pools}
    while sum(taken.values()) < n:
        open_classes = [c for c in pools if taken[c] < len(pools[c])]
        share = max(1, (n - sum(taken.values())) // len(open_classes))
        for c in open_classes:
            room = n - sum(taken.values())
            taken[c] += min(share, len(pools[c]) - taken[c], room)
    chosen = np.concatenate([pools[c][: taken[c]] for c in pools]) if pools else np.zeros(0, int)
    return rng.permutation(chosen)
