"""Test metrics, the results page and plots for evaluate.py: loss, accuracy, per-class
accuracy, confusion matrix, expected calibration error (ECE), flip test-time augmentation,
training curves and corruption robustness. Nothing here needs a model: `results_markdown`
builds results.md from the results dict alone."""
import csv
import os

import numpy as np

from noisy.corruptions import CORRUPTIONS, FAMILIES
from noisy.errors import require
from noisy.files import atomic_path

PLOTS = ("confusion.png", "curves.png", "corruptions.png")


def check_evaluation_settings(s):
    """Range checks of evaluate.py's settings (lower-case names)."""
    require(s["batch_size"] >= 1 and s["ece_bins"] >= 1, "--batch_size and --ece_bins must be >= 1")
    require(all(v in (1, 2, 3, 4, 5) for v in s["severities"]),
            f"--severities={s['severities']}: expected values in 1..5")
    require(s["corruption_images"] >= 0, "--corruption_images must be >= 0")


def corruption_subset(labels, num_classes, count):
    """A fixed, class-balanced subset of the test images for the corruption check
    (the first `count` / classes of each class; 0 = all), identical for every model."""
    if not 0 < count < len(labels):
        return np.arange(len(labels))
    per_class = max(1, count // num_classes)
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(num_classes)]))


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


def tta_probabilities(predict_fn, images, plain=None):
    """Flip test-time augmentation (as airbench does): the mean of the class probabilities
    of each image and of its horizontal mirror. `predict_fn` maps (n, h, w, c) images to
    (n, classes) probabilities; `plain` is predict_fn(images) when already computed."""
    plain = predict_fn(images) if plain is None else plain
    return (np.asarray(plain, np.float64) + np.asarray(predict_fn(images[:, :, ::-1]), np.float64)) / 2


def _points(difference):
    return f"{100 * difference:+.2f} points"


def _table(header, rows):
    return [f"| {' | '.join(header)} |", "|" + "---|" * len(header)] + [f"| {' | '.join(row)} |" for row in rows]


