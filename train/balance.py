"""Class balancing for the training split: FER2013 has 436 disgust faces against 7,215 happy ones.

Resampling uses imbalanced-learn on flattened images; `class_weights` is the alternative that keeps the
data as it is and weights the loss instead. Never applied to validation or test data.
"""

from __future__ import annotations

import numpy as np

from fer_train.spec import CLASSES

METHODS = ("none", "over", "under", "hybrid", "smote")


class BalanceError(ValueError):
    """The data cannot be balanced as asked (too few classes or samples)."""


def balance(
    images: np.ndarray, labels: np.ndarray, method: str, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Resample (images, labels) so that classes are equally frequent.

    over: RandomOverSampler up to the largest class; under: RandomUnderSampler down to the smallest;
    hybrid: every class to the mean class size (under-sample above it, over-sample below it);
    smote: SMOTE's interpolated new faces up to the largest class.
    """
    if method not in METHODS:
        raise BalanceError(f"unknown balancing {method!r}: use one of {', '.join(METHODS)}")
    present = np.unique(labels)
    if len(present) < 2:
        raise BalanceError(f"balancing needs at least two classes, the data has {len(present)}")
    if method == "none":
        return images, labels
    from imblearn.over_sampling import SMOTE, RandomOverSampler
    from imblearn.under_sampling import RandomUnderSampler

    flat = images.reshape(len(images), -1)
    if method == "over":
        flat, labels = RandomOverSampler(random_state=seed).fit_resample(flat, labels)
    elif method == "under":
        flat, labels = RandomUnderSampler(random_state=seed).fit_resample(flat, labels)
    elif method == "hybrid":
        counts = np.bincount(labels, minlength=len(CLASSES))
        target = int(counts[present].mean())
        down = {c: min(int(counts[c]), target) for c in present}
        flat, labels = RandomUnderSampler(sampling_strategy=down, random_state=seed).fit_resample(
            flat, labels
        )
        up = {c: target for c in present}
        flat, labels = RandomOverSampler(sampling_strategy=up, random_state=seed).fit_resample(flat, labels)
    else:
        smallest = int(np.bincount(labels)[present].min())
        if smallest < 2:
            raise BalanceError("SMOTE needs at least two faces in every class")
        smote = SMOTE(k_neighbors=min(5, smallest - 1), random_state=seed)
        flat, labels = smote.fit_resample(flat.astype(np.float32), labels)
        flat = np.clip(np.rint(flat), 0, 255)
    return flat.astype(np.uint8).reshape(-1, *images.shape[1:]), np.asarray(labels, dtype=np.int64)


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Inverse-frequency weights ('balanced' in scikit-learn's sense) for the classes present."""
    counts = np.bincount(labels, minlength=len(CLASSES))
    present = np.flatnonzero(counts)
    if len(present) < 2:
        raise BalanceError(f"class weights need at least two classes, the data has {len(present)}")
    total = counts.sum()
    return {int(c): float(total / (len(present) * counts[c])) for c in present}
