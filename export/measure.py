"""What an exported variant costs: accuracy and agreement against the float Keras model on the eval
data, and a first look at its batch-1 latency (`fer-bench latency` is the measurement)."""

from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np

from fer_edge.classifier import Classifier
from fer_export.representative import Data
from fer_export.variant import Exported


def keras_reference(keras_model, evaluation: Data) -> dict | None:
    if evaluation.images is None:
        return None
    from fer_train.evaluate import classification_report, predict_probs

    probs = predict_probs(keras_model, evaluation.images)
    metrics = classification_report(evaluation.labels, probs.argmax(1))
    return {"probs": probs, "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}


def latency_ms(clf: Classifier, face: np.ndarray, runs: int = 200, warmup: int = 10, budget: float = 5):
    """Batch-1 `predict` time in milliseconds (median, p90, mean) over up to `runs` calls or `budget`
    seconds: a first look; `fer-bench latency` is the measurement."""
    for _ in range(warmup):
        clf.predict(face)
    times: list[float] = []
    deadline = time.perf_counter() + budget
    while len(times) < runs and (len(times) < 10 or time.perf_counter() < deadline):
        start = time.perf_counter()
        clf.predict(face)
        times.append((time.perf_counter() - start) * 1000.0)
    t = np.asarray(times)
    return {
        "median_ms": float(np.median(t)),
        "p90_ms": float(np.percentile(t, 90)),
        "mean_ms": float(t.mean()),
        "runs": len(times),
    }


def measure(exported: Exported, mode: str, threads: int, evaluation: Data, keras_eval) -> dict:
    from fer_train.evaluate import classification_report

    clf = Classifier(exported.model, threads=threads)
    result = {
        "size_bytes": len(exported.model),
        "input_dtype": clf.input_dtype.name,
        "output_dtype": clf.output_dtype.name,
    }
    if mode == "int8":  # what the file computes in float32, read from it, not from the options
        result["float_ops"] = exported.card["source"].get("float_ops", {})
    sample = evaluation.images[0] if evaluation.images is not None else np.full((48, 48), 128, np.uint8)
    result["latency"] = latency_ms(clf, sample)
    if keras_eval is not None:
        probs = clf.predict(evaluation.images)
        metrics = classification_report(evaluation.labels, probs.argmax(1))
        result.update(
            accuracy=metrics["accuracy"],
            macro_f1=metrics["macro_f1"],
            accuracy_drop=keras_eval["accuracy"] - metrics["accuracy"],
            macro_f1_drop=keras_eval["macro_f1"] - metrics["macro_f1"],
            agreement=float((probs.argmax(1) == keras_eval["probs"].argmax(1)).mean()),
            agreement_on="eval data",
        )
    else:
        result.update(agreement=exported.check.agreement, agreement_on="verification faces")
    return result


def card_metrics(entry: dict) -> dict:
    keys = ("accuracy", "macro_f1", "accuracy_drop", "macro_f1_drop", "agreement", "agreement_on", "latency")
    return {k: entry[k] for k in keys if k in entry}


def compare_quantizers(variants: list[dict], default: str) -> dict | None:
    pair = {v["quantizer"]: v for v in variants if v["variant"] == "int8" and not v["mobile_rgb"]}
    if len(pair) < 2:
        return None
    keys = ("status", "size_bytes", "accuracy", "macro_f1", "agreement")
    table = {
        q: {k: v.get(k) for k in keys} | {"latency_ms": v.get("latency", {}).get("median_ms")}
        for q, v in pair.items()
    }
    # Verification status first, then accuracy on the eval data, then the smaller file.
    measured = {q: t for q, t in table.items() if t["size_bytes"] is not None}
    better = None
    if measured:
        better = max(
            measured,
            key=lambda q: (
                measured[q]["status"] == "ok",
                measured[q]["accuracy"] or 0.0,
                -measured[q]["size_bytes"],
            ),
        )
    return {"int8": table, "better": better, "default": default}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
