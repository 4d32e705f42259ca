"""Training: a resumable `fit` that writes a self-contained run folder.

A run folder holds `config.json` (what was asked, with the label and input spec), `checkpoint/`
(the last epoch's model with its optimizer, and the training state), `best.keras`, and once finished
`model.keras`, `history.csv`, `metrics.json`, `confusion.png` and `curves.png`. Killing the process
loses at most the epoch in progress: the same command continues from the last finished epoch.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import shutil
import sys
import time
import warnings
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import keras
import numpy as np

from fer_train import data as fer_data
from fer_train.augment import AugmentConfig
from fer_train.balance import balance, class_weights
from fer_train.files import atomic_write, write_json, write_text
from fer_train.models import inference_blur_of, load_model, with_inference_blur
from fer_train.spec import CLASSES, INPUT_SPEC, OUTPUT_SPEC

# fit() warns about a shuffle flag that tf.data input ignores; the pipeline below shuffles itself.
warnings.filterwarnings("ignore", message=".*`shuffle=True` was passed.*")

# Settings that may differ between the first run and a resumed one without changing what is trained.
RESUMABLE_CHANGES = {"epochs", "patience", "command", "tune_blur"}
# The inference blur's sigma is tuned on the validation split when a run finishes, in these steps
# around the sigma it trained with: the best epoch is picked there, and the sigma that matches sharp
# faces to the training faces' blur drifts as the network learns (3.25 against 3.0 on run 7).
BLUR_STEPS = (-0.5, -0.25, 0.0, 0.25, 0.5)


class TrainError(Exception):
    """A run that cannot start or continue as asked; the message is one line."""


@dataclass
class FitConfig:
    data: str
    arch: str = "cnn"
    epochs: int = 60
    batch_size: int = 64
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    balance: str = "none"
    class_weight: bool = False
    label_smoothing: float = 0.0
    augment: bool = True
    width: float = 1.0
    first_kernel: int = 5
    dropout_scale: float = 1.0
    inference_blur: float = 0.0
    downsample: int = 1
    weights: str | None = None
    patience: int = 12
    lr_patience: int = 4
    train_split: str = "train"
    val_split: str = "test"
    val_data: str | None = None
    limit: int | None = None
    skip_bad: bool = False
    seed: int = 0
    tune_blur: bool = True
    command: str = field(default_factory=lambda: " ".join(["fer-train", *sys.argv[1:]]))

    def model_options(self) -> dict:
        if self.arch == "cnn":
            return {
                "width": self.width,
                "first_kernel": self.first_kernel,
                "dropout_scale": self.dropout_scale,
                "inference_blur": self.inference_blur,
                "downsample": self.downsample,
            }
        return {"weights": self.weights}


def fit(cfg: FitConfig, out: str | os.PathLike, force: bool = False, log=print) -> dict:
    """Train (or resume) a run in `out`; returns the validation metrics."""
    out = Path(out)
    _prepare_run_dir(cfg, out, force)
    train, val = _load_splits(cfg, log)
    keras.utils.set_random_seed(cfg.seed)
    model, state = _model_and_state(cfg, out)
    if not state.get("stopped") and state["epoch"] < cfg.epochs:
        _train(cfg, out, model, state, train, val, log)
    return _finish(cfg, out, val, log)


# --- Run folder ------------------------------------------------------------------------------------


def _defaults() -> dict:
    return {f.name: f.default for f in fields(FitConfig) if f.default is not MISSING}


def _prepare_run_dir(cfg: FitConfig, out: Path, force: bool) -> None:
    config_path = out / "config.json"
    if out.exists() and force:
        shutil.rmtree(out)
    elif config_path.exists():
        # A setting added after the run started counts as its default, so older runs still resume.
        previous = {**_defaults(), **json.loads(config_path.read_text())["fit"]}
        changed = sorted(
            k for k, v in asdict(cfg).items() if previous.get(k) != v and k not in RESUMABLE_CHANGES
        )
        if changed:
            raise TrainError(
                f"{out}: holds a run with other settings ({', '.join(changed)}); "
                "run the same command to resume it, or use --force to start over"
            )
        if (out / "metrics.json").exists():
            if not _can_extend(cfg, out):
                raise TrainError(
                    f"{out}: holds a finished run; use --force to train a new one over it "
                    "(or a larger --epochs to continue it)"
                )
            (out / "metrics.json").unlink()  # unfinished again until the new epochs are done
    elif out.exists() and any(out.iterdir()):
        raise TrainError(f"{out}: folder exists and is not a run folder; choose another --out or use --force")
    out.mkdir(parents=True, exist_ok=True)
    write_json(config_path, _describe(cfg))


def _can_extend(cfg: FitConfig, out: Path) -> bool:
    """A finished run continues when asked for more epochs than it ran, unless EarlyStopping ended it."""
    state_path = out / "checkpoint" / "state.json"
    if not state_path.exists():
        return False
    state = json.loads(state_path.read_text())
    return not state.get("stopped") and state["epoch"] < cfg.epochs


def _describe(cfg: FitConfig) -> dict:
    return {
        "fit": asdict(cfg),
        "model_options": cfg.model_options(),
        "labels": list(CLASSES),
        "input": INPUT_SPEC,
        "output": OUTPUT_SPEC,
        "augment": AugmentConfig().to_dict() if cfg.augment else None,
        "environment": {
            "python": platform.python_version(),
            "keras": keras.__version__,
            "backend": keras.backend.backend(),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        },
    }


# --- Data ------------------------------------------------------------------------------------------


def _load_splits(cfg: FitConfig, log) -> tuple[fer_data.Dataset, fer_data.Dataset]:
    train = fer_data.load(cfg.data, cfg.train_split, skip_bad=cfg.skip_bad)
    val = fer_data.load(cfg.val_data or cfg.data, cfg.val_split, skip_bad=cfg.skip_bad)
    for ds in (train, val):
        if ds.skipped:
            log(f"skipped {len(ds.skipped)} bad items in {ds.split}, e.g. {ds.skipped[0]}")
    if cfg.limit:
        rng = np.random.default_rng(cfg.seed)
        keep = np.sort(rng.permutation(len(train))[: cfg.limit])
        train = fer_data.Dataset(
            train.images[keep], train.labels[keep], train.split, train.source, train.skipped
        )
    if len(np.unique(train.labels)) < 2:
        raise TrainError(
            f"{cfg.data}: the {train.split} split holds a single class; training needs at least two"
        )
    log(f"{train.split}: {len(train)} faces {_counts(train.labels)}")
    if cfg.balance != "none":
        images, labels = balance(train.images, train.labels, cfg.balance, seed=cfg.seed)
        train = fer_data.Dataset(images, labels, train.split, train.source, train.skipped)
        log(f"after --balance {cfg.balance}: {len(train)} faces {_counts(train.labels)}")
    log(f"{val.split} (validation): {len(val)} faces {_counts(val.labels)}")
    return train, val


def _counts(labels: np.ndarray) -> str:
    counts = np.bincount(labels, minlength=len(CLASSES))
    return "(" + ", ".join(f"{c} {n}" for c, n in zip(CLASSES, counts)) + ")"


def _pipeline(images: np.ndarray, labels: np.ndarray, cfg: FitConfig, training: bool):
    import tensorflow as tf

    from fer_train.augment import build_augmenter

    x = images.astype(np.float32)[..., None]
    y = keras.utils.to_categorical(labels, len(CLASSES)).astype(np.float32)
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if training:
        ds = ds.shuffle(len(x), seed=cfg.seed, reshuffle_each_iteration=True)
    ds = ds.batch(cfg.batch_size)
    if training and cfg.augment:
        augmenter = build_augmenter(AugmentConfig(), seed=cfg.seed)
        ds = ds.map(lambda a, b: (augmenter(a, training=True), b), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


# --- Model, resume state ---------------------------------------------------------------------------


def _model_and_state(cfg: FitConfig, out: Path):
    from fer_train.models import build_model

    ckpt, state_path = out / "checkpoint" / "last.keras", out / "checkpoint" / "state.json"
    if ckpt.exists() and state_path.exists():
        try:
            return load_model(ckpt), json.loads(state_path.read_text())
        except Exception as e:  # noqa: BLE001 - any damage to the checkpoint means the same thing
            raise TrainError(
                f"{ckpt}: checkpoint cannot be read ({type(e).__name__}); use --force to start over"
            ) from None
    model = build_model(cfg.arch, **cfg.model_options())
    optimizers = {"adam": keras.optimizers.Adam, "nadam": keras.optimizers.Nadam}
    if cfg.optimizer not in optimizers:
        raise TrainError(f"unknown optimizer {cfg.optimizer!r}: use adam or nadam")
    model.compile(
        optimizer=optimizers[cfg.optimizer](learning_rate=cfg.learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
        metrics=["accuracy"],
    )
    return model, {"epoch": 0, "history": [], "train_seconds": 0.0}


def _train(cfg: FitConfig, out: Path, model, state: dict, train, val, log) -> None:
    from fer_train.progress import RichProgress

    early = keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=cfg.patience)
    plateau = keras.callbacks.ReduceLROnPlateau(
        monitor="val_accuracy", mode="max", factor=0.5, patience=cfg.lr_patience, min_lr=1e-6
    )
    best = keras.callbacks.ModelCheckpoint(
        str(out / "best.keras"), monitor="val_accuracy", mode="max", save_best_only=True
    )
    resume = ResumeCheckpoint(out / "checkpoint", state, early, plateau, best, cfg.patience)
    weights = class_weights(train.labels) if cfg.class_weight else None
    if weights:
        log("class weights: " + ", ".join(f"{CLASSES[c]} {w:.2f}" for c, w in weights.items()))
    if state["epoch"]:
        log(f"resuming at epoch {state['epoch'] + 1} of {cfg.epochs}")
    model.fit(
        _pipeline(train.images, train.labels, cfg, training=True),
        validation_data=_pipeline(val.images, val.labels, cfg, training=False),
        epochs=cfg.epochs,
        initial_epoch=state["epoch"],
        class_weight=weights,
        callbacks=[early, plateau, best, resume, RichProgress(cfg.epochs, log)],
        verbose=0,
    )


class ResumeCheckpoint(keras.callbacks.Callback):
    """Saves model, optimizer and callback state after every epoch, and restores the callbacks on resume."""

    def __init__(self, folder: Path, state: dict, early, plateau, best, patience: int):
        super().__init__()
        self.folder, self.state = folder, state
        self.early, self.plateau, self.best = early, plateau, best
        self.patience = patience
        self._t0 = 0.0

    def on_train_begin(self, logs=None):
        cb = self.state.get("callbacks")
        if cb:  # Keras callbacks reset themselves at train begin; put back where they were
            self.early.wait, self.early.best = cb["early_wait"], cb["best"]
            self.early.patience = self.patience
            self.plateau.wait, self.plateau.best = cb["plateau_wait"], cb["best"]
            self.plateau.cooldown_counter = cb.get("plateau_cooldown", 0)
            self.best.best = cb["best"]

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        seconds = time.time() - self._t0
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}, "seconds": round(seconds, 1)}
        row["learning_rate"] = float(self.model.optimizer.learning_rate)
        self.state["history"].append(row)
        self.state["epoch"] = epoch + 1
        self.state["train_seconds"] = self.state.get("train_seconds", 0.0) + seconds
        self.state["callbacks"] = {
            "best": float(self.best.best),
            "early_wait": int(self.early.wait),
            "plateau_wait": int(self.plateau.wait),
            "plateau_cooldown": int(self.plateau.cooldown_counter),
        }
        # Model first, then the state that points at it: a kill in between repeats one epoch, loses none.
        atomic_write(self.folder / "last.keras", lambda p: self.model.save(p))
        write_json(self.folder / "state.json", self.state)
        write_history(self.folder.parent / "history.csv", self.state["history"])

    def on_train_end(self, logs=None):
        if self.model.stop_training:
            self.state["stopped"] = True
            write_json(self.folder / "state.json", self.state)


def write_history(path: Path, history: list[dict]) -> None:
    if not history:
        return
    keys = list(dict.fromkeys(k for row in history for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    write_text(path, buf.getvalue())


# --- Finish: final model and reports ---------------------------------------------------------------


def _finish(cfg: FitConfig, out: Path, val, log) -> dict:
    from fer_train import evaluate as ev

    state = json.loads((out / "checkpoint" / "state.json").read_text())
    source = out / "best.keras" if (out / "best.keras").exists() else out / "checkpoint" / "last.keras"
    trained = load_model(source)
    # The shipped model carries no optimizer state: a clone with the best weights, a third of the size.
    model = keras.models.clone_model(trained)
    model.set_weights(trained.get_weights())
    blur = _tune_blur(model, val, log) if cfg.tune_blur else None
    if blur:
        model = with_inference_blur(model, blur["sigma"])
    atomic_write(out / "model.keras", lambda p: model.save(p))
    report = ev.evaluate(model, val.images, val.labels, val.split)
    if blur:
        report["inference_blur"] = blur
    history = state["history"]
    report["epochs"] = state["epoch"]
    report["best_epoch"] = max(history, key=lambda h: h.get("val_accuracy", 0))["epoch"] if history else None
    report["train_seconds"] = round(state.get("train_seconds", 0.0), 1)
    report["seconds_per_epoch"] = round(report["train_seconds"] / max(1, len(history)), 1)
    report["parameters"] = int(model.count_params())
    ev.plot_confusion(
        report["single_crop"]["confusion_matrix"], out / "confusion.png", f"{cfg.arch} on {val.split}"
    )
    if history:
        ev.plot_curves(history, out / "curves.png")
    write_text(out / "metrics.md", ev.to_markdown(report, f"{cfg.arch}: {out.name}"))
    write_json(out / "metrics.json", report)  # written last: its presence marks the run finished
    log(
        f"done: {val.split} accuracy {report['accuracy']:.2%} (flip TTA {report['flip_tta_accuracy']:.2%}), "
        f"macro-F1 {report['macro_f1']:.4f}; model in {out / 'model.keras'}"
    )
    return report


def _tune_blur(model, val, log) -> dict | None:
    """The inference blur's sigma with the best validation accuracy among BLUR_STEPS around the
    trained one (ties keep the trained sigma); None for a model without the blur."""
    from fer_train.evaluate import predict_probs

    trained = inference_blur_of(model)
    if not trained:
        return None
    scores = {}
    for step in BLUR_STEPS:
        sigma = round(trained + step, 3)
        if sigma > 0:
            probs = predict_probs(with_inference_blur(model, sigma), val.images)
            scores[sigma] = float((probs.argmax(1) == val.labels).mean())
    sigma = max(scores, key=lambda s: (scores[s], s == trained))
    log(
        f"inference blur tuned on {val.split}: sigma {sigma:g} (trained with {trained:g}); "
        + ", ".join(f"{s:g}: {a:.2%}" for s, a in scores.items())
    )
    return {
        "sigma": sigma,
        "trained_sigma": trained,
        "accuracy_by_sigma": {f"{s:g}": a for s, a in scores.items()},
    }
