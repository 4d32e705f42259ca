"""Training: a resumable `fit` that writes a self-contained run folder.

A run folder holds `config.json` (what was asked, with the label and input spec), `checkpoint/`
(the last epoch's model with its optimizer, and the training state), `best.keras`, and once finished
`model.keras`, `history.csv`, `metrics.json`, `confusion.png` and `curves.png`. Killing the process
loses at most the epoch in progress: the same command continues from the last finished epoch.
"""

from __future__ import annotations

import csv
import io
import math
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

from fer_edge.errors import not_a_model_file
from fer_edge.signals import stop_signals_deferred
from fer_models import MODELS_DIR
from fer_train import data as fer_data
from fer_train.augment import AugmentConfig
from fer_train.balance import balance, class_weights
from fer_train.files import atomic_write, only_one_writer, read_json, write_json, write_text
from fer_train.models import (
    DEFAULT_MODEL,
    MODELS,
    ModelFileError,
    build_model,
    check_face_model,
    check_options,
    load_model,
    macs_per_face,
)
from fer_train.spec import CLASSES, INPUT_SPEC, OUTPUT_SPEC

# fit() warns about a shuffle flag that tf.data input ignores; the pipeline below shuffles itself.
warnings.filterwarnings("ignore", message=".*`shuffle=True` was passed.*")

# Settings that may differ between the first run and a resumed one without changing what is trained.
RESUMABLE_CHANGES = {"epochs", "patience", "budget_minutes", "command"}
# Where a run keeps its epoch count, history and callback state for resuming, beside last.keras.
STATE_FILE = Path("checkpoint") / "state.json"
# Files a run writes in its folder: the only ones --force removes.
RUN_FILES = (
    "config.json",
    "checkpoint",
    "best.keras",
    "model.keras",
    "history.csv",
    "metrics.json",
    "metrics.md",
    "confusion.png",
    "curves.png",
)
SCHEDULES = ("cosine", "plateau")
OPTIMIZERS = ("sgd", "adam", "nadam")


class TrainError(Exception):
    """A run that cannot start or continue as asked; the message is one line."""


@dataclass
class FitConfig:
    """Every training setting. `recipe_config` fills it from a registered model's recipe."""

    data: str
    model: str = DEFAULT_MODEL
    model_options: dict = field(default_factory=dict)  # the builder's keyword arguments (cnn: width)
    epochs: int = 60
    batch_size: int = 64
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    # cosine: a fixed-length run, warm-up then cosine decay to zero; plateau: ReduceLROnPlateau
    # halves the rate and EarlyStopping ends the run when validation accuracy stalls.
    schedule: str = "plateau"
    warmup_epochs: int = 2
    patience: int = 12
    lr_patience: int = 4
    budget_minutes: float | None = None  # stop before the training time would pass this (compare)
    balance: str = "none"
    class_weight: bool = False
    label_smoothing: float = 0.0
    # Distillation: the training target is (1 - distill) x the one-hot label + distill x the teacher's
    # probabilities for the face (a trained .keras model or a shipped run's name, run once on the
    # unaugmented faces and mirrors; several, separated by commas, are one teacher that averages them).
    teacher: str | None = None
    distill: float = 0.0
    # Fine-tuning: start from a trained model's weights (a .keras file or a shipped run's name, as for
    # the teacher) instead of the seed's random ones; its layers must be those of `model`.
    init: str | None = None
    augment: bool = True
    erasing: float = 0.0
    mixup: float = 0.0  # MixUp's Beta(alpha, alpha); 0: off
    train_split: str = "train"
    val_split: str = "test"
    val_data: str | None = None
    limit: int | None = None
    val_limit: int | None = None
    skip_bad: bool = False
    seed: int = 0
    command: str = field(default_factory=lambda: " ".join(["fer-train", *sys.argv[1:]]))


def recipe_config(model: str, data: str, **overrides) -> FitConfig:
    """The settings `model` is registered with, overridden by `overrides` (options a user gave)."""
    if model not in MODELS:
        raise TrainError(f"unknown model {model!r}: use one of {', '.join(MODELS)}")
    recipe = MODELS[model].recipe
    if overrides.get("distill") == 0 and "teacher" not in overrides:
        recipe = {**recipe, "teacher": None}  # --distill 0 turns the recipe's teacher off
    return FitConfig(data=str(data), model=model, **{**recipe, **overrides})


