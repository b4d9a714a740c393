"""Stage 4 of Noisy Student: test the teacher and its students.

Reads RUN_DIR/teacher/, the students chosen by STUDENTS (every finished student folder
of RUN_DIR by default: RUN_DIR/student/, and others that train_student.py --student=NAME
wrote; 'none': the teacher alone), RUN_DIR/pseudo/summary.json and the test split in
RUN_DIR/data/. Prints results.md and writes into RUN_DIR:

    results.json     per model (keyed by folder name): loss, accuracy, per-class accuracy,
                     confusion matrix, expected calibration error, the same with flip
                     test-time augmentation (tta_*), accuracy under the 15 corruptions of
                     CIFAR-10-C, per family and overall
    results.md       a summary (accuracies and gains, pseudo-labels, classes without
                     any), links to the plots, then tables (the article's first)
    confusion.png    confusion matrices;  curves.png  training curves (history.csv)
    corruptions.png  accuracy against corruption severity, one row per family

    python evaluate.py --run_dir=runs/demo --students=student,student-wide

The article's table: teacher without noise 88.39% -> student 93.94%; with a noised
teacher 94.14% -> 94.28% (one run each, checkpoints selected on the test set).
"""
import functools
import os

import numpy as np

from noisy import (RunDir, check_evaluation_settings, configure, corruption_subset, import_keras, install_error_hook,
                   plots_to_draw, read_json, remove_stale_plots, save_json, save_text)
from noisy.corruptions import CORRUPTIONS, corrupt, family_means
from noisy.metrics import metrics, tta_probabilities
from noisy.plots import plot_confusions, plot_corruptions, plot_curves
from noisy.results_page import results_markdown

# ------------------------------------------------------------------------------ settings
RUN_DIR = "runs/default"  # folder every stage reads from and writes to
STUDENTS = "all"          # 'all' = every finished student folder in RUN_DIR (a folder whose config.json has stage 'student'), 'none' = the teacher alone, or a comma-separated list of folder names
BATCH_SIZE = 1024         # images per prediction batch
ECE_BINS = 15             # confidence bins for the expected calibration error
TTA = True                # also score with flip test-time augmentation: average the probabilities of each image and its horizontal mirror, as airbench does
SEVERITIES = (1, 3, 5)    # corruption severities to test (1..5); "()" = skip the robustness check (quote it in a shell)
CORRUPTION_IMAGES = 2000  # test images (class-balanced, fixed) per corruption; 0 = all
PLOTS = True              # write the PNG plots
# ------------------------------------------------------------------------------
install_error_hook()
settings = configure(globals())
check_evaluation_settings(settings)
run = RunDir(RUN_DIR)
run.lock_evaluation()  # one evaluate.py per run folder
# What is scored: the teacher and the chosen students, each checked (finished, files as
# written, this split's, students of this teacher and of these pseudo-labels).
split = run.data()
stages = {"teacher": run.teacher(split)}
students, pseudo = run.students(STUDENTS, stages["teacher"], split)
stages.update((os.path.basename(student.dir), student) for student in students)
if not students:
    print(f"no finished student in {RUN_DIR}: evaluating the teacher alone")

import_keras()  # only here: --help and bad settings answer before TensorFlow loads
from noisy.streams import ImageBatches  # noqa: E402

data = split.arrays()
images, labels = data["test_images"][:], np.asarray(data["test_labels"])
subset = corruption_subset(labels, split.num_classes, CORRUPTION_IMAGES)  # fixed, class-balanced


def predict(model, x):
    return model.predict(ImageBatches(x, np.arange(len(x)), BATCH_SIZE), verbose=0)


# 1. Clean test accuracy, calibration and per-class accuracy of each model, without and
#    with flip test-time augmentation.
results, models = {"test_images": len(labels), "students": [name for name in stages if name != "teacher"]}, {}
for name, stage in stages.items():
    print(f"evaluating {stage.model_path} on {len(labels)} test images ...", flush=True)
    models[name] = model = stage.load_model()
    probs = predict(model, images)
    results[name] = dict(metrics(probs, labels, ECE_BINS), model=stage.config["model"], noise=stage.config["noise"],
                         run_id=stage.run_id)
    if TTA:
        flipped = metrics(tta_probabilities(functools.partial(predict, model), images, plain=probs), labels, ECE_BINS)
        results[name].update({f"tta_{key}": value for key, value in flipped.items()})

# 2. Robustness: accuracy under the 15 corruptions of CIFAR-10-C. Each corruption's copies
#    (one per severity) are made once, scored by every model and dropped: memory holds
#    one corruption at a time, and every model sees the same corrupted images.
robustness = {name: {} for name in stages}
clean_subset = images[subset]
for i, corruption in enumerate(CORRUPTIONS if SEVERITIES else (), 1):
    x = np.concatenate([corrupt(clean_subset, corruption, s, seed=s) for s in SEVERITIES])
    for name, model in models.items():
        correct = (predict(model, x).argmax(1) == np.tile(labels[subset], len(SEVERITIES))).reshape(len(SEVERITIES), -1)
        robustness[name][corruption] = {str(s): float(c.mean()) for s, c in zip(SEVERITIES, correct)}
    del x
    print(f"corruption {i}/{len(CORRUPTIONS)} {corruption}: " + ", ".join(
        f"{name} {np.mean(list(robustness[name][corruption].values())):.1%}" for name in models), flush=True)
if SEVERITIES:
    results["corruption_images"] = len(subset)
    for name in models:
        means = family_means(robustness[name])
        results[name].update(corruption_accuracy=robustness[name], mean_corruption_accuracy=means.pop("all"),
                             family_corruption_accuracy=means)
del models

# 3. results.json, and results.md: a summary (with the pseudo-labels the students learned
#    from), links to the plots, the article's table, calibration, robustness, per class.
plots = plots_to_draw(PLOTS, SEVERITIES)
summary = read_json(pseudo.path("summary.json"), "rerun pseudo_label.py") if pseudo else None
labeling = dict(summary, threshold=pseudo.config["threshold"], soft=pseudo.config["soft"]) if pseudo else None
page = results_markdown(results, labeling, split.class_names, f"Results for {RUN_DIR}", ECE_BINS, plots)
print()
print(page)
save_json(os.path.join(RUN_DIR, "results.json"), dict(results, class_names=split.class_names, settings=settings))
save_text(os.path.join(RUN_DIR, "results.md"), page)

# 4. Plots.
if plots:
    plot_confusions({name: results[name] for name in stages}, split.class_names, os.path.join(RUN_DIR, "confusion.png"))
    plot_curves({name: stage.path("history.csv") for name, stage in stages.items()}, os.path.join(RUN_DIR, "curves.png"))
    if SEVERITIES:
        plot_corruptions(robustness, {name: results[name]["accuracy"] for name in stages},
                         os.path.join(RUN_DIR, "corruptions.png"))
remove_stale_plots(RUN_DIR, plots)
print(f"wrote {RUN_DIR}/results.json, results.md" + "".join(f", {name}" for name in plots))
