"""What an exported model says about itself: the fer_model.json card and the TFLite ModelMetadata.

Both are built from `fer_train.spec` and from the converted model's own input and output details, so
they cannot drift from what the interpreter actually sees.
"""

from __future__ import annotations

from fer_export import metadata_schema as ms
from fer_export.model_file import CARD_FILE, CARD_FORMAT, LABELS_FILE
from fer_train.spec import IMAGE_SIZE, INPUT_SPEC

GRAY_NORMALIZATION = INPUT_SPEC["normalization"]
RGB_NORMALIZATION = (
    "inside the model (RGB to grayscale with ITU-R BT.601 weights, then Rescaling 1/255): "
    "feed raw RGB pixel values"
)
QUANTIZED_INPUT = {
    "int8": "int8 input: feed the pixel minus 128 (scale 1, zero point -128)",
    "uint8": "uint8 input: feed the pixel itself (scale 1, zero point 0)",
}


def model_card(
    name: str,
    variant: str,
    labels: list[str],
    channels: int,
    input_dtype: str,
    output_dtype: str,
    source: dict,
) -> dict:
    """The fer-model/1 card (THE MODEL FILE CONTRACT): what an app needs to feed and read the model."""
    color = "grayscale" if channels == 1 else "rgb"
    return {
        "format": CARD_FORMAT,
        "name": name,
        "variant": variant,
        "labels": list(labels),
        "input": {
            "height": IMAGE_SIZE,
            "width": IMAGE_SIZE,
            "channels": channels,
            "color": color,
            "range": [0, 255],
            "dtype": input_dtype,
            "normalization": GRAY_NORMALIZATION if channels == 1 else RGB_NORMALIZATION,
        },
        "output": {"kind": "probabilities", "dtype": output_dtype},
        "source": source,
    }


def labels_text(labels: list[str]) -> bytes:
    return ("\n".join(labels) + "\n").encode("utf-8")


def tflite_metadata(card: dict, version: str = "1") -> bytes:
    """The ModelMetadata flatbuffer for `card`.

    Normalization mean 0 / std 1 tells TFLite Support and MediaPipe to feed raw 0-255 values, because the
    model normalizes inside; for a quantized input the interpreter's scale and zero point then map them.
    """
    spec = card["input"]
    channels = spec["channels"]
    size = f"{spec['height']}x{spec['width']}"
    dtype_note = QUANTIZED_INPUT.get(spec["dtype"], "float32 input: feed raw pixel values 0-255")
    image = ms.TensorMetadata(
        name="image",
        description=f"{size} {spec['color']} face crop; {dtype_note}; {spec['normalization']}.",
        image_color=spec["color"],
        image_size=(spec["width"], spec["height"]),
        mean=[0.0] * channels,
        std=[1.0] * channels,
        stats_min=[0.0] * channels,
        stats_max=[255.0] * channels,
    )
    probabilities = ms.TensorMetadata(
        name="probabilities",
        description=f"Probabilities of the {len(card['labels'])} emotions, in the order of {LABELS_FILE}.",
        stats_min=[0.0],
        stats_max=[1.0],
        associated_files=[
            ms.AssociatedFile(LABELS_FILE, "Emotion labels, one per line.", ms.TENSOR_AXIS_LABELS)
        ],
    )
    return ms.build(
        ms.ModelMetadata(
            name=card["name"],
            description=(
                f"Facial emotion recognition ({', '.join(card['labels'])}) on a {size} {spec['color']} "
                f"face crop; {card['variant']} variant."
            ),
            version=version,
            author="fer-edge-toolkit",
            license="Apache-2.0",
            inputs=[image],
            outputs=[probabilities],
            associated_files=[
                ms.AssociatedFile(CARD_FILE, f"Model card (format {CARD_FORMAT}).", ms.DESCRIPTIONS)
            ],
        )
    )
