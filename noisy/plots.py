"""evaluate.py's plots: confusion matrices, training curves and corruption robustness,
drawn with matplotlib (imported only when a plot is drawn) and written atomically."""
import csv
import os

import numpy as np

from noisy.corruptions import FAMILIES
from noisy.files import atomic_path

PLOTS = ("confusion.png", "curves.png", "corruptions.png")


def plots_to_draw(plots, severities):
    """The plot files evaluate.py draws: none without `plots` or without matplotlib (in
    requirements.txt; a JAX-only GPU image may lack it), corruptions.png only with severities."""
    if not plots:
        return []
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("warning: matplotlib is not installed, so no plots were drawn (pip install matplotlib)")
        return []
    return list(PLOTS) if severities else list(PLOTS[:2])


def remove_stale_plots(run_dir, drawn):
    """Remove plots an earlier evaluation drew that this one did not: they are not of these results."""
    for name in PLOTS:
        if name not in drawn and os.path.isfile(os.path.join(run_dir, name)):
            os.remove(os.path.join(run_dir, name))


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


def curves_figure(history_files):
    """Loss and accuracy per epoch from each stage's history.csv (train and validation),
    epochs on whole-number ticks."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for stage, history_file in history_files.items():
        if not os.path.isfile(history_file):
            continue
        with open(history_file) as f:
            rows = list(csv.DictReader(f))
        epochs = [int(r["epoch"]) + 1 for r in rows]
        for ax, key in zip(axes, ("loss", "accuracy")):
            marker = "o" if len(rows) < 30 else None  # a one-epoch curve is a point
            ax.plot(epochs, [float(r[key]) for r in rows], marker=marker, markersize=3, label=f"{stage} train")
            if rows and f"val_{key}" in rows[0]:
                ax.plot(epochs, [float(r[f"val_{key}"]) for r in rows], "--", marker=marker, markersize=3,
                        label=f"{stage} validation")
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # one epoch: one tick
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_curves(history_files, path):
    _save(curves_figure(history_files), path)


def corruptions_figure(robustness, clean):
    """Accuracy against severity, one line per stage, one panel per corruption and one
    row per family of FAMILIES (corruptions outside them in a last row, 'other'). The
    x ticks are the severities tested, and 'clean' (the uncorrupted images) at 0."""
    plt = _pyplot()
    given = [name for stage in robustness.values() for name in stage]
    rows = [(family, [n for n in names if n in given]) for family, names in FAMILIES.items()]
    rows = [(family, names) for family, names in rows if names]
    other = sorted(set(given) - {n for names in FAMILIES.values() for n in names})
    rows += [("other", other)] if other else []
    columns = max(len(names) for _, names in rows)
    fig, axes = plt.subplots(len(rows), columns, figsize=(2.4 * columns, 2.3 * len(rows) + 0.5), sharey=True,
                             squeeze=False)
    severities = sorted({int(s) for stage in robustness.values() for by_severity in stage.values()
                         for s in by_severity})
    for (family, names), row in zip(rows, axes):
        for ax, name in zip(row, names):
            for stage, by_name in robustness.items():
                tested = sorted(by_name[name], key=int)
                ax.plot([0] + [int(s) for s in tested], [clean[stage]] + [by_name[name][s] for s in tested],
                        marker="o", label=stage)
            ax.set_xticks([0] + severities, ["clean"] + [str(s) for s in severities])
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("severity", fontsize=8)
        row[0].set_ylabel(f"{family}\naccuracy")
        for ax in row[len(names):]:
            ax.axis("off")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"Accuracy under corruption at severities {', '.join(map(str, severities))} "
                 "('clean' = the uncorrupted test images; frost is procedural)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_corruptions(robustness, clean, path):
    _save(corruptions_figure(robustness, clean), path)
