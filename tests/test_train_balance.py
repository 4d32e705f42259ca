"""Class balancing with imbalanced-learn, and class weights."""

from __future__ import annotations

import numpy as np
import pytest

from fer_train.balance import BalanceError, balance, class_weights


@pytest.fixture
def skewed():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 3], [30, 6, 12])
    return rng.integers(0, 255, (len(labels), 48, 48), dtype=np.uint8), labels


@pytest.mark.parametrize("method, per_class", [("over", 30), ("under", 6), ("hybrid", 16), ("smote", 30)])
def test_balancing_equalises_the_classes_present(skewed, method, per_class):
    images, labels = balance(*skewed, method)
    counts = np.bincount(labels)
    assert set(np.flatnonzero(counts)) == {0, 1, 3}
    assert all(counts[c] == per_class for c in (0, 1, 3))
    assert images.dtype == np.uint8 and images.shape[1:] == (48, 48) and len(images) == len(labels)


def test_none_keeps_the_data_and_one_class_is_refused(skewed):
    images, labels = balance(*skewed, "none")
    assert len(labels) == 48
    with pytest.raises(BalanceError, match="at least two classes"):
        balance(skewed[0][:5], np.zeros(5, int), "over")
    with pytest.raises(BalanceError, match="unknown balancing"):
        balance(*skewed, "magic")


def test_class_weights_are_inverse_frequency(skewed):
    weights = class_weights(skewed[1])
    assert set(weights) == {0, 1, 3}
    assert weights[1] > weights[3] > weights[0]
    assert sum(weights[c] * n for c, n in ((0, 30), (1, 6), (3, 12))) == pytest.approx(48)
