"""Run exported models in the real LiteRT interpreter: batched prediction and batch-1 latency.

Export checks every model in the runtime that will execute it, not in TensorFlow, so what the report
says is what a Pi or a phone gets.
"""

from __future__ import annotations

import time

import numpy as np


class TFLiteRunner:
    """A LiteRT interpreter over model bytes that takes uint8 faces and returns float32 probabilities."""

    def __init__(self, model: bytes, threads: int = 1):
        from fer_edge.runtime import interpreter_from_bytes

        self.interpreter = interpreter_from_bytes(model, threads)
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.batch = int(self.input["shape"][0])

    @property
    def input_dtype(self) -> str:
        return np.dtype(self.input["dtype"]).name

    @property
    def output_dtype(self) -> str:
        return np.dtype(self.output["dtype"]).name

    @property
    def channels(self) -> int:
        return int(self.input["shape"][-1])

    def _resize(self, n: int) -> None:
        if n != self.batch:
            shape = list(self.input["shape"])
            shape[0] = n
            self.interpreter.resize_tensor_input(self.input["index"], shape)
            self.interpreter.allocate_tensors()
            self.input = self.interpreter.get_input_details()[0]
            self.output = self.interpreter.get_output_details()[0]
            self.batch = n

    def quantize_input(self, faces: np.ndarray) -> np.ndarray:
        x = np.asarray(faces, dtype=np.float32)
        if x.ndim == 3:
            x = x[..., None]
        dtype = np.dtype(self.input["dtype"])
        scale, zero = self.input["quantization"]
        if dtype.kind == "f":
            return x.astype(dtype)
        if scale == 0:  # an integer input without quantization parameters takes the values as they are
            return np.clip(np.round(x), np.iinfo(dtype).min, np.iinfo(dtype).max).astype(dtype)
        q = np.round(x / scale + zero)
        return np.clip(q, np.iinfo(dtype).min, np.iinfo(dtype).max).astype(dtype)

    def dequantize_output(self, y: np.ndarray) -> np.ndarray:
        scale, zero = self.output["quantization"]
        if np.dtype(self.output["dtype"]).kind == "f" or scale == 0:
            return y.astype(np.float32)
        return ((y.astype(np.float32) - zero) * scale).astype(np.float32)

    def predict(self, faces: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Probabilities (N, classes) for uint8 faces (N, 48, 48) or (N, 48, 48, C)."""
        out = []
        for start in range(0, len(faces), batch_size):
            chunk = self.quantize_input(faces[start : start + batch_size])
            self._resize(len(chunk))
            self.interpreter.set_tensor(self.input["index"], chunk)
            self.interpreter.invoke()
            out.append(self.dequantize_output(self.interpreter.get_tensor(self.output["index"])))
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def latency_ms(self, face: np.ndarray, runs: int = 200, warmup: int = 10, budget_s: float = 5.0) -> dict:
        """Batch-1 invoke() latency in milliseconds: median, p90 and mean over up to `runs` calls."""
        self._resize(1)
        self.interpreter.set_tensor(self.input["index"], self.quantize_input(face[None]))
        for _ in range(warmup):
            self.interpreter.invoke()
        times: list[float] = []
        deadline = time.perf_counter() + budget_s
        while len(times) < runs and (len(times) < 10 or time.perf_counter() < deadline):
            start = time.perf_counter()
            self.interpreter.invoke()
            times.append((time.perf_counter() - start) * 1000.0)
        t = np.asarray(times)
        return {
            "median_ms": float(np.median(t)),
            "p90_ms": float(np.percentile(t, 90)),
            "mean_ms": float(t.mean()),
            "runs": len(times),
        }


def ops(model: bytes) -> list[dict]:
    """The ops of a TFLite model in execution order: type, input and output tensor names, the dtype of
    the first output, and whether the op reads one of the model's inputs."""
    from fer_edge.runtime import interpreter_from_bytes

    interpreter = interpreter_from_bytes(model, allocate=False)
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    model_inputs = {t["index"] for t in interpreter.get_input_details()}

    def names(indices) -> list[str]:
        return [tensors[i]["name"] for i in indices if i in tensors]

    # The interpreter lists ops only through this underscored method (as tf.lite's does).
    return [
        {
            "type": op["op_name"],
            "inputs": names(op["inputs"]),
            "outputs": names(op["outputs"]),
            "dtype": np.dtype(tensors[op["outputs"][0]]["dtype"]).name if len(op["outputs"]) else None,
            "reads_input": bool(model_inputs & set(op["inputs"])),
        }
        for op in interpreter._get_ops_details()
    ]


def float_compute_ops(model: bytes) -> list[dict]:
    """The ops of `model` that compute in float32; QUANTIZE and DEQUANTIZE, which only convert between
    int8 and float, are left out."""
    converts = ("QUANTIZE", "DEQUANTIZE")
    return [op for op in ops(model) if op["type"] not in converts and op["dtype"] == "float32"]
