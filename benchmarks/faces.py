"""The faces every benchmark runs on: FER2013 crops from the user's data, or a fixed random set."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fer_bench.errors import BenchError
from fer_train.spec import IMAGE_SIZE


def load_split(path: str | Path, split: str = "test", limit: int | None = None, seed: int = 0):
    """(images uint8 (N, 48, 48), labels, description) of one FER2013 split, optionally a random subset."""
    from fer_train.data import BadItem, DataError, load

    try:
        data = load(path, split=split)
    except BadItem as err:  # a benchmark scores every face of the split: nothing is skipped
        raise BenchError(f"{err.why}; fer-bench skips nothing: fix or remove it") from None
    except (DataError, ValueError) as err:
        raise BenchError(str(err)) from None
    images, labels = data.images, data.labels
    if limit is not None and limit < len(labels):
        # A random subset keeps the class mix of the split; the seed keeps it the same across runs.
        keep = np.sort(np.random.default_rng(seed).permutation(len(labels))[:limit])
        images, labels = images[keep], labels[keep]
    source = {
        "path": str(path),
        "split": data.split,
        "samples": int(len(labels)),
        "of": int(len(data.labels)),
    }
    return images, labels, source


def latency_faces(count: int, data: str | Path | None = None, split: str = "test") -> tuple[np.ndarray, str]:
    """`count` faces for timing: real crops when data is given (timing does not depend on them)."""
    if data is not None:
        images, _, source = load_split(data, split, limit=count)
        if len(images) < count:
            images = np.resize(images, (count, IMAGE_SIZE, IMAGE_SIZE))
        return images[:count], f"{source['split']} faces from {data}"
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(count, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8), "random 48x48 faces"
