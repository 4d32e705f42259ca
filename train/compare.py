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
    epochs: int,
    out: Path,
    batch_size: int = 64,
    limit: int | None = None,
    force: bool = False,
    log=print,
) -> list[dict]:
    from fer_train.models import MODELS

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
            log(f"{arch}: training for {epochs} epochs in {run}")
            # One recipe for every architecture (the seed's: Adam, learning rate halved on plateaus), so
            # that only the architecture differs.
            cfg = recipe_config(
                arch,
                str(data),
                optimizer="adam",
                learning_rate=1e-3,
                weight_decay=0.0,
                schedule="plateau",
                epochs=epochs,
                batch_size=batch_size,
                limit=limit,
                val_limit=limit,  # a quick trial is quick end to end
                patience=epochs,
                command=f"fer-train compare --archs {arch} --epochs {epochs}",
            )
            metrics = fit(cfg, run, force=force, log=log)
        rows.append(
            {
                "arch": arch,
                "split": metrics["split"],
                "accuracy": metrics["accuracy"],
                "flip_tta_accuracy": metrics["flip_tta_accuracy"],
                "macro_f1": metrics["macro_f1"],
                "parameters": metrics["parameters"],
                "epochs": metrics["epochs"],
                "seconds_per_epoch": metrics["seconds_per_epoch"],
            }
        )
    write_json(Path(out) / "comparison.json", rows)
    write_text(Path(out) / "comparison.md", to_markdown(rows))
    log(to_markdown(rows))
    return rows


def to_markdown(rows: list[dict]) -> str:
    lines = [
        "| architecture | split | accuracy | flip-TTA accuracy | macro-F1 | parameters | epochs | s/epoch |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['arch']} | {r['split']} | {r['accuracy']:.2%} | {r['flip_tta_accuracy']:.2%} "
            f"| {r['macro_f1']:.4f} | {r['parameters']:,} | {r['epochs']} | {r['seconds_per_epoch']} |"
        )
    return "\n".join(lines) + "\n"
