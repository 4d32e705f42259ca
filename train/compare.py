"""`fer-train compare`: every architecture trained under the same budget, one table.

Each architecture gets its own run folder, so an interrupted comparison resumes like any run, and a
finished one is reused rather than retrained.
"""

from __future__ import annotations

import json
from pathlib import Path

from fer_train.files import write_json, write_text
from fer_train.fit import fit, recipe_config


def compare(
    data,
    archs: list[str],
    epochs: int | None,
    out: Path,
    batch_size: int = 64,
    limit: int | None = None,
    force: bool = False,
    log=print,
    budget_minutes: float | None = None,
) -> list[dict]:
    """Train each architecture with one recipe for `epochs`, or until `budget_minutes` of training time
    (then its best epoch is kept): an equal compute budget is the fair comparison on one machine."""
    from fer_train.models import MODELS

    if not epochs and not budget_minutes:
        raise ValueError("give the budget: --epochs N or --budget-minutes M")
    unknown = [a for a in archs if a not in MODELS]
    if unknown or not archs:
        raise ValueError(
            f"unknown architecture(s) {', '.join(unknown) or '(none given)'}: use {', '.join(MODELS)}"
        )
    rows = []
    for arch in archs:
        run = Path(out) / arch
        if (run / "metrics.json").exists() and not force:
            log(f"{arch}: reusing the finished run in {run}")
            metrics = json.loads((run / "metrics.json").read_text())
        else:
            budget = f"{budget_minutes:g} minutes" if budget_minutes else f"{epochs} epochs"
            log(f"{arch}: training for {budget} in {run}")
            # One recipe for every architecture (the seed's: Adam, learning rate halved on plateaus), so
            # that only the architecture differs.
            cfg = recipe_config(
                arch,
                str(data),
                optimizer="adam",
                learning_rate=1e-3,
                weight_decay=0.0,
                schedule="plateau",
                epochs=epochs or 1000,
                budget_minutes=budget_minutes,
                batch_size=batch_size,
                limit=limit,
                val_limit=limit,  # a quick trial is quick end to end
                patience=epochs or 1000,
                command=f"fer-train compare --archs {arch} --epochs {epochs} "
                f"--budget-minutes {budget_minutes}",
            )
            metrics = fit(cfg, run, force=force, log=log)
        int8 = _int8_figures(run, data, limit)
        rows.append(
            {
                "arch": arch,
                **int8,
                "split": metrics["split"],
                "accuracy": metrics["accuracy"],
                "flip_tta_accuracy": metrics["flip_tta_accuracy"],
                "macro_f1": metrics["macro_f1"],
                "parameters": metrics["parameters"],
                "macs_per_face": metrics.get("macs_per_face"),
                "epochs": metrics["epochs"],
                "seconds_per_epoch": metrics["seconds_per_epoch"],
                "train_minutes": round(metrics["train_seconds"] / 60, 1),
                "images_per_second": round(
                    metrics["epochs"] * metrics.get("train_samples", 0) / max(1e-9, metrics["train_seconds"]),
                    1,
                ),
            }
        )
    write_json(Path(out) / "comparison.json", rows)
    write_text(Path(out) / "comparison.md", to_markdown(rows))
    log(to_markdown(rows))
    return rows


def _int8_figures(run: Path, data, limit: int | None) -> dict:
    """What the architecture costs on a device: its best model exported to int8 by fer-export (200
    calibration faces) and timed, one face per call on one thread, through fer-edge's classifier."""
    import time

    import numpy as np

    from fer_edge.classifier import Classifier
    from fer_export import VerificationError, build_variant, load_keras_model
    from fer_export.representative import stratified_indices
    from fer_train.data import load
    from fer_train.files import write_bytes

    train = load(data, "train")
    faces = train.images[stratified_indices(train.labels, min(200, limit or 200), 0)]
    try:
        exported = build_variant(load_keras_model(run / "model.keras"), "int8", faces)
    except (
        VerificationError
    ) as e:  # an under-trained model may miss int8's tolerance; it still costs the same
        exported = e.exported
    path = write_bytes(run / "model_int8.tflite", exported.model)
    classifier = Classifier(path, threads=1)
    face = faces[:1]
    for _ in range(20):
        classifier.predict(face)
    times = []
    for _ in range(200):
        start = time.perf_counter()
        classifier.predict(face)
        times.append(time.perf_counter() - start)
    return {
        "int8_kib": round(len(exported.model) / 1024),
        "int8_p50_ms": round(1000 * float(np.median(times)), 3),
    }


def to_markdown(rows: list[dict]) -> str:
    lines = [
        "| architecture | split | accuracy | flip-TTA accuracy | macro-F1 | parameters | MACs per face "
        "| epochs | minutes | images/s | int8 size | int8 p50, 1 thread |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['arch']} | {r['split']} | {r['accuracy']:.2%} | {r['flip_tta_accuracy']:.2%} "
            f"| {r['macro_f1']:.4f} | {r['parameters']:,} | {(r.get('macs_per_face') or 0) / 1e6:.1f} M "
            f"| {r['epochs']} | {r['train_minutes']} | {r['images_per_second']} "
            f"| {r['int8_kib']} KiB | {r['int8_p50_ms']} ms |"
        )
    return "\n".join(lines) + "\n"
