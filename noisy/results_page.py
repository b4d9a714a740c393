"""evaluate.py's results page: `results_markdown` builds results.md from the results dict
alone (the article's table, calibration and flip TTA, corruptions by family and one by
one, per-class accuracy). The metrics are in noisy/metrics.py, the plots in noisy/plots.py."""
from noisy.corruptions import CORRUPTIONS, FAMILIES
from noisy.plots import PLOTS


def _points(difference):
    return f"{100 * difference:+.2f} points"


def _table(header, rows):
    return [f"| {' | '.join(header)} |", "|" + "---|" * len(header)] + [f"| {' | '.join(row)} |" for row in rows]


def results_markdown(results, pseudo, class_names, title, ece_bins=15, plots=PLOTS):
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