def fit(cfg: FitConfig, out: str | os.PathLike, force: bool = False, log=print) -> dict:
    """Train (or resume) a run in `out`; returns the validation metrics."""
    out = Path(out)
    _check_settings(cfg)
    resuming = _check_run_dir(cfg, out, force) and _has_checkpoint(out)
    _check_model_files(cfg, resuming)
    # Inputs are checked before anything in `out` is touched; model files first, as they fail in a
    # second where the data takes ten.
    teachers = _load_teacher(cfg)
    start = _initial_weights(cfg) if cfg.init and not resuming else None
    if cfg.model_options.get("weights") and not resuming:
        # A wrong weights file fails here, before the run folder is made. The model is built again
        # after seeding below, so its initial weights are the seed's, as in any other run.
        _build(cfg)
    train, val = _load_splits(cfg, log)
    with _only_run_in(out):
        _start_run_dir(cfg, out, force and not resuming)
        keras.utils.set_random_seed(cfg.seed)
        model, state = _model_and_state(cfg, out, -(-len(train) // cfg.batch_size), start)
        if _room_left(cfg, state):
            state.pop("stopped", None)  # a larger budget: the run goes on
            _train(cfg, out, model, state, train, val, teachers, log)
        return _finish(cfg, out, train, val, log)


# --- Run folder ------------------------------------------------------------------------------------


def _check_settings(cfg: FitConfig) -> None:
    if cfg.optimizer not in OPTIMIZERS:
        raise TrainError(f"unknown optimizer {cfg.optimizer!r}: use {', '.join(OPTIMIZERS)}")
    if cfg.schedule not in SCHEDULES:
        raise TrainError(f"unknown schedule {cfg.schedule!r}: use {', '.join(SCHEDULES)}")
    try:
        check_options(cfg.model, cfg.model_options)
    except ValueError as e:
        raise TrainError(str(e)) from None
    if not 0.0 <= cfg.distill <= 1.0:
        raise TrainError(f"--distill {cfg.distill}: the teacher's share of the target is between 0 and 1")
    if cfg.distill > 0 and not cfg.teacher:
        raise TrainError("--distill needs a teacher: pass --teacher MODEL.keras")
    if cfg.teacher and cfg.distill == 0:
        raise TrainError("--teacher needs --distill A: the teacher's share of each target, e.g. 0.5")
    if cfg.init is not None and not cfg.init.strip():  # else it would train from random weights
        raise TrainError("--init needs a trained .keras file or a shipped run's name, e.g. fer_res_l")
    if not cfg.mixup >= 0 or math.isinf(cfg.mixup):
        raise TrainError(f"--mixup {cfg.mixup}: MixUp's alpha is positive (0.2 is usual), or 0 for none")
    _check_numbers(cfg)


def _check_model_files(cfg: FitConfig, resuming: bool) -> None:
    """The teachers (needed again by a resumed run) and the starting weights (only by a new one)."""
    # A wheel install holds no models/runs: the message says where a run's name was looked for.
    paths = [("--teacher", path) for path in _teacher_paths(cfg)]
    paths += [("--init", _run_model_path(cfg.init))] if cfg.init and not resuming else []
    for option, path in paths:
        missing = (
            f"no such file for {option}, nor a run of that name in {MODELS_DIR / 'runs'}; train it first"
        )
        if why := not_a_model_file(path, f"{option} .keras file", missing):
            raise TrainError(why)


def _teacher_paths(cfg: FitConfig) -> list[Path]:
    if cfg.distill <= 0:
        return []
    if Path(cfg.teacher).is_file():  # a file whose name holds a comma is one teacher
        return [Path(cfg.teacher)]
    names = [name.strip() for name in cfg.teacher.split(",")]
    if not all(names):
        raise TrainError(f"--teacher {cfg.teacher!r}: .keras files separated by commas, none of them empty")
    return [_run_model_path(name) for name in names]


def _run_model_path(name: str) -> Path:
    """A .keras file, or the name of a run shipped in models/runs (fer_res_l: its model.keras), so a
    recipe names its teachers and starting weights wherever it is run from."""
    shipped = MODELS_DIR / "runs" / name / "model.keras"
    return shipped if not Path(name).exists() and shipped.is_file() else Path(name)


def _check_numbers(cfg: FitConfig) -> None:
    """A NaN or infinite learning rate or weight decay trains for hours into NaN weights: refused."""
    if not (math.isfinite(cfg.learning_rate) and cfg.learning_rate > 0):
        raise TrainError(f"--lr {cfg.learning_rate}: the learning rate is a positive number, e.g. 0.05")
    at_least = [
        ("--weight-decay", cfg.weight_decay, 0),
        ("--label-smoothing", cfg.label_smoothing, 0),
        ("--erasing", cfg.erasing, 0),
        ("--epochs", cfg.epochs, 1),
        ("--batch-size", cfg.batch_size, 1),
        ("--patience", cfg.patience, 1),
        ("the recipe's lr_patience", cfg.lr_patience, 1),
        ("the recipe's warmup_epochs", cfg.warmup_epochs, 0),
    ]
    for name, value, least in at_least:
        if not (math.isfinite(value) and value >= least):
            raise TrainError(f"{name} {value}: a number of at least {least}")
    if cfg.budget_minutes is not None and not cfg.budget_minutes > 0:
        raise TrainError(f"--budget-minutes {cfg.budget_minutes}: a positive number of minutes")
    for name, limit in (("--limit", cfg.limit), ("--val-limit", cfg.val_limit)):
        if limit is not None and not limit >= 1:  # 0 would mean no limit: hours, not a quick trial
            raise TrainError(f"{name} {limit}: a number of faces, at least 1")
    if not 0 <= cfg.seed < 2**32:  # NumPy's and imbalanced-learn's range; beyond it they fail mid-load
        raise TrainError(f"--seed {cfg.seed}: a whole number from 0 to {2**32 - 1}")


def _check_run_dir(cfg: FitConfig, out: Path, force: bool) -> bool:
    """Refuse a folder the run may not use; True when the run in it resumes (or continues)."""
    if out.exists() and not out.is_dir():
        raise TrainError(f"{out}: not a folder; choose another --out")
    config_path = out / "config.json"
    if not config_path.exists():
        if out.exists() and any(out.iterdir()):
            raise TrainError(
                f"{out}: folder exists and is not a run folder (no config.json); choose another --out"
            )
        return False
    if force:
        return False
    if changed := changed_settings(cfg, out):
        raise TrainError(
            f"{out}: holds a run with other settings ({', '.join(changed)}); "
            "run the same command to resume it, or use --force to start over"
        )
    if (out / "metrics.json").exists() and not _can_extend(cfg, out):
        more = (
            "a cosine run's length is part of its schedule, so it cannot continue"
            if cfg.schedule == "cosine"
            else "or a larger --epochs or --budget-minutes to continue it, unless early stopping ended it"
        )
        raise TrainError(f"{out}: holds a finished run; use --force to train a new one over it ({more})")
    return True


def _only_run_in(out: Path):
    """A second `fit` on the folder (another terminal, a cron job started twice) would interleave its
    checkpoints with this one's."""
    busy = f"{out}: another fer-train is training in this folder; let it finish or choose another --out"
    return only_one_writer(out, TrainError(busy))


def _start_run_dir(cfg: FitConfig, out: Path, clear: bool) -> None:
    if clear:  # --force: remove what an earlier run wrote, and nothing else
        for name in RUN_FILES:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    if (out / "metrics.json").exists():
        (out / "metrics.json").unlink()  # unfinished again until the new epochs are done
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", _describe(cfg))


def _can_extend(cfg: FitConfig, out: Path) -> bool:
    """A finished run continues when given more epochs than it ran or a larger training-time budget
    than the one it used up, unless EarlyStopping ended it. A cosine run cannot: its schedule was fixed
    by its length."""
    if not (out / STATE_FILE).exists() or cfg.schedule == "cosine":
        return False
    return _room_left(cfg, _read_state(out))


def changed_settings(cfg: FitConfig, out: str | os.PathLike) -> list[str]:
    """The settings of the run in `out` that differ from `cfg`, but for those a resume may change."""
    config_path = Path(out) / "config.json"
    try:
        previous = read_json(config_path, 1 << 20)["fit"]
    except (OSError, ValueError, KeyError, TypeError):
        previous = None
    if not isinstance(previous, dict):
        raise TrainError(f"{config_path}: unreadable run settings; use --force to start over")
    # A setting added since the run began was at its default then.
    defaults = {f.name: f.default for f in fields(FitConfig) if f.default is not MISSING}
    return sorted(
        k
        for k, v in asdict(cfg).items()
        if previous.get(k, defaults.get(k)) != v and k not in RESUMABLE_CHANGES
    )


def can_continue(cfg: FitConfig, out: str | os.PathLike) -> bool:
    """Whether `fit(cfg, out)` would train more epochs of the finished run in `out` (`compare` asks)."""
    out = Path(out)
    return (out / "metrics.json").exists() and _can_extend(cfg, out)


def _read_state(out: Path) -> dict:
    """The resume state a run keeps beside its checkpoint (epoch, history, callbacks), checked: a
    damaged one is one line naming it, not a traceback deep in the resume."""
    path = out / STATE_FILE
    try:
        state = read_json(path, 64 << 20)
        ok = isinstance(state["epoch"], int) and state["epoch"] >= 0 and isinstance(state["history"], list)
        ok = ok and all(isinstance(h, dict) for h in state["history"])
        ok = ok and isinstance(state.get("train_seconds", 0.0), (int, float))
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise TrainError(f"{path}: damaged resume state; use --force to start over")
    return state


def _room_left(cfg: FitConfig, state: dict) -> bool:
    """Another epoch fits: fewer epochs than asked for, and either the run never stopped early or it
    stopped for a training-time budget that has since been raised enough for an epoch like its last."""
    if state["epoch"] >= cfg.epochs:
        return False
    if state.get("stopped") == "budget" and cfg.budget_minutes:
        return state["train_seconds"] + state["history"][-1]["seconds"] <= cfg.budget_minutes * 60
    return not state.get("stopped")


def _describe(cfg: FitConfig) -> dict:
    return {
        "fit": asdict(cfg),
        "labels": list(CLASSES),
        "input": INPUT_SPEC,
        "output": OUTPUT_SPEC,
        "augment": AugmentConfig(erasing=cfg.erasing).to_dict() if cfg.augment else None,
        "mixup": cfg.mixup or None,
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
    if Path(val.source).is_dir() and Path(val.source).resolve() == Path(train.source).resolve():
        # A folder of class folders is one split: selecting epochs on the faces trained on is silent damage.
        raise TrainError(
            f"{val.source}: would be both the training and the validation data; give --data a folder "
            "holding train/ and test/ (or a FER2013 CSV), or --val-data another folder"
        )
    for ds in (train, val):
        if ds.skipped:
            log(f"skipped {len(ds.skipped)} bad item(s) in {ds.split}, e.g. {ds.skipped[0]}")
    if cfg.limit:
        train = _subset(train, cfg.limit, cfg.seed)
    if cfg.val_limit:
        val = _subset(val, cfg.val_limit, cfg.seed)
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


def _subset(ds: fer_data.Dataset, limit: int, seed: int) -> fer_data.Dataset:
    """A fixed random subset of `limit` faces (quick trials)."""
    keep = np.sort(np.random.default_rng(seed).permutation(len(ds))[:limit])
    return fer_data.Dataset(ds.images[keep], ds.labels[keep], ds.split, ds.source, ds.skipped)


def _counts(labels: np.ndarray) -> str:
    counts = np.bincount(labels, minlength=len(CLASSES))
    return "(" + ", ".join(f"{c} {n}" for c, n in zip(CLASSES, counts)) + ")"


def _build(cfg: FitConfig):
    try:
        return build_model(cfg.model, **cfg.model_options)
    except ValueError as e:
        raise TrainError(str(e)) from None


def _load_teacher(cfg: FitConfig) -> list:
    """The teacher's models, loaded and checked before the run folder is touched; none without
    distillation."""
    teachers = []
    for path in _teacher_paths(cfg):
        teachers.append(load_model(path, compile=False))
        check_face_model(teachers[-1], f"teacher {path}")
    return teachers


def _initial_weights(cfg: FitConfig) -> list[np.ndarray]:
    """The --init model's weights, checked against the registered model's layers before the run folder
    is touched (a fer_nano's weights cannot start a fer_res_l)."""
    path = _run_model_path(cfg.init)
    weights = load_model(path, compile=False).get_weights()
    expected = [w.shape for w in _build(cfg).get_weights()]
    if [w.shape for w in weights] != expected:
        raise TrainError(
            f"--init {path}: its layers are not those of {cfg.model}; pass a trained {cfg.model}"
        )
    return weights


def _targets(cfg: FitConfig, train: fer_data.Dataset, teachers: list, log) -> np.ndarray:
    """Each training face's target: its one-hot label, mixed with the teacher's probabilities when
    distilling. The teacher sees the unaugmented face and its mirror image once (training flips faces,
    so the target should not depend on which way a face looks); its answer is deterministic, so a
    resumed run trains on the same targets."""
    onehot = keras.utils.to_categorical(train.labels, len(CLASSES)).astype(np.float32)
    if cfg.distill <= 0:
        return onehot
    from fer_train.evaluate import predict_probs

    probs = np.mean([predict_probs(t, train.images, flip=True) for t in teachers], axis=0).astype(np.float32)
    agree = float((probs.argmax(1) == train.labels).mean())
    log(f"teacher {cfg.teacher}: agrees with {agree:.1%} of the training labels; distill {cfg.distill:g}")
    return (1.0 - cfg.distill) * onehot + cfg.distill * probs


def _validation_data(images: np.ndarray, labels: np.ndarray, cfg: FitConfig):
    import tensorflow as tf

    x = images.astype(np.float32)[..., None]
    y = keras.utils.to_categorical(labels, len(CLASSES)).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(cfg.batch_size).prefetch(tf.data.AUTOTUNE)


class TrainingData:
    """The training batches of one epoch, every random choice in them a function of (seed, epoch).

    The order is a stateless shuffle keyed by the epoch, and `RandomStreams` restarts the augmentation
    layers' (and the model's dropout) random streams from (seed, epoch) when an epoch begins: so a run
    resumed at epoch k trains exactly as an uninterrupted one. Augmentation runs in order, not in
    parallel, because parallel calls would draw from the shared streams in a racy order.
    """

    def __init__(self, images: np.ndarray, targets: np.ndarray, cfg: FitConfig):
        import tensorflow as tf

        from fer_train.augment import build_augmenter, build_mixup

        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.augmenter = (
            build_augmenter(AugmentConfig(erasing=cfg.erasing), cfg.seed) if cfg.augment else None
        )
        self.mixup = build_mixup(cfg.mixup, cfg.seed) if cfg.mixup else None
        x = tf.constant(images[..., None])  # uint8: a quarter of the memory of float32
        y = tf.constant(targets.astype(np.float32))
        seed, n = cfg.seed, len(targets)

        def epoch_order(_):
            keys = tf.random.stateless_uniform([n], seed=tf.stack([tf.constant(seed, tf.int64), self.epoch]))
            return tf.data.Dataset.from_tensor_slices(tf.argsort(keys))

        def batch(index):
            return tf.cast(tf.gather(x, index), tf.float32), tf.gather(y, index)

        steps = -(-n // cfg.batch_size)
        ds = tf.data.Dataset.from_tensors(0).flat_map(epoch_order).batch(cfg.batch_size).map(batch)
        # flat_map hides the length; stated, Keras runs exactly `steps` batches an epoch, as the learning
        # rate schedule counts them (unknown, it runs one step more each epoch).
        ds = ds.apply(tf.data.experimental.assert_cardinality(steps))
        if self.augmenter is not None:
            ds = ds.map(lambda a, b: (self.augmenter(a, training=True), b))
        if self.mixup is not None:  # after the geometric augmentation: it blends the augmented faces
            ds = ds.map(self._mix)
        self.dataset = ds.prefetch(tf.data.AUTOTUNE)

    def _mix(self, images, targets):
        mixed = self.mixup({"images": images, "labels": targets}, training=True)
        return mixed["images"], mixed["labels"]


def _seed_generators(*models) -> list:
    """Every random stream of the models' layers (augmentation, dropout, MixUp), nested ones included."""
    found = []
    for model in models:
        for layer in model._flatten_layers(include_self=True):
            found += getattr(layer, "_seed_generators", [])
    return found


class RandomStreams(keras.callbacks.Callback):
    def __init__(self, seed: int, data: TrainingData):
        super().__init__()
        self.seed, self.data = seed, data

    def on_epoch_begin(self, epoch, logs=None):
        self.data.epoch.assign(epoch)
        models = [self.model] + [m for m in (self.data.augmenter, self.data.mixup) if m is not None]
        for i, generator in enumerate(_seed_generators(*models)):
            # Far apart per epoch: an epoch draws well under 2**20 times from one stream.
            state = np.array([self.seed * 7919 + i, epoch << 20], dtype=generator.state.dtype)
            generator.state.assign(state)


# --- Model, resume state ---------------------------------------------------------------------------


def _has_checkpoint(out: Path) -> bool:
    """A run that finished an epoch continues from it (a run stopped in its first epoch starts over)."""
    return (out / "checkpoint" / "last.keras").exists() and (out / STATE_FILE).exists()


def _model_and_state(cfg: FitConfig, out: Path, steps_per_epoch: int, start: list | None = None):
    ckpt = out / "checkpoint" / "last.keras"
    if _has_checkpoint(out):
        state = _read_state(out)
        try:
            model = load_model(ckpt)
        except Exception as e:  # noqa: BLE001 - any damage to the checkpoint means the same thing
            raise TrainError(
                f"{ckpt}: checkpoint cannot be read ({type(e).__name__}); use --force to start over"
            ) from None
        _check_best(out)
        return model, state
    model = _build(cfg)
    if start is not None:
        model.set_weights(start)
    model.compile(
        optimizer=_optimizer(cfg, steps_per_epoch),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
        metrics=["accuracy"],
    )
    return model, {"epoch": 0, "history": [], "train_seconds": 0.0}


def _check_best(out: Path) -> None:
    """The best epoch's model, read before a resumed run trains: the run ends by exporting it, so a
    damaged one (written atomically by us, so damaged since) would fail only after more epochs."""
    best = out / "best.keras"
    if best.exists():
        try:
            load_model(best, compile=False)
        except ModelFileError as e:
            raise TrainError(f"{e}; the run cannot end on its best epoch: --force starts over") from None


def _optimizer(cfg: FitConfig, steps_per_epoch: int):
    rate = cfg.learning_rate
    if cfg.schedule == "cosine":
        # Per step, inside the optimizer: its iteration count is checkpointed, so a resumed run
        # continues the schedule where it stopped.
        warmup = min(cfg.warmup_epochs, cfg.epochs - 1) * steps_per_epoch
        rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=cfg.learning_rate / 10 if warmup else cfg.learning_rate,
            warmup_target=cfg.learning_rate if warmup else None,
            warmup_steps=warmup,
            decay_steps=cfg.epochs * steps_per_epoch - warmup,
        )
    decay = cfg.weight_decay or None
    if cfg.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=0.9, nesterov=True, weight_decay=decay)
    if cfg.optimizer == "nadam":
        return keras.optimizers.Nadam(rate, weight_decay=decay)
    return keras.optimizers.Adam(rate, weight_decay=decay)


def _train(cfg: FitConfig, out: Path, model, state: dict, train, val, teachers: list, log) -> None:
    from fer_train.progress import RichProgress

    callbacks = []
    if cfg.schedule == "plateau":
        callbacks += [
            keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=cfg.patience),
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_accuracy", mode="max", factor=0.5, patience=cfg.lr_patience, min_lr=1e-6
            ),
        ]
    resume = ResumeCheckpoint(
        out, state, *callbacks, patience=cfg.patience, budget_minutes=cfg.budget_minutes
    )
    data = TrainingData(train.images, _targets(cfg, train, teachers, log), cfg)
    weights = class_weights(train.labels) if cfg.class_weight else None
    if weights:
        log("class weights: " + ", ".join(f"{CLASSES[c]} {w:.2f}" for c, w in weights.items()))
    if state["epoch"]:
        log(f"resuming at epoch {state['epoch'] + 1} of {cfg.epochs}")
    with stop_signals_deferred() as deliver:  # Ctrl-C and SIGTERM stop training between steps
        model.fit(
            data.dataset,
            validation_data=_validation_data(val.images, val.labels, cfg),
            epochs=cfg.epochs,
            shuffle=False,  # TrainingData orders each epoch itself, by (seed, epoch)
            initial_epoch=state["epoch"],
            class_weight=weights,
            callbacks=[
                StopBetweenSteps(deliver),
                RandomStreams(cfg.seed, data),
                *callbacks,
                resume,
                RichProgress(cfg.epochs, log),
            ],
            verbose=0,
        )


