"""`fer-train`: train, evaluate and compare FER2013 models.

fer-train fit --model fer_res_l --data ../shared/fer2013 --out runs/fer_res_l
fer-train evaluate --model models/runs/fer_res_l/model.keras --data ../shared/fer2013 --split test
fer-train compare --data ../shared/fer2013 --archs cnn,vgg16,inceptionv3 --budget-minutes 45 \\
    --out runs/compare
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer
from rich.console import Console

from fer_edge.cli_errors import fail, guarded, make_app, run_app
from fer_edge.errors import not_a_model_file
from fer_train.balance import METHODS
from fer_train.models import DEFAULT_MODEL, MODELS, SEED_LEARNING_RATE

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ start-up chatter is not for users

app = make_app("Train, evaluate and compare facial-emotion models on FER2013 (CSV or image folders).")
console = Console(stderr=True)

DATA_HELP = "FER2013 as the Kaggle CSV (emotion,pixels,Usage) or a folder of <split>/<class>/*.jpg."


def _log(message: str) -> None:
    console.print(message, highlight=False, soft_wrap=True)


def _typos_first(data: Path, archs: dict[str, dict] | None = None, keras_file: Path | None = None) -> None:
    """What a typo breaks (a path, a model's name or option) said at once, not after the seconds
    TensorFlow takes to load."""
    from fer_train.data import DataError, check_source
    from fer_train.models import check_options

    try:
        for arch, options in (archs or {}).items():
            check_options(arch, options)
        check_source(data)
    except (DataError, ValueError) as err:
        fail(str(err))
    if keras_file is not None and (why := not_a_model_file(Path(keras_file), ".keras file")):
        fail(why)
    if keras_file is not None and Path(keras_file).suffix.lower() == ".tflite":
        fail(
            f"{keras_file}: an exported model; this takes the .keras it came from "
            f"(fer-bench accuracy --models {keras_file} scores a .tflite)"
        )


def _guarded(run):
    from fer_train.backend import import_keras, out_of_memory_as

    import_keras()  # TensorFlow's start-up chatter is silenced before anything imports it
    from fer_train.balance import BalanceError
    from fer_train.data import DataError
    from fer_train.fit import TrainError

    def run_in_memory():
        with out_of_memory_as(TrainError, "use a smaller --batch-size or model"):
            return run()

    interrupted = "interrupted; run the same command again to resume from the last finished epoch"
    return guarded(run_in_memory, (DataError, BalanceError, TrainError), interrupted)


@app.command(short_help="Train a registered model with its recipe (resumable).")
def fit(
    data: Path = typer.Option(..., "--data", help=DATA_HELP),
    out: Path = typer.Option(
        ..., "--out", help="Run folder: checkpoints, model.keras and reports land here."
    ),
    model: str = typer.Option(
        DEFAULT_MODEL,
        "--model",
        "--arch",
        help=f"Registered model, trained with its own recipe: {', '.join(MODELS)}. "
        "The options below override the recipe.",
    ),
    epochs: int = typer.Option(None, min=1, help="Epochs (plateau schedule: at most; it may stop sooner)."),
    batch_size: int = typer.Option(None, min=1, help="Faces per training step."),
    optimizer: str = typer.Option(None, help="sgd (Nesterov momentum 0.9), adam or nadam."),
    lr: float = typer.Option(None, help="Learning rate (cosine: the peak after warm-up)."),
    weight_decay: float = typer.Option(
        None, min=0.0, help="Decoupled weight decay (Keras's: 5e-3 is about a PyTorch SGD's 5e-4)."
    ),
    schedule: str = typer.Option(
        None, help="cosine (fixed length, warm-up then decay) or plateau (halve on plateaus, stop early)."
    ),
    balance: str = typer.Option(None, help=f"Resample the training split: {', '.join(METHODS)}."),
    class_weight: bool = typer.Option(
        None, "--class-weight/--no-class-weight", help="Weight the loss by inverse class frequency."
    ),
    label_smoothing: float = typer.Option(
        None, min=0.0, max=0.5, help="Share of each target spread evenly over the seven classes."
    ),
    teacher: str = typer.Option(
        None,
        metavar="<path>",
        help="Distil from this trained .keras model, or a run shipped in models/runs by its name "
        "(fer_res_l), or from several separated by commas, their answers averaged.",
    ),
    distill: float = typer.Option(
        None, min=0.0, max=1.0, help="The teacher's share of each training target (the rest: the label)."
    ),
    init: str = typer.Option(
        None,
        metavar="<path>",
        help="Fine-tune: start from this trained model's weights (a .keras file of the same model, or a "
        "shipped run's name) instead of random ones.",
    ),
    augment: bool = typer.Option(None, help="Random flip, rotation, shift, zoom, brightness (and erasing)."),
    erasing: float = typer.Option(None, min=0.0, max=1.0, help="Probability of random erasing per face."),
    mixup: float = typer.Option(
        None,
        min=0.0,
        help="MixUp: blend each training face and its target with another's, weights from "
        "Beta(A, A); 0.2 is usual, 0 turns it off.",
    ),
    width: float = typer.Option(None, min=0.1, max=4.0, help="cnn only: filter-count multiplier."),
    weights: str = typer.Option(None, help="vgg16/inceptionv3 only: a local no-top weights file."),
    patience: int = typer.Option(None, help="plateau schedule: EarlyStopping patience in epochs."),
    train_split: str = typer.Option(None, help="Split to train on (default: train)."),
    val_split: str = typer.Option(None, help="Split to validate and select on (default: test = PublicTest)."),
    val_data: Path = typer.Option(None, help="Validation data from another source than --data."),
    limit: int = typer.Option(None, min=1, help="Train on at most this many faces (quick trials)."),
    val_limit: int = typer.Option(None, min=1, help="Validate on at most this many faces (quick trials)."),
    skip_bad: bool = typer.Option(
        None, "--skip-bad", help="Skip malformed rows and unreadable images, and report them."
    ),
    seed: int = typer.Option(
        None, min=0, max=2**32 - 1, help="Seed of every random choice: weights, shuffling, augmentation."
    ),
    force: bool = typer.Option(
        False, "--force", help="Start over in a folder that holds a finished or other run."
    ),
) -> None:
    """Train a registered model with its recipe; run the same command again to resume after a stop.

    `fer-train fit --model fer_res_l --data ../shared/fer2013 --out runs/fer_res_l` reproduces the shipped
    default model.
    """
    given = {
        "epochs": epochs,
        "batch_size": batch_size,
        "optimizer": optimizer,
        "learning_rate": lr,
        "weight_decay": weight_decay,
        "schedule": schedule,
        "balance": balance,
        "class_weight": class_weight,
        "label_smoothing": label_smoothing,
        "teacher": str(teacher) if teacher else None,
        "distill": distill,
        "init": init,
        "augment": augment,
        "erasing": erasing,
        "mixup": mixup,
        "patience": patience,
        "train_split": train_split,
        "val_split": val_split,
        "val_data": str(val_data) if val_data else None,
        "limit": limit,
        "val_limit": val_limit,
        "skip_bad": skip_bad,
        "seed": seed,
    }
    options = {k: v for k, v in {"width": width, "weights": weights}.items() if v is not None}
    if balance is not None and balance not in METHODS:
        fail(f"unknown --balance {balance!r}: use one of {', '.join(METHODS)}")
    if weights and (why := not_a_model_file(Path(weights), "weights file", "no such weights file")):
        fail(why)
    _typos_first(data, {model: options})
    if val_data is not None:
        _typos_first(val_data)

    def run():
        from fer_train.data import MissingSplit
        from fer_train.fit import fit as run_fit  # imports TensorFlow: only after _guarded silenced it
        from fer_train.fit import recipe_config

        overrides = {k: v for k, v in given.items() if v is not None}
        cfg = recipe_config(model, str(data), model_options=options, **overrides)
        try:
            return run_fit(cfg, out, force=force, log=_log)
        except MissingSplit as err:  # say which option names another split
            if _same_split(err.split, cfg.train_split):
                raise MissingSplit(f"{err}; name the training split with --train-split", err.split) from None
            hint = "name the validation split with --val-split, or give --val-data"
            raise MissingSplit(f"{err}; {hint}", err.split) from None

    _guarded(run)


def _same_split(a: str, b: str) -> bool:
    """Whether two split names mean one split ("train" and the CSV's "Training")."""
    from fer_train.spec import canonical_split

    try:
        return canonical_split(a) == canonical_split(b)
    except ValueError:  # a folder's own split name
        return a.lower() == b.lower()


@app.command(short_help="Accuracy, macro-F1, per-class metrics, confusion matrix.")
def evaluate(
    model: Path = typer.Option(..., "--model", help="A .keras model (e.g. a run's model.keras)."),
    data: Path = typer.Option(..., "--data", help=DATA_HELP),
    split: str = typer.Option("test", help="train, test (PublicTest) or private (PrivateTest)."),
    out: Path = typer.Option(
        None, help="Write the report as JSON here (and a confusion-matrix PNG beside it)."
    ),
    skip_bad: bool = typer.Option(
        False, "--skip-bad", help="Skip malformed rows and unreadable images, and report them."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing report."),
) -> None:
    """Evaluate a model: single-crop and flip-TTA accuracy, macro-F1, per-class recall."""
    _typos_first(data, None, model)

    def run():
        from fer_train import data as fer_data
        from fer_train import evaluate as ev
        from fer_train.files import refuse_overwrite, write_json

        if (
            out and not out.is_dir() and out.suffix.lower() != ".json"
        ):  # --out model.keras would replace the model
            raise ValueError(f"--out {out}: give a .json file name (the plot goes beside it as .png)")
        if out:
            refuse_overwrite(out, force, "report")
            refuse_overwrite(out.with_suffix(".png"), force, "confusion-matrix plot")
        keras_model = _load_keras(model)
        ds = fer_data.load(data, split, skip_bad=skip_bad)
        if ds.skipped:
            _log(f"skipped {len(ds.skipped)} bad item(s), e.g. {ds.skipped[0]}")
        report = ev.evaluate(keras_model, ds.images, ds.labels, ds.split)
        report["model"] = str(model)
        typer.echo(ev.to_markdown(report, f"{model.name} on {ds.split}"))
        if out:
            write_json(out, report)
            ev.plot_confusion(
                report["single_crop"]["confusion_matrix"],
                out.with_suffix(".png"),
                f"{model.name} on {ds.split}",
            )
            _log(f"report written to {out}")

    _guarded(run)


@app.command(short_help="Architectures trained at an equal budget, one table.")
def compare(
    data: Path = typer.Option(..., "--data", help=DATA_HELP),
    archs: str = typer.Option("cnn,vgg16,inceptionv3", help="Comma-separated architectures."),
    epochs: int = typer.Option(None, min=1, help="The same number of epochs for every architecture."),
    budget_minutes: float = typer.Option(
        None,
        min=0.01,
        help="Or the same training time: each trains until this many minutes, best epoch kept.",
    ),
    out: Path = typer.Option(Path("runs/compare"), help="One run folder per architecture, and the table."),
    batch_size: int = typer.Option(64, min=1, help="Faces per training step."),
    lr: float = typer.Option(
        SEED_LEARNING_RATE,
        min=1e-7,
        max=1.0,
        help="Adam's learning rate for every architecture (the seed's is too high for VGG16 from scratch; "
        "1e-4 suits it).",
    ),
    limit: int = typer.Option(
        None, min=1, help="Train and validate each on at most this many faces (quick trials)."
    ),
    reference: Path = typer.Option(
        None,
        "--reference",
        help="A finished run folder (e.g. models/runs/fer_res_l, the default) whose row is added as trained,"
        " for reference.",
    ),
    skip_bad: bool = typer.Option(
        False, "--skip-bad", help="Skip malformed rows and unreadable images, and report them."
    ),
    force: bool = typer.Option(
        False, "--force", help="Retrain architectures that already have a finished run."
    ),
) -> None:
    """Train each architecture under the same budget and write one comparison table and plot.

    Every architecture gets the same data, augmentation, validation split and recipe (Adam, learning
    rate halved on plateaus); with --budget-minutes each trains until its training time would pass
    the budget and keeps its best epoch. Each is then exported to int8 and timed on one thread.
    Writes comparison.md, comparison.json and comparison.png into --out; an interrupted comparison
    resumes with the same command, and a larger --budget-minutes trains finished runs on from where
    they stopped.
    """
    names = list(dict.fromkeys(a.strip() for a in archs.split(",") if a.strip()))  # each once
    _typos_first(data, dict.fromkeys(names, {}))

    def run():
        from fer_train.compare import compare as run_compare  # imports TensorFlow, once silenced

        return run_compare(
            data,
            names,
            epochs,
            out,
            batch_size=batch_size,
            limit=limit,
            force=force,
            log=_log,
            budget_minutes=budget_minutes,
            reference=reference,
            learning_rate=lr,
            skip_bad=skip_bad,
        )

    _guarded(run)


def _load_keras(path: Path):
    from fer_train.models import check_face_model, load_model

    model = load_model(path)  # ModelFileError, a ValueError: one line
    check_face_model(model, str(path))  # another task's model would be scored against our 7 classes
    return model


def main() -> None:
    run_app(app, "fer-train")


if __name__ == "__main__":
    sys.exit(main())