def results_markdown(results, pseudo, class_names, title, ece_bins=15,
                     plots=("confusion.png", "curves.png", "corruptions.png")):
    """results.md: a summary a reader wants first, links to the plots, then the tables
    (the article's table, calibration and flip TTA, corruptions by family and one by one,
    per-class accuracy).

    results:     as evaluate.py writes results.json: 'teacher', each folder name listed in
                 'students', 'test_images', and 'corruption_images' where corruptions ran.
    pseudo:      RUN_DIR/pseudo/summary.json plus 'threshold' and 'soft' from its
                 config.json, or None (no student, or no summary).
    class_names: in class order; plots: file names beside results.md to link."""
    stages = ["teacher"] + list(results.get("students", []))
    teacher = results["teacher"]
    tta = "tta_accuracy" in teacher
    robust = "corruption_accuracy" in teacher

    def by_stage(key, fmt="{:.2%}", gain=False):
        return ", ".join(f"{stage} {fmt.format(results[stage][key])}"
                         + (f" ({_points(results[stage][key] - teacher[key])})" if gain and stage != "teacher" else "")
                         for stage in stages)

    lines = [f"# {title}", "", "## Summary", "",
             f"- Test accuracy ({results['test_images']:,} images): {by_stage('accuracy', gain=True)}."]
    if tta:
        lines.append(f"- With flip test-time augmentation (the mean of each image's and its mirror's "
                     f"probabilities): {by_stage('tta_accuracy', gain=True)}.")
    if pseudo:
        known = "accuracy_kept" in pseudo
        lines.append(f"- Pseudo-labels ({'soft' if pseudo['soft'] else 'hard'} targets, threshold "
                     f"{pseudo['threshold']}): {pseudo['kept']:,} of {pseudo['pool']:,} pool images kept"
                     + (f" ({pseudo['accuracy_kept']:.2%} correct)" if known else "")
                     + f", {pseudo['balanced']:,} after balancing"
                     + (f" ({pseudo['accuracy_balanced']:.2%} correct)" if known else "")
                     + ("" if known else " (their accuracy is unknown: the pool has no labels)") + ".")
        empty = [name for name, n in zip(class_names, pseudo["kept_per_class"]) if n == 0]
        lines.append(f"- Classes that got no pseudo-label: {', '.join(empty)}." if empty
                     else "- Every class got pseudo-labels.")
    if robust:
        severities = sorted({int(s) for by in teacher["corruption_accuracy"].values() for s in by})
        over = (f"the {len(teacher['corruption_accuracy'])} corruptions and severities "
                f"{', '.join(map(str, severities))}")
        lines.append(f"- Mean accuracy over {over} ({results['corruption_images']:,} test images): "
                     f"{by_stage('mean_corruption_accuracy', gain=True)}.")
    lines += [""] + [f"![{name[:-4]}]({name})" for name in plots] + ([""] if plots else []) + ["## Tables", ""]

    # The article's table: one block of columns per model, noise 'None' or 'Yes' as the article wrote it.
    lines += [f"| {' | '.join(f'{stage} model | noise | test loss / accuracy' for stage in stages)} |",
              "|" + "---|---|---|" * len(stages),
              "| " + " | ".join(f"{results[s]['model']} | {'Yes' if results[s]['noise'] else 'None'} | "
                                f"{results[s]['loss']:.4f} / {results[s]['accuracy']:.2%}" for s in stages) + " |", ""]
    if pseudo:
        lines += [f"Pseudo-labels: threshold {pseudo['threshold']}, {'soft' if pseudo['soft'] else 'hard'} targets.", ""]
    prefixes = ("", "tta_") if tta else ("",)
    header = ["model"] + [f"{'flip-TTA ' if p else ''}{what}" for p in prefixes
                          for what in ("accuracy", "loss", f"ECE ({ece_bins} bins)")]
    lines += ["Calibration" + (" and flip test-time augmentation:" if tta else ":"), ""]
    lines += _table(header, [[stage] + [cell for p in prefixes for cell in (
        f"{results[stage][p + 'accuracy']:.2%}", f"{results[stage][p + 'loss']:.4f}", f"{results[stage][p + 'ece']:.4f}")]
        for stage in stages]) + [""]
    if robust:
        tested = teacher["corruption_accuracy"]
        names = [n for n in CORRUPTIONS if n in tested] + sorted(set(tested) - set(CORRUPTIONS))
        families = [f for f in FAMILIES if f in teacher["family_corruption_accuracy"]]
        lines += [f"Accuracy under corruption ({results['corruption_images']:,} test images; the {len(names)} "
                  "corruptions of CIFAR-10-C, remade in numpy; frost is procedural, not CIFAR-10-C's frost photographs, so its "
                  "numbers are not comparable with published ones), per family (each corruption first averaged "
                  "over its severities):", ""]
        lines += _table(["family"] + stages,
                        [[f"{family} ({', '.join(n for n in FAMILIES[family] if n in tested)})"]
                         + [f"{results[stage]['family_corruption_accuracy'][family]:.2%}" for stage in stages]
                         for family in families]
                        + [[f"mean over {over}"] + [f"{results[stage]['mean_corruption_accuracy']:.2%}"
                                                    for stage in stages]]) + [""]
        lines += ["Per corruption and severity (1 = mildest, 5 = harshest, as in CIFAR-10-C; the clean, "
                  "uncorrupted accuracy is in the tables above):", ""]
        lines += _table(["corruption", "severity"] + stages,
                        [[name, s] + [f"{results[stage]['corruption_accuracy'][name][s]:.2%}" for stage in stages]
                         for name in names for s in sorted(tested[name], key=int)]
                        + [["mean", "all"] + [f"{results[stage]['mean_corruption_accuracy']:.2%}"
                                              for stage in stages]]) + [""]
    lines += ["Per-class accuracy:", ""] + _table(["class"] + stages, [[name] + [f"{results[stage]['per_class_accuracy'][c]:.2%}"
                                                  if results[stage]['per_class_accuracy'][c] is not None else "-"
                                                  for stage in stages] for c, name in enumerate(class_names)])
    return "\n".join(lines) + "\n"


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
