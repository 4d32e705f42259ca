"""A Rich progress bar for Keras training, with one plain summary line per epoch.

The bar shows the epoch's batches live on a terminal; the summary lines are what lands in a log file
when training runs in the background under nohup.
"""

from __future__ import annotations

import keras
from rich import get_console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class RichProgress(keras.callbacks.Callback):
    def __init__(self, epochs: int, log=print):
        super().__init__()
        self.epochs, self.log = epochs, log
        self.progress: Progress | None = None
        self.task = None

    def on_epoch_begin(self, epoch, logs=None):
        steps = self.params.get("steps")
        self.progress = Progress(
            TextColumn(f"epoch {epoch + 1}/{self.epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[metrics]}"),
            TimeRemainingColumn(),
            transient=True,
            disable=not get_console().is_terminal,  # in a log (nohup) Rich leaves an empty line per epoch
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=steps, metrics="")

    def on_train_batch_end(self, batch, logs=None):
        if self.progress is not None:
            text = f"loss {logs.get('loss', 0):.3f} acc {logs.get('accuracy', 0):.3f}" if logs else ""
            self.progress.update(self.task, completed=batch + 1, metrics=text)

    def on_epoch_end(self, epoch, logs=None):
        if self.progress is not None:
            self.progress.stop()
        logs = logs or {}
        lr = float(self.model.optimizer.learning_rate)
        parts = [f"{k} {logs.get(k, 0):.4f}" for k in ("loss", "accuracy", "val_loss", "val_accuracy")]
        summary = " ".join(parts).replace("accuracy", "acc")
        self.log(f"epoch {epoch + 1}/{self.epochs}: {summary} lr {lr:.2e}")

    def on_train_end(self, logs=None):
        if self.progress is not None:
            self.progress.stop()
