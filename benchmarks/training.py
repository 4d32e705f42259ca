"""Training throughput: images per second of a training step, per architecture, on this CPU.

What a user needs before choosing an architecture and width for a CPU-only machine. Each architecture
is built as `fer-train fit` builds it and trained on random 48x48 faces (throughput does not depend on
the pixels): a few warm-up batches, then timed batches.
"""

from __future__ import annotations

import time

import numpy as np

# The models worth comparing on a CPU: the shipped ones, the previous default, the seed network and the
# two references.
DEFAULT_VARIANTS = "fer_res_l,fer_small,fer_res,fer_nano,cnn,vgg16,inceptionv3"


def parse_variants(text: str) -> list[tuple[str, dict]]:
    """`cnn:width=0.5:first_kernel=3` -> ("cnn", {"width": 0.5, "first_kernel": 3})."""
    variants = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        arch, *options = item.split(":")
        kwargs = {}
        for option in options:
            key, _, value = option.partition("=")
            try:
                kwargs[key] = float(value) if "." in value else int(value)
            except ValueError:
                raise ValueError(f"{item}: builder options are NAME=NUMBER, e.g. cnn:width=0.5") from None
        variants.append((arch, kwargs))
    return variants


def measure(arch: str, options: dict, batch_size: int = 64, batches: int = 8, warmup: int = 2) -> dict:
    """Images per second of `train_on_batch` for one architecture."""
    from fer_train.backend import import_keras
    from fer_train.models import build_model

    keras = import_keras()
    model = build_model(arch, **options)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch_size, 48, 48, 1)).astype(np.float32)
    y = keras.utils.to_categorical(rng.integers(0, 7, batch_size), 7)
    for _ in range(warmup):
        model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(batches):
        model.train_on_batch(x, y)
    seconds = time.perf_counter() - start
    label = arch + "".join(f" {k}={v}" for k, v in options.items())
    return {
        "model": label,
        "arch": arch,
        "options": options,
        "parameters": int(model.count_params()),
        "batch_size": batch_size,
        "batches": batches,
        "images_per_second": batch_size * batches / seconds,
        "seconds_per_fer2013_epoch": 28709 / (batch_size * batches / seconds),
    }


def to_markdown(doc: dict) -> str:
    lines = [
        "# Training throughput",
        "",
        f"{doc['machine']}. A training step (`train_on_batch`, Adam) on batches of {doc['batch_size']} "
        "48x48 faces, after warm-up; an epoch of FER2013's 28,709 training faces at that rate.",
        "",
        "| model | parameters | images/s | minutes per FER2013 epoch |",
        "|---|---:|---:|---:|",
    ]
    for r in doc["results"]:
        lines.append(
            f"| {r['model']} | {r['parameters']:,} | {r['images_per_second']:.0f} "
            f"| {r['seconds_per_fer2013_epoch'] / 60:.1f} |"
        )
    return "\n".join(lines) + "\n"
