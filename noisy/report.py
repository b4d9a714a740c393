"""Test metrics and plots for evaluate.py: loss, accuracy, per-class accuracy, confusion
matrix, expected calibration error (ECE), training curves and corruption robustness."""
import csv
import os

import numpy as np

from noisy.artifacts import atomic_path


def metrics(probs, labels, ece_bins=15):
    """Loss, accuracy, per-class accuracy, confusion matrix (rows: true class) and ECE:
    the mean |accuracy - confidence| over `ece_bins` equal-width confidence bins,
    weighted by the share of images in each bin (Guo et al. 2017)."""
    probs = np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)
    labels = np.asarray(labels)
    num_classes = probs.shape[1]
    predicted, confidence = probs.argmax(1), probs.max(1)
    correct = predicted == labels
    bins = np.minimum((confidence * ece_bins).astype(int), ece_bins - 1)
    ece = sum(abs(correct[bins == b].mean() - confidence[bins == b].mean()) * (bins == b).mean()
              for b in range(ece_bins) if (bins == b).any())
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    return {"loss": float(-np.log(probs[np.arange(len(labels)), labels]).mean()),
            "accuracy": float(correct.mean()),
            "per_class_accuracy": [float(correct[labels == c].mean()) if (labels == c).any() else None
                                   for c in range(num_classes)],
            "ece": float(ece), "confusion": confusion.tolist()}


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    _pyplot().close(fig)


def plot_confusions(results, class_names, path):
    plt = _pyplot()
    stages = list(results)
    fig, axes = plt.subplots(1, len(stages), figsize=(5.2 * len(stages), 4.6), squeeze=False)
    for ax, stage in zip(axes[0], stages):
        matrix = np.asarray(results[stage]["confusion"], float)
        matrix = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
        ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(class_names)), class_names, rotation=60, fontsize=7)
        ax.set_yticks(range(len(class_names)), class_names, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{stage}: {results[stage]['accuracy']:.2%}")
        for i in range(len(class_names)):
            for j in range(len(class_names)):
                if matrix[i, j] >= 0.05:
                    ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if matrix[i, j] > 0.5 else "black")
    fig.tight_layout()
    _save(fig, path)


def plot_curves(history_files, path):
    """Loss and accuracy per epoch from each stage's history.csv (train and validation)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for stage, history_file in history_files.items():
        if not os.path.isfile(history_file):
            continue
        with open(history_file) as f:
            rows = list(csv.DictReader(f))
        epochs = [int(r["epoch"]) + 1 for r in rows]
        for ax, key in zip(axes, ("loss", "accuracy")):
            ax.plot(epochs, [float(r[key]) for r in rows], label=f"{stage} train")
            if rows and f"val_{key}" in rows[0]:
                ax.plot(epochs, [float(r[f"val_{key}"]) for r in rows], "--", label=f"{stage} validation")
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def plot_corruptions(robustness, clean, path):
    """Accuracy against severity per corruption, one line per stage (0 = clean)."""
    plt = _pyplot()
    names = sorted({name for stage in robustness.values() for name in stage})
    fig, axes = plt.subplots(1, len(names), figsize=(2.6 * len(names), 2.8), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names):
        for stage, by_name in robustness.items():
            severities = sorted(by_name[name], key=int)
            ax.plot([0] + [int(s) for s in severities],
                    [clean[stage]] + [by_name[name][s] for s in severities], marker="o", label=stage)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("severity")
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
