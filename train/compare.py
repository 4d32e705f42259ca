"""`fer-train compare`: every architecture trained under the same budget, one table.

Each architecture gets its own run folder, so an interrupted comparison resumes like any run, a
finished one is reused rather than retrained, and one given a larger budget trains on from where it
stopped.
"""

from __future__ import annotations

from pathlib import Path

from fer_train.files import read_json, refuse_overwrite, write_json, write_text
from fer_train.fit import TrainError, can_continue, changed_settings, fit, recipe_config
from fer_train.models import SEED_LEARNING_RATE

TABLE_FILES = ("comparison.json", "comparison.md", "comparison.png")


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
    reference: Path | None = None,
    learning_rate: float = SEED_LEARNING_RATE,
    skip_bad: bool = False,
) -> list[dict]:
    """Train each architecture with one recipe for `epochs`, or until `budget_minutes` of training time
    (then its best epoch is kept): an equal compute budget is the fair comparison on one machine.
    `reference`, a finished run folder (the default model's), adds its row as it was trained."""
    from fer_train.models import MODELS

    if not epochs and not budget_minutes:
        raise ValueError("give the budget: --epochs N or --budget-minutes M")
    unknown = [a for a in archs if a not in MODELS]
    if unknown or not archs:
        raise ValueError(
            f"unknown architecture(s) {', '.join(unknown) or '(none given)'}: use {', '.join(MODELS)}"
        )
    if reference is not None and not Path(reference).exists():
        raise ValueError(f"--reference {reference}: no such run folder")
    if reference is not None and not (Path(reference) / "metrics.json").is_file():
        raise ValueError(f"--reference {reference}: not a finished run folder (no metrics.json)")
    reference_metrics = _read_metrics(Path(reference)) if reference is not None else None  # before training
    for name in TABLE_FILES:  # its own table is rewritten as runs go on; anyone else's file is kept
        refuse_overwrite(Path(out) / name, force=True)
    rows = []
    budget = f"{budget_minutes:g} minutes" if budget_minutes else f"{epochs} epochs"
    recipes = {
        a: _seed_recipe(a, data, epochs, budget_minutes, batch_size, limit, learning_rate, skip_bad)
        for a in archs
    }
    for arch, cfg in recipes.items():  # before any training: a clash found after an hour's training is late
        run = Path(out) / arch
        if not force and (run / "config.json").exists() and (changed := changed_settings(cfg, run)):
            raise TrainError(
                f"{run}: holds a {arch} run with other settings ({', '.join(changed)}); "
                "use --force to retrain it, or another --out"
            )
    for arch, cfg in recipes.items():
        run = Path(out) / arch
        if (run / "metrics.json").exists() and not force and not can_continue(cfg, run):
            log(f"{arch}: reusing the finished run in {run}")
            metrics = _read_metrics(run)
        else:  # a new run, an interrupted one, or a finished one given a larger budget
            log(f"{arch}: training for {budget} in {run}")
            metrics = fit(cfg, run, force=force, log=log)
        rows.append(_row(arch, run, metrics, cfg))
    if reference_metrics is not None:
        name = f"{reference_metrics.get('model_name') or Path(reference).name} (reference: its own recipe)"
        # Its int8 figures from the same faces as the others' (data, limit and skip_bad are shared).
        rows.append(_row(name, Path(reference), reference_metrics, recipes[archs[0]], write_int8=False))
    table_json, table_md, plot = (Path(out) / name for name in TABLE_FILES)
    write_json(table_json, rows)
    write_text(table_md, to_markdown(rows))
    _plot(rows, plot, log)
    log(to_markdown(rows))
    return rows


