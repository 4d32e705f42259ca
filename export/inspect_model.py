"""`fer-export inspect`: everything a .tflite says about itself, read the way an app would read it."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from fer_edge.errors import ModelError, not_a_model_file
from fer_edge.model_info import CRC_FIELD, check_flatbuffer_crc, read_model_bytes
from fer_export.model_file import ModelFileError, check_tflite, read_card, read_files, read_metadata


def describe(path: str | Path) -> dict:
    path = Path(path)
    if why := not_a_model_file(path, ".tflite file"):
        raise ModelFileError(why)
    try:
        model = read_model_bytes(path)
    except ModelError as e:
        raise ModelFileError(str(e)) from None
    try:
        check_tflite(model)
    except ModelFileError as e:
        raise ModelFileError(f"{path}: {e}") from None
    try:
        metadata = read_metadata(model)
        card, files = read_card(model), read_files(model)
        if card and card.get(CRC_FIELD):
            check_flatbuffer_crc(model, card[CRC_FIELD])
    except (ModelFileError, ModelError) as e:
        raise ModelFileError(f"{path}: {str(e).removeprefix('the model: ')}") from None
    return {
        "file": str(path),
        "size_bytes": len(model),
        "tensors": _tensors(model, path),
        "card": card,
        "tflite_metadata": None if metadata is None else asdict(metadata),
        "associated_files": {name: len(data) for name, data in files.items()},
    }


def _tensors(model: bytes, path: Path) -> dict:
    from fer_edge.runtime import interpreter_from_bytes

    try:
        interpreter = interpreter_from_bytes(model, allocate=False)
    except (ValueError, RuntimeError) as e:
        raise ModelFileError(f"{path}: the interpreter cannot load it ({str(e).splitlines()[0]})") from None

    def one(d: dict) -> dict:
        scale, zero = d["quantization"]
        return {
            "name": d["name"],
            "shape": [int(x) for x in d["shape_signature"]],
            "dtype": np.dtype(d["dtype"]).name,
            "quantization": {"scale": float(scale), "zero_point": int(zero)} if scale else None,
        }

    return {
        "inputs": [one(d) for d in interpreter.get_input_details()],
        "outputs": [one(d) for d in interpreter.get_output_details()],
    }


INPUT_FIELDS = ("height", "width", "channels", "color", "dtype", "range", "normalization")


def to_text(info: dict) -> str:
    lines = [f"{info['file']} ({info['size_bytes'] / 1024:.0f} KiB)"]
    for kind in ("inputs", "outputs"):
        for t in info["tensors"][kind]:
            q = t["quantization"]
            quant = f", scale {q['scale']:g}, zero point {q['zero_point']}" if q else ""
            lines.append(f"  {kind[:-1]} {t['name']}: {t['shape']} {t['dtype']}{quant}")
    card = info["card"]
    if card:
        # Every field is optional to a reader (the card of an older or a foreign writer): "?" if absent.
        spec = {k: card.get("input", {}).get(k, "?") for k in INPUT_FIELDS}
        labels = ", ".join(card.get("labels") or ["?"])
        lines.append(f"  model card: {card.get('name', '?')} ({card.get('variant', '?')}), labels: {labels}")
        lines.append(
            f"  input: {spec['height']}x{spec['width']}x{spec['channels']} {spec['color']} {spec['dtype']}, "
            f"range {spec['range']}; {spec['normalization']}"
        )
        crc = card.get(CRC_FIELD)
        checked = f"CRC-32 {crc}, as written at export" if crc else "no CRC-32 in the card (not checked)"
        lines.append(f"  weights: {checked}")
    else:
        lines.append("  model card: none (no fer_model.json inside)")
    md = info["tflite_metadata"]
    if md:
        lines.append(
            f"  TFLite metadata: {md['name']!r} v{md['version']}, parser >= {md['min_parser_version']}"
        )
        for t in md["inputs"]:
            lines.append(
                f"    input {t['name']}: {t['image_color']} {t['image_size']}, "
                f"mean {t['mean']}, std {t['std']}"
            )
        for t in md["outputs"]:
            files = ", ".join(f["name"] for f in t["associated_files"])
            lines.append(f"    output {t['name']}: labels in {files or 'none'}")
    else:
        lines.append("  TFLite metadata: none")
    files = ", ".join(f"{k} ({v} B)" for k, v in info["associated_files"].items()) or "none"
    lines.append(f"  associated files: {files}")
    return "\n".join(lines)


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
