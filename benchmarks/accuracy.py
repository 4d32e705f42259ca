"""Accuracy, macro-F1, per-class recall and the confusion matrix per model, and what each model loses
against a reference (the float Keras model or the fp32 .tflite) on the same faces.

The loss is measured where it matters to a user: accuracy and macro-F1 in points, how often the
top-1 answer agrees with the reference's, and how far the probabilities move.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from fer_bench.errors import BenchError
from fer_bench.models import OURS, ModelEntry, open_entry
from fer_edge.errors import not_a_model_file
from fer_train.evaluate import classification_report
from fer_train.spec import CLASSES

# Interpreter threads while scoring: speed only, the answers are the same.
THREADS = 2


def predict_all(clf, images: np.ndarray, batch: int = 256, progress=None) -> np.ndarray:
    """Probabilities (N, 7) in spec.CLASSES order, in batches (the interpreter re-plans per batch size)."""
    out = []
    for start in range(0, len(images), batch):
        out.append(clf.predict(images[start : start + batch]))
        if progress is not None:
            progress(min(len(images), start + batch))
    return np.concatenate(out) if out else np.zeros((0, len(CLASSES)), np.float32)


def score(key: str, probs: np.ndarray, labels: np.ndarray) -> dict:
    """classification_report's numbers plus per-class recall in one flat dict, for tables."""
    report = classification_report(labels, probs.argmax(1))
    return {
        "model": key,
        "samples": int(len(labels)),
        "accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
        "recall": {c: m["recall"] for c, m in report["per_class"].items()},
        "per_class": report["per_class"],
        "confusion_matrix": report["confusion_matrix"],
    }


def against(result: dict, probs: np.ndarray, ref: dict, ref_probs: np.ndarray) -> dict:
    """What a model loses against the reference on the same faces (positive = worse than the reference)."""
    diff = np.abs(probs - ref_probs)
    return {
        "reference": ref["model"],
        "reference_accuracy": ref["accuracy"],
        "accuracy_loss_pp": 100.0 * (ref["accuracy"] - result["accuracy"]),
        "macro_f1_loss": ref["macro_f1"] - result["macro_f1"],
        "top1_agreement": float((probs.argmax(1) == ref_probs.argmax(1)).mean()),
        "mean_abs_prob_diff": float(diff.mean()),
        "max_abs_prob_diff": float(diff.max()),
    }


def keras_probs(path: str | Path, images: np.ndarray) -> np.ndarray:
    """A .keras reference's probabilities; TensorFlow is imported only here, and only when asked for."""
    try:
        from fer_train.backend import import_keras

        import_keras()  # quietly; and a missing TensorFlow is told apart from a bad file
        from fer_train.models import ModelFileError, check_face_model, load_model
    except ImportError:
        raise BenchError(
            f"{path}: a .keras reference needs TensorFlow (pip install 'fer-edge-toolkit[train]')"
        ) from None
    try:
        model = load_model(path, compile=False)
        check_face_model(model, f"reference {path}")
    except ModelFileError as err:
        raise BenchError(str(err)) from None
    x = images.astype(np.float32)[..., None]
    return np.asarray(model.predict(x, batch_size=256, verbose=0), dtype=np.float32)


def pick_reference(entries: list[ModelEntry], reference: str | None) -> tuple[str | None, str | None]:
    """(key of a listed model, or None) and (another .keras/.tflite file, or None).

    The reference is the one the user names, else our only fp32 model when the list holds one.
    """
    if reference:
        path = Path(reference).expanduser()
        if why := not_a_model_file(path, ".keras or .tflite file", missing="no such reference model"):
            raise BenchError(why)
        for entry in entries:
            if Path(entry.path).resolve() == path.resolve():
                return entry.key, None
        return None, str(path)
    fp32 = [e for e in entries if e.variant == "fp32" and e.origin == OURS]
    return (fp32[0].key, None) if len(fp32) == 1 else (None, None)


def run(
    entries: list[ModelEntry],
    images: np.ndarray,
    labels: np.ndarray,
    reference: str | None = None,
    threads: int = 1,
    progress=None,
) -> tuple[list[dict], dict | None]:
    """Score every model; with a reference (explicit, or our only fp32 model), also their loss against it."""
    if len(labels) == 0:
        raise BenchError("the data holds no faces")
    ref_key, ref_file = pick_reference(entries, reference)
    results, probs_by_key = [], {}
    for entry in entries:
        start = time.perf_counter()
        clf = open_entry(entry, threads)
        probs = predict_all(
            clf, images, progress=(lambda n, e=entry: progress(e.key, n)) if progress else None
        )
        result = score(entry.key, probs, labels)
        result["seconds"] = time.perf_counter() - start
        results.append(result)
        probs_by_key[entry.key] = probs
    origin = {e.key: e.origin for e in entries}
    ref = _reference(ref_key, ref_file, images, labels, results, probs_by_key)
    if ref is not None:
        ref_result, ref_probs = ref
        for result in results:
            # A peer's loss against our reference would mean nothing: only our models are compared.
            if result["model"] != ref_result["model"] and origin[result["model"]] == OURS:
                result["vs_reference"] = against(result, probs_by_key[result["model"]], ref_result, ref_probs)
        ref_result = {k: v for k, v in ref_result.items() if k != "per_class"}
    for entry, result in zip(entries, results):
        if entry.origin != OURS:
            _against_peer_float(entry, result, probs_by_key[entry.key], images, labels)
    return results, (ref_result if ref is not None else None)


def _against_peer_float(entry: ModelEntry, result: dict, probs: np.ndarray, images, labels) -> None:
    """A peer's quantized model against its own float model, as ours is against our float one."""
    from fer_bench.peer import float_probs

    ref_probs, where = float_probs(entry, images)
    if ref_probs is None:
        result["vs_reference_note"] = f"no float reference for {entry.key}: {where}"
        return
    ref = score(f"{entry.key} (float .hdf5)", ref_probs, labels)
    result["vs_reference"] = against(result, probs, ref, ref_probs)


def _reference(ref_key, ref_file, images, labels, results, probs_by_key):
    if ref_key is None and ref_file is None:
        return None
    if ref_key in probs_by_key:
        result = next(r for r in results if r["model"] == ref_key)
        return {**result, "path": None, "kind": "tflite"}, probs_by_key[ref_key]
    path = Path(ref_file)
    if path.suffix == ".tflite":
        from fer_bench.models import describe_models

        entry = describe_models([path])[0]
        probs = predict_all(open_entry(entry, 1), images)
        kind = "tflite"
    else:
        probs = keras_probs(path, images)
        kind = "keras"
    result = score(f"reference:{path.name}", probs, labels)
    return {**result, "path": str(path), "kind": kind}, probs