class StopBetweenSteps(keras.callbacks.Callback):
    """A stop (Ctrl-C, SIGTERM) takes effect at the next step's end, as a KeyboardInterrupt raised from
    Python: raised wherever the signal found TensorFlow, it could leave its device scopes unbalanced
    and end the run in a RuntimeError traceback instead of "interrupted"."""

    def __init__(self, deliver):
        super().__init__()
        self.deliver = deliver

    def on_train_batch_end(self, batch, logs=None):
        self.deliver()

    def on_test_batch_end(self, batch, logs=None):
        self.deliver()


class ResumeCheckpoint(keras.callbacks.Callback):
    """After every epoch: saves the best model so far (`best.keras`), then the model with its optimizer
    and the callbacks' state (`checkpoint/`); on resume, puts the callbacks back where they were.
    Every file is written atomically, so a kill at any moment leaves a run that resumes."""

    def __init__(
        self, out: Path, state: dict, early=None, plateau=None, patience: int = 0, budget_minutes=None
    ):
        super().__init__()
        self.out, self.state = out, state
        self.early, self.plateau, self.patience = early, plateau, patience
        self.budget_s = budget_minutes * 60 if budget_minutes else None
        self._t0 = 0.0

    def on_train_begin(self, logs=None):
        cb = self.state.get("callbacks")
        if cb and self.early:  # Keras callbacks reset themselves at train begin; put back where they were
            self.early.wait, self.early.best = cb["early_wait"], cb["best"]
            self.early.patience = self.patience
            self.plateau.wait, self.plateau.best = cb["plateau_wait"], cb["best"]
            self.plateau.cooldown_counter = cb.get("plateau_cooldown", 0)

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
        best = self.state.get("callbacks", {}).get("best", -1.0)
        if logs.get("val_accuracy", -1.0) > best:
            best = float(logs["val_accuracy"])
            atomic_write(self.out / "best.keras", lambda p: self.model.save(p))
        self.state["callbacks"] = {"best": best}
        if self.early:
            self.state["callbacks"].update(
                early_wait=int(self.early.wait),
                plateau_wait=int(self.plateau.wait),
                plateau_cooldown=int(self.plateau.cooldown_counter),
            )
        if self.model.stop_training:  # EarlyStopping, just before: no budget brings this run back
            self.state["stopped"] = "early"
        elif self.budget_s is not None and self.state["train_seconds"] + seconds > self.budget_s:
            self.model.stop_training = True  # another epoch like this one would overrun the budget
            self.state["stopped"] = "budget"
        # Model first, then the state that points at it: a kill in between repeats one epoch, loses none.
        atomic_write(self.out / "checkpoint" / "last.keras", lambda p: self.model.save(p))
        write_json(self.out / STATE_FILE, self.state)
        write_history(self.out / "history.csv", self.state["history"])

    def on_train_end(self, logs=None):
        if self.model.stop_training and not self.state.get("stopped"):
            self.state["stopped"] = "early"  # EarlyStopping: no budget brings this run back
            write_json(self.out / STATE_FILE, self.state)


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


