"""The one source of truth for what a FER model sees and says.

Training writes this into every run's config, export writes it into every .tflite (metadata, labels.txt,
model card), and the edge runtime reads it back from the model: nothing downstream hard-codes it.
"""

from __future__ import annotations

# FER2013's label order: the integer in the Kaggle CSV's `emotion` column indexes this tuple.
CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

IMAGE_SIZE = 48
CHANNELS = 1

# Models take raw pixels; normalization is a layer inside the model, so an app feeds camera bytes.
INPUT_SPEC: dict = {
    "height": IMAGE_SIZE,
    "width": IMAGE_SIZE,
    "channels": CHANNELS,
    "color": "grayscale",
    "range": [0, 255],
    "normalization": "inside the model: feed raw pixels",
}

OUTPUT_SPEC: dict = {
    "kind": "probabilities",
    "activation": "softmax",
    "labels": list(CLASSES),
}

# Kaggle CSV `Usage` values and the split names users type for them.
SPLIT_ALIASES: dict[str, str] = {
    "train": "Training",
    "training": "Training",
    "test": "PublicTest",
    "val": "PublicTest",
    "publictest": "PublicTest",
    "private": "PrivateTest",
    "privatetest": "PrivateTest",
}


def canonical_split(name: str) -> str:
    """Map a user's split name (train, test, private, or the CSV's own) to the CSV's Usage value."""
    key = name.strip().lower()
    if key not in SPLIT_ALIASES:
        raise ValueError(f"unknown split {name!r}: use train, test (PublicTest) or private (PrivateTest)")
    return SPLIT_ALIASES[key]


# Class folder names of other FER2013 copies: adjectives (Kaggle's "Emotion Detection" copy), nouns,
# and the CSV's own integers.
CLASS_ALIASES: dict[str, str] = {
    "anger": "angry",
    "disgusted": "disgust",
    "fearful": "fear",
    "happiness": "happy",
    "sadness": "sad",
    "surprised": "surprise",
    **{str(i): name for i, name in enumerate(CLASSES)},
}


def class_index(name: str) -> int | None:
    """Index of a class name (or an alias), case-insensitively; None when it is not one of the seven."""
    key = name.strip().lower()
    key = CLASS_ALIASES.get(key, key)
    return CLASSES.index(key) if key in CLASSES else None
