"""fer_export: turn a trained Keras model into verified, self-describing TFLite models.

    from fer_export import export_variant
    export_variant(model, "int8", "out/fer_res_l_int8.tflite", rep_images=faces)

Importing this package does not import TensorFlow; converting does.
"""

from fer_export.convert import ConversionError
from fer_export.formats import FORMATS, IO_TYPES, MODES, TOLERANCES, export_formats
from fer_export.model_file import ModelFileError, read_card, read_files, read_metadata
from fer_export.variant import Exported, ExportError, build_variant, export_variant, load_keras_model
from fer_export.verify import Check, Tolerance, VerificationError

__all__ = [
    "FORMATS",
    "IO_TYPES",
    "MODES",
    "TOLERANCES",
    "Check",
    "ConversionError",
    "ExportError",
    "Exported",
    "ModelFileError",
    "Tolerance",
    "VerificationError",
    "build_variant",
    "export_formats",
    "export_variant",
    "load_keras_model",
    "read_card",
    "read_files",
    "read_metadata",
]