def _finish(cfg: FitConfig, out: Path, train, val, log) -> dict:
    from fer_train import evaluate as ev

    state = _read_state(out)
    source = out / "best.keras" if (out / "best.keras").exists() else out / "checkpoint" / "last.keras"
    # The shipped model carries no optimizer state: loaded uncompiled, it is saved without it (half the
    # size with SGD's momentum).
    model = load_model(source, compile=False)
    atomic_write(out / "model.keras", lambda p: model.save(p))
    report = ev.evaluate(model, val.images, val.labels, val.split)
    history = state["history"]
    report["model_name"] = cfg.model
    report["epochs"] = state["epoch"]
    report["best_epoch"] = max(history, key=lambda h: h.get("val_accuracy", 0))["epoch"] if history else None
    report["train_seconds"] = round(state.get("train_seconds", 0.0), 1)
    report["seconds_per_epoch"] = round(report["train_seconds"] / max(1, len(history)), 1)
    report["parameters"] = int(model.count_params())
    report["macs_per_face"] = macs_per_face(model)
    report["train_samples"] = len(train)
    report["skipped"] = {"train": len(train.skipped), "validation": len(val.skipped)}
    ev.plot_confusion(
        report["single_crop"]["confusion_matrix"], out / "confusion.png", f"{cfg.model} on {val.split}"
    )
    if history:
        ev.plot_curves(history, out / "curves.png")
    write_text(out / "metrics.md", ev.to_markdown(report, f"{cfg.model}: {out.name}"))
    write_json(out / "metrics.json", report)  # written last: its presence marks the run finished
    log(
        f"done: {val.split} accuracy {report['accuracy']:.2%} (flip TTA {report['flip_tta_accuracy']:.2%}), "
        f"macro-F1 {report['macro_f1']:.4f}; model in {out / 'model.keras'}"
    )
    return report
