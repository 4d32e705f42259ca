"""Shared fixtures: tiny synthetic FER2013 datasets in both formats, and the path to ../shared."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fer_train.spec import CLASSES

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FER_SHARED", ROOT.parent / "shared")).resolve()


def synthetic_faces(per_class: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Faces a model can tell apart: each class has its own brightness and a bar at its own height."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label in range(len(CLASSES)):
        for _ in range(per_class):
            face = rng.normal(40 + 25 * label, 12, size=(48, 48))
            face[6 * label : 6 * label + 5, :] = 250
            images.append(np.clip(face, 0, 255).astype(np.uint8))
            labels.append(label)
    return np.stack(images), np.asarray(labels)


def small_disk(limit: int):
    """A subprocess's preexec_fn after which the kernel refuses writes past `limit` bytes per file
    (EFBIG), as a full disk refuses them (ENOSPC); the process is not killed for it (SIGXFSZ ignored)."""
    import resource
    import signal

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@contextlib.contextmanager
def held_folder(folder: Path):
    """Another process holding `folder` as a running fer-train, fer-export or fer-bench does: the kernel's
    lock on the folder itself, released when that process ends."""
    folder.mkdir(parents=True, exist_ok=True)
    hold = "import fcntl, os, sys, time; fcntl.flock(os.open(sys.argv[1], os.O_RDONLY), fcntl.LOCK_EX); "
    hold += "print('held', flush=True); time.sleep(120)"
    holder = subprocess.Popen([sys.executable, "-c", hold, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.kill()
        holder.wait()


def write_csv(path: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    lines = ["emotion,pixels,Usage"]
    for usage, (images, labels) in splits.items():
        for face, label in zip(images, labels):
            lines.append(f"{label},{' '.join(map(str, face.ravel()))},{usage}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_folders(root: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]], suffix: str = ".png") -> Path:
    import cv2

    for split, (images, labels) in splits.items():
        for i, (face, label) in enumerate(zip(images, labels)):
            folder = root / split / CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"{split}_{i}{suffix}"), face)
    return root


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session caches loaded data in its own folder, never in the user's home."""
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def tiny_splits():
    return {"train": synthetic_faces(6, seed=1), "test": synthetic_faces(3, seed=2)}


@pytest.fixture
def tiny_folders(tmp_path, tiny_splits) -> Path:
    return write_folders(tmp_path / "fer", tiny_splits)


@pytest.fixture
def tiny_csv(tmp_path, tiny_splits) -> Path:
    return write_csv(
        tmp_path / "fer2013.csv", {"Training": tiny_splits["train"], "PublicTest": tiny_splits["test"]}
    )


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "fer2013").is_dir():
        pytest.skip(f"shared data not found at {SHARED} (set FER_SHARED)")
    return SHARED
