"""What a .tflite says about itself: labels and input spec from the files packed into it.

Export appends `fer_model.json` and `labels.txt` as a zip archive at the end of the .tflite, the way
TFLite's metadata populator packs associated files, so `zipfile` reads them without any TFLite library.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from fer_edge.errors import ModelError

MODEL_JSON = "fer_model.json"
LABELS_TXT = "labels.txt"
FORMAT = "fer-model/1"


@dataclass
class ModelInfo:
    labels: list[str] | None = None
    name: str | None = None
    variant: str | None = None
    input: dict = field(default_factory=dict)
    output: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)
    has_json: bool = False


def read_labels_file(path: str | Path) -> list[str]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ModelError(f"{path}: cannot read labels ({err.strerror or err})") from err
    labels = parse_labels(text)
    if not labels:
        raise ModelError(f"{path}: no labels in it (one label per line)")
    return labels


def parse_labels(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def packed_files(path: str | Path) -> dict[str, bytes]:
    """The associated files packed into a .tflite; empty for a plain one."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n in (MODEL_JSON, LABELS_TXT)]
            return {name: archive.read(name) for name in names}
    except (zipfile.BadZipFile, OSError, KeyError):
        return {}


def read_model_info(path: str | Path) -> ModelInfo:
    files = packed_files(path)
    info = ModelInfo()
    if MODEL_JSON in files:
        try:
            meta = json.loads(files[MODEL_JSON].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ModelError(f"{path}: its {MODEL_JSON} is not valid JSON ({err})") from err
        if not isinstance(meta, dict) or not str(meta.get("format", "")).startswith("fer-model/"):
            raise ModelError(f"{path}: its {MODEL_JSON} is not in the {FORMAT} format")
        info.has_json = True
        info.labels = [str(x) for x in meta.get("labels") or []] or None
        info.name = meta.get("name")
        info.variant = meta.get("variant")
        info.input = dict(meta.get("input") or {})
        info.output = dict(meta.get("output") or {})
        info.source = dict(meta.get("source") or {})
    if info.labels is None and LABELS_TXT in files:
        info.labels = parse_labels(files[LABELS_TXT].decode("utf-8", errors="replace")) or None
    return info
