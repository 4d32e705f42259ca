"""Two finished runs averaged: PublicTest accuracy of each and of the mean of their probabilities.

Usage: python experiments/ensemble.py RUN_A RUN_B DATA
"""

from __future__ import annotations

import sys
from pathlib import Path

from common import models, predict, splits
from sklearn.metrics import f1_score


def main(run_a: Path, run_b: Path, root: str) -> None:
    _, test = splits(root)
    probs = {run: predict(models(run)[0], test.images) for run in (run_a, run_b)}
    probs["mean of both"] = (probs[run_a] + probs[run_b]) / 2
    print("| model | accuracy | macro-F1 |\n|---|---|---|")
    for name, p in probs.items():
        predicted = p.argmax(1)
        f1 = f1_score(test.labels, predicted, average="macro")
        print(f"| {name} | {(predicted == test.labels).mean():.2%} | {f1:.4f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
