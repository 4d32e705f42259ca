"""The default model shipped with the toolkit (int8 and float16 .tflite, labels, model card).

`fer-edge run` and `fer-edge predict` use these when no --model is given.
"""

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL = MODELS_DIR / "fer_cnn_int8.tflite"
FLOAT16_MODEL = MODELS_DIR / "fer_cnn_fp16.tflite"
