"""The second int8 path: LiteRT's own quantizer package (`litert-quantizer`, formerly ai-edge-quantizer).

LiteRT's documentation calls quantization inside the TFLite converter deprecated and points here. It
quantizes an already converted float32 .tflite with a recipe; `static_wi8_ai8` (int8 weights, int8
activations, calibrated) is the counterpart of the converter's full-integer mode. It writes int8 input
and output only.
"""

from __future__ import annotations

import numpy as np

from fer_export.convert import ConversionError, quiet, representative_batches

INSTALL_HINT = "pip install litert-quantizer"


class QuantizerUnavailable(RuntimeError):
    """The litert-quantizer package is missing or does not import."""


def _load():
    try:
        from litert_quantizer import quantizer, recipe
    except Exception as e:  # noqa: BLE001 - any import failure means the same to the user
        raise QuantizerUnavailable(
            f"--quantizer litert needs the litert-quantizer package ({INSTALL_HINT}); it failed to import: "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")
        ) from None
    return quantizer, recipe


def available() -> bool:
    try:
        _load()
    except QuantizerUnavailable:
        return False
    return True


def quantize_static_int8(float_model: bytes, rep_images: np.ndarray) -> bytes:
    """Quantize a float32 .tflite with the static_wi8_ai8 recipe, calibrated on `rep_images` (uint8)."""
    quantizer, recipe = _load()
    from fer_edge.runtime import interpreter_from_bytes

    signatures = interpreter_from_bytes(float_model, allocate=False).get_signature_list()
    if len(signatures) != 1:
        raise ConversionError(f"litert quantizer: expected one model signature, found {len(signatures)}")
    key, io = next(iter(signatures.items()))
    (input_name,) = io["inputs"]
    # Same faces, same order and the same 0/255 anchor as the converter path, so the two compare fairly.
    samples = [{input_name: batch[0]} for batch in representative_batches(rep_images)]
    with quiet():
        try:
            q = quantizer.Quantizer(bytearray(float_model), recipe.static_wi8_ai8())
            calibration = q.calibrate({key: samples}, num_threads=1)
            result = q.quantize(calibration, enable_progress_report=False)
        except Exception as e:  # noqa: BLE001 - the quantizer raises many types; the user needs one line
            text = str(e).strip().splitlines()
            raise ConversionError(
                f"litert quantizer failed: {text[-1] if text else type(e).__name__}"
            ) from None
    return bytes(result.quantized_model)
