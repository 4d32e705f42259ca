"""The models a benchmark compares: our .tflite files (from folders or paths) and, optionally, a peer's.

Every entry opens as a classifier with `predict(uint8 faces (N, 48, 48)) -> probabilities (N, 7)` in
FER2013's label order, so latency and accuracy code never needs to know whose model it runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fer_bench.errors import BenchError
from fer_train.spec import CLASSES

OURS = "fer-edge-toolkit"


@dataclass(frozen=True)
class ModelEntry:
    key: str  # unique row name in every table: the file's stem, or "peer:<package>"
    path: str
    name: str
    variant: str
    size_bytes: int
    origin: str = OURS  # whose model: ours, or the peer package's name
    input: str = ""  # what the classifier is fed, for the report

    def to_dict(self) -> dict:
        return asdict(self)


def split_list(values: list[str] | None) -> list[str]:
    """Repeated options and comma-separated lists alike: ['a,b', 'c'] -> ['a', 'b', 'c']."""
    return [v.strip() for value in values or [] for v in str(value).split(",") if v.strip()]


def find_model_files(values: list[str]) -> list[Path]:
    """The .tflite files named: files as given, folders expanded to the .tflite files directly in them,
    and shipped models by the names `fer-edge --model` takes (`nano`)."""
    from fer_edge.classifier import resolve_model
    from fer_edge.errors import ModelError, not_a_model_file

    files: list[Path] = []
    for value in split_list(values):
        path = Path(value).expanduser()
        if not path.exists():
            try:
                path = resolve_model(value)
            except ModelError as e:
                raise BenchError(str(e)) from None
        if path.is_dir():
            found = sorted(path.glob("*.tflite"))
            if not found:
                raise BenchError(f"{path}: no .tflite files in this folder")
            files += found
        elif path.is_file():
            files.append(path)
        elif path.exists():  # a device or pipe
            raise BenchError(not_a_model_file(path, ".tflite file or a folder of them"))
        else:
            raise BenchError(f"{path}: no such model file or folder")
    if not files:
        raise BenchError("no models given: pass --models with .tflite files or a folder holding them")
    unique = list(dict.fromkeys(p.resolve() for p in files))
    return unique


def describe_models(files: list[Path]) -> list[ModelEntry]:
    """Open each model once (which checks it) and read its name, variant and size."""
    entries, keys = [], set()
    for path in files:
        clf = open_ours(path, threads=1)
        key = _unique_key(path, keys)
        keys.add(key)
        channels = "RGB" if clf.channels == 3 else "grayscale"
        entries.append(
            ModelEntry(
                key=key,
                path=str(path),
                name=clf.name,
                variant=clf.variant,
                size_bytes=path.stat().st_size,
                input=f"{clf.input_size}x{clf.input_size} {channels} {clf.input_dtype.name}, raw pixels",
            )
        )
    return entries


def _unique_key(path: Path, taken: set[str]) -> str:
    key = path.stem
    if key in taken:
        key = f"{path.parent.name}/{path.stem}"
    n = 2
    while key in taken:
        key, n = f"{path.stem}#{n}", n + 1
    return key


def open_ours(path: str | Path, threads: int = 1):
    """Our Classifier, with its ModelError turned into a BenchError and its labels checked."""
    from fer_edge.classifier import Classifier
    from fer_edge.errors import MissingLabels, ModelError

    try:
        clf = Classifier(path, threads=threads)
    except MissingLabels as err:  # fer-bench takes no --labels: it compares against FER2013's classes
        raise BenchError(
            f"{err.why}; fer-bench measures models that carry their labels, as fer-export writes them"
        ) from None
    except ModelError as err:
        raise BenchError(str(err)) from None
    check_labels(path, clf.labels)
    return clf


def check_labels(path: str | Path, labels: list[str]) -> None:
    """A benchmark scores against FER2013's labels: a model with other classes cannot be compared."""
    names = [str(x).strip().lower() for x in labels]
    if sorted(names) != sorted(CLASSES):
        raise BenchError(f"{path}: labels {names} are not FER2013's seven classes ({', '.join(CLASSES)})")


def label_order(labels: list[str]) -> np.ndarray:
    """Column indices that reorder a model's probabilities into spec.CLASSES order."""
    names = [str(x).strip().lower() for x in labels]
    return np.array([names.index(c) for c in CLASSES])


def open_entry(entry: ModelEntry, threads: int = 1):
    """A classifier for the entry whose predict returns probabilities in spec.CLASSES order."""
    if entry.origin == OURS:
        return _Reordered(open_ours(entry.path, threads))
    from fer_bench.peer import open_peer

    return _Reordered(open_peer(entry, threads))


class _Reordered:
    """Our Classifier with its output columns in spec.CLASSES order (a model may list them otherwise)."""

    def __init__(self, clf):
        self.clf = clf
        self.order = label_order(clf.labels)

    def predict(self, faces: np.ndarray) -> np.ndarray:
        return self.clf.predict(faces)[:, self.order]
