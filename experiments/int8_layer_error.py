"""Where a run's int8 model loses accuracy: per-op quantization error, then which ops to keep float.

Calibrates as `fer-export` does (72 training faces per class), measures each quantized op's error on
500 PublicTest faces with TensorFlow's QuantizationDebugger (RMSE in units of the op's int8 step),
then converts with one more op, or group of ops, kept float32 besides standardize and scores all of
PublicTest. A last line calibrates on PublicTest faces instead, to tell a calibration mismatch from
rounding.

Usage: python experiments/int8_layer_error.py RUN DATA
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
from common import models, splits
from tensorflow.lite.python.util import modify_model_io_type

import fer_export.convert as convert
from fer_export.runtime import TFLiteRunner, ops

QUANTIZED = ("CONV_2D", "FULLY_CONNECTED", "ELU", "MAX_POOL_2D", "AVERAGE_POOL_2D", "MIRROR_PAD")


def per_class(dataset, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pools = [np.flatnonzero(dataset.labels == c) for c in range(7)]
    picks = [rng.choice(pool, min(n, len(pool)), replace=False) for pool in pools]  # PublicTest: 56 disgust
    return dataset.images[np.concatenate(picks)]


def debugger_for(model, rep: np.ndarray, debug: np.ndarray):
    with convert.quiet():
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        convert._full_integer(converter, rep, "int8")
        return tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=lambda: convert.representative_batches(debug)
        )


def quantized(debugger, nodes: list[str]) -> bytes:
    debugger.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=nodes)
    with convert.quiet():
        return bytes(modify_model_io_type(debugger.get_nondebug_quantized_model(), tf.int8, tf.int8))


def accuracy(model: bytes, test) -> float:
    return float((TFLiteRunner(model).predict(test.images).argmax(1) == test.labels).mean())


def error_table(debugger, standardize: list[str]) -> list[dict]:
    debugger.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=standardize)
    with convert.quiet():
        debugger.run()
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    rows = [r for r in csv.DictReader(io.StringIO(dump.getvalue())) if r["op_name"] in QUANTIZED]
    print("| op | output | RMSE / step | max error / step |\n|---|---|---|---|")
    for r in rows:
        scale = float(r["scale"])
        rmse, worst = np.sqrt(float(r["mean_squared_error"])) / scale, float(r["max_abs_error"]) / scale
        print(f"| {r['op_name']} | {r['tensor_name'][:60]} | {rmse:.2f} | {worst:.1f} |")
    return rows


def main(run: Path, root: str) -> None:
    trained, _ = models(run)
    train, test = splits(root)
    debug = test.images[np.random.default_rng(1).choice(len(test.images), 500, replace=False)]
    debugger = debugger_for(trained, per_class(train, 72), debug)
    graph = ops(debugger.calibrated_model)
    names = [name for op in graph for name in op["outputs"]]
    standardize = [n for n in names if "/standardize_" in n]
    front = [name for op in convert.front_end(graph) for name in op["outputs"]]
    first_conv = [op["outputs"][0] for op in convert.front_end(graph) if op["type"] == "CONV_2D"][-1:]
    rows = error_table(debugger, standardize)

    print("\n| kept float besides standardize | accuracy |\n|---|---|")
    groups = {"nothing": []}
    groups.update({r["tensor_name"][:70]: [r["tensor_name"]] for r in rows if r["op_name"] in QUANTIZED[:2]})
    groups["the front end without its first convolution"] = [n for n in front if n not in first_conv]
    groups["the front end (what fer-export keeps)"] = front
    for label, extra in groups.items():
        print(f"| {label} | {accuracy(quantized(debugger, standardize + extra), test):.2%} |", flush=True)

    sharp = debugger_for(trained, per_class(test, 72), debug)
    print(
        f"\ncalibrated on PublicTest faces (diagnostic only), standardize float: "
        f"{accuracy(quantized(sharp, standardize), test):.2%}"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