def _seed_recipe(arch, data, epochs, budget_minutes, batch_size, limit, learning_rate, skip_bad):
    """One recipe for every architecture (the seed's: Adam, learning rate halved on plateaus), so that
    only the architecture differs."""
    return recipe_config(
        arch,
        str(data),
        optimizer="adam",
        learning_rate=learning_rate,
        weight_decay=0.0,
        schedule="plateau",
        distill=0.0,  # no teacher either
        epochs=epochs or 1000,
        budget_minutes=budget_minutes,
        batch_size=batch_size,
        limit=limit,
        val_limit=limit,  # a quick trial is quick end to end
        patience=epochs or 1000,
        skip_bad=skip_bad,
        command=f"fer-train compare --archs {arch} "
        + (f"--budget-minutes {budget_minutes:g}" if budget_minutes else f"--epochs {epochs}")
        + (f" --lr {learning_rate:g}" if learning_rate != SEED_LEARNING_RATE else "")
        + (" --skip-bad" if skip_bad else ""),
    )


def _read_metrics(run: Path) -> dict:
    path = run / "metrics.json"
    try:
        metrics = read_json(path, 16 << 20)
    except (OSError, ValueError) as err:
        raise TrainError(f"{path}: not a finished run's metrics ({err})") from None
    figures = (
        "accuracy",
        "flip_tta_accuracy",
        "macro_f1",
        "parameters",
        "epochs",
        "seconds_per_epoch",
        "train_seconds",
    )
    if not isinstance(metrics, dict) or not all(isinstance(metrics.get(k), (int, float)) for k in figures):
        raise TrainError(f"{path}: not a finished run's metrics (it lacks {', '.join(figures)})")
    return metrics


def _row(arch: str, run: Path, metrics: dict, cfg, write_int8: bool = True) -> dict:
    return {
        "arch": arch,
        **_int8_figures(run, cfg, write_int8),
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


def _int8_figures(run: Path, cfg, write: bool = True) -> dict:
    """What the architecture costs on a device: its best model exported to int8 by fer-export (200
    calibration faces) and timed, one face per call on one thread, through fer-edge's classifier."""
    from fer_edge.classifier import Classifier
    from fer_export import VerificationError, build_variant, load_keras_model
    from fer_export.measure import latency_ms
    from fer_export.representative import stratified_indices
    from fer_train.data import load
    from fer_train.files import write_bytes

    train = load(cfg.data, "train", skip_bad=cfg.skip_bad)
    faces = train.images[stratified_indices(train.labels, min(200, cfg.limit or 200), 0)]
    try:
        exported = build_variant(load_keras_model(run / "model.keras"), "int8", faces)
    except VerificationError as e:  # an under-trained model may miss int8's tolerance; same cost
        exported = e.exported
    if write:  # the model timed, for the user to run (a reference run's folder is left as it is)
        write_bytes(run / "model_int8.tflite", exported.model)
    latency = latency_ms(Classifier(exported.model, threads=1), faces[0], runs=500, warmup=50, budget=30)
    return {
        "int8_kib": round(len(exported.model) / 1024),
        "int8_p50_ms": round(latency["median_ms"], 3),
    }


def _plot(rows: list[dict], path: Path, log) -> None:
    """Accuracy and macro-F1 per architecture, beside int8 latency: what the budget bought."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("note: matplotlib is not installed; comparison.png not drawn")
        return
    from fer_train.files import atomic_write

    names = [r["arch"].replace(" (", "\n(") for r in rows]
    x = range(len(rows))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    width = 0.4
    left.bar([i - width / 2 for i in x], [100 * r["accuracy"] for r in rows], width, label="accuracy %")
    left.bar([i + width / 2 for i in x], [100 * r["macro_f1"] for r in rows], width, label="macro-F1 x100")
    left.set_xticks(list(x), names, fontsize=8)
    left.set_title(f"On {rows[0]['split']} after an equal training budget")
    left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=2, frameon=False)
    right.bar(list(x), [r["int8_p50_ms"] for r in rows], 0.6, color="tab:gray")
    right.set_xticks(list(x), names, fontsize=8)
    right.set_ylabel("ms per face")
    right.set_title("int8 p50 latency, 1 thread")
    atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)


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
