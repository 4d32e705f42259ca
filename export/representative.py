"""The representative dataset: calibration faces drawn evenly across the seven classes.

Calibration sets each activation's int8 range from what it sees, so the rare classes (disgust is 1.5%
of FER2013's training split) get an equal share: a proportional draw of 500 would hold about seven
disgust faces, and the ranges would be set almost entirely by the common classes.
"""

from __future__ import annotations

import numpy as np


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
