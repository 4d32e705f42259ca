"""The variants `fer-export quantize` writes, in one table: what each one is and what it is held to.

As Ultralytics' `export_formats()`: conversion, verification, the accuracy gate, the model cards and
`fer-export formats` all read this table, so a variant's meaning lives in one row.
"""

from __future__ import annotations

from dataclasses import dataclass

from fer_export.verify import Tolerance


@dataclass(frozen=True)
class Format:
    mode: str  # the name on the command line and in file names: <model>_<mode>.tflite
    quantization: str  # what the model card says was done
    needs_rep_data: bool  # calibrated on a representative dataset (--rep-data)
    tolerance: Tolerance  # verification against the Keras model on sample faces, before writing
    max_accuracy_drop: float  # the most accuracy (fraction of the eval data) it may lose and be written


FORMATS = (
    Format("fp32", "none", False, Tolerance(mean_abs=1e-4, agreement=0.99), 0.001),
    Format("fp16", "float16 weights", False, Tolerance(mean_abs=5e-3, agreement=0.97), 0.005),
    Format(
        "dynamic",
        "dynamic-range: int8 weights, activations quantized at run time",
        False,
        Tolerance(mean_abs=0.03, agreement=0.90),
        0.01,
    ),
    Format(
        "int8",
        "full-integer post-training quantization",
        True,
        Tolerance(mean_abs=0.05, agreement=0.85),
        0.01,
    ),
)
FORMAT = {f.mode: f for f in FORMATS}
MODES = tuple(FORMAT)
TOLERANCES = {f.mode: f.tolerance for f in FORMATS}
# Input and output types of an int8 model: int8 (default), uint8 (what MediaPipe Tasks feed), float32.
IO_TYPES = ("int8", "uint8", "float32")


def export_formats() -> list[dict]:
    """The table as rows, for `fer-export formats` and the docs."""
    return [
        {
            "mode": f.mode,
            "quantization": f.quantization,
            "rep_data": f.needs_rep_data,
            "verify_mean_abs": f.tolerance.mean_abs,
            "verify_agreement": f.tolerance.agreement,
            "max_accuracy_drop_pp": round(100 * f.max_accuracy_drop, 2),
        }
        for f in FORMATS
    ]
