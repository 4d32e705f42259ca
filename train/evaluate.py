"""Evaluation reports that state their protocol: split, single-crop and horizontal-flip TTA accuracy,
macro-F1, per-class precision/recall/F1 and the confusion matrix.

Per-class recall is in every report because a model that predicts one class can still post a
plausible accuracy on FER2013's imbalanced test splits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fer_train.files import atomic_write
from fer_train.spec import CLASSES


def predict_probs(model, images: np.ndarray, flip: bool = False, batch_size: int = 256) -> np.ndarray:
    """Class probabilities for uint8 faces (N, 48, 48); with `flip`, averaged with the mirrored faces."""
    x = images.astype(np.float32)[..., None]
    probs = model.predict(x, batch_size=batch_size, verbose=0)
    if flip:
        probs = (probs + model.predict(x[:, :, ::-1], batch_size=batch_size, verbose=0)) / 2.0
    return np.asarray(probs)


def classification_report(labels: np.ndarray, predicted: np.ndarray, classes=CLASSES) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix."""
    n = len(classes)
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (labels, predicted), 1)
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1)
    predicted_count = cm.sum(axis=0)
    precision = np.divide(tp, predicted_count, out=np.zeros(n), where=predicted_count > 0)
    recall = np.divide(tp, support, out=np.zeros(n), where=support > 0)
    f1 = np.divide(
        2 * precision * recall, precision + recall, out=np.zeros(n), where=(precision + recall) > 0
    )
    present = (
        support > 0
    )  # macro-F1 over the classes the data holds, as scikit-learn does with labels=present
    return {
        "accuracy": float(tp.sum() / max(1, cm.sum())),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": {
            c: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, c in enumerate(classes)
        },
        "confusion_matrix": cm.tolist(),
    }


def evaluate(model, images: np.ndarray, labels: np.ndarray, split: str) -> dict:
    """The full report: single-crop and flip-TTA results for one split."""
    single = predict_probs(model, images)
    flipped = predict_probs(model, images, flip=True)
    report = {"split": split, "samples": int(len(labels)), "protocol": "48x48 grayscale, single crop"}
    report["single_crop"] = classification_report(labels, single.argmax(1))
    report["flip_tta"] = classification_report(labels, flipped.argmax(1))
    report["accuracy"] = report["single_crop"]["accuracy"]
    report["macro_f1"] = report["single_crop"]["macro_f1"]
    report["flip_tta_accuracy"] = report["flip_tta"]["accuracy"]
    return report


def to_markdown(report: dict, title: str = "Evaluation") -> str:
    """A human-readable summary of `evaluate`'s report."""
    single, tta = report["single_crop"], report["flip_tta"]
    lines = [
        f"## {title}",
        "",
        f"Split: **{report['split']}** ({report['samples']} faces).",
        "",
        "| protocol | accuracy | macro-F1 |",
        "|---|---|---|",
        f"| single crop | {single['accuracy']:.2%} | {single['macro_f1']:.4f} |",
        f"| horizontal-flip TTA | {tta['accuracy']:.2%} | {tta['macro_f1']:.4f} |",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for name, m in single["per_class"].items():
        lines.append(
            f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |"
        )
    return "\n".join(lines) + "\n"


def plot_confusion(cm, path: str | Path, title: str = "Confusion matrix", classes=CLASSES) -> Path:
    """Row-normalized confusion matrix with counts, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, dtype=float)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(
                j,
                i,
                f"{norm[i, j]:.2f}\n{int(cm[i, j])}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=110))
    plt.close(fig)
    return Path(path)


def plot_curves(history: list[dict], path: str | Path) -> Path:
    """Loss and accuracy per epoch, training against validation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.plot(epochs, [h.get(key) for h in history], label=f"train {key}")
        ax.plot(epochs, [h.get(f"val_{key}") for h in history], label=f"validation {key}")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, dpi=110))
    plt.close(fig)
    return Path(path)
