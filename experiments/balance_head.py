"""Balanced sampling against class weights, on the classifier head of a finished run.

A full training run per regime costs hours on a CPU; this decoupled comparison keeps the run's learned
96-d features fixed and retrains only its softmax layer under each regime, with the same number of
updates, then scores PublicTest. Usage: python experiments/balance_head.py RUN DATA
"""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np
from common import models, predict, splits
from imblearn.over_sampling import SMOTE, RandomOverSampler
from imblearn.under_sampling import RandomUnderSampler
from sklearn.metrics import f1_score

from fer_train.balance import class_weights
from fer_train.spec import CLASSES

BATCH, EPOCHS = 256, 30
DISGUST = CLASSES.index("disgust")


def head(features, labels, test_features, weights=None) -> np.ndarray:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(features.shape[1:]), keras.layers.Dense(7, activation="softmax")])
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    # The same number of updates for every regime, whatever its resampled size.
    epochs = max(1, round(EPOCHS * 28709 / len(features)))
    model.fit(features, labels, batch_size=BATCH, epochs=epochs, verbose=0, class_weight=weights)
    return model.predict(test_features, verbose=0).argmax(1)


def row(name: str, n, predicted, truth) -> str:
    recall = (predicted[truth == DISGUST] == DISGUST).mean()
    f1 = f1_score(truth, predicted, average="macro")
    return f"| {name} | {n} | {(predicted == truth).mean():.2%} | {f1:.4f} | {recall:.3f} |"


def main(run: Path, root: str) -> None:
    trained, unblurred = models(run)
    train, test = splits(root)
    penultimate = lambda m: keras.Model(m.input, m.layers[-2].output)  # noqa: E731
    features = predict(penultimate(unblurred), train.images)  # training faces as training saw them
    test_features = predict(penultimate(trained), test.images)  # test faces through the inference blur
    y, yt = train.labels, test.labels
    print("| head trained with | faces | accuracy | macro-F1 | disgust recall |\n|---|---|---|---|---|")
    print(row("(the run's own head)", "-", predict(trained, test.images).argmax(1), yt))
    print(row("none", len(y), head(features, y, test_features), yt))
    print(row("class weights", len(y), head(features, y, test_features, class_weights(y)), yt))
    samplers = {
        "over-sampling": RandomOverSampler(random_state=0),
        "under-sampling": RandomUnderSampler(random_state=0),
        "SMOTE": SMOTE(random_state=0),
    }
    for name, sampler in samplers.items():
        fb, yb = sampler.fit_resample(features, y)
        print(row(name, len(yb), head(fb, yb, test_features), yt))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
