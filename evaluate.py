"""Stage 4 of Noisy Student: test the teacher and its students.

Reads RUN_DIR/teacher/, the students chosen by STUDENTS (every finished student folder
of RUN_DIR by default: RUN_DIR/student/, and others that train_student.py --student=NAME
wrote; none: the teacher alone), RUN_DIR/pseudo/summary.json and the test split in
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

import noisy
from noisy.corruptions import CORRUPTIONS, corrupt, family_means
from noisy.report import (metrics, plot_confusions, plot_corruptions, plot_curves, results_markdown,
                          tta_probabilities)

# ------------------------------------------------------------------------------ settings
RUN_DIR = "runs/default"  # folder every stage reads from and writes to
STUDENTS = "all"          # 'all' = every finished student folder in RUN_DIR (a folder whose config.json has stage 'student'), or a comma-separated list of folder names
BATCH_SIZE = 1024         # images per prediction batch
ECE_BINS = 15             # confidence bins for the expected calibration error
TTA = True                # also score with flip test-time augmentation: average the probabilities of each image and its horizontal mirror, as airbench does
SEVERITIES = (1, 3, 5)    # corruption severities to test (1..5); "()" = skip the robustness check (quote it in a shell)
CORRUPTION_IMAGES = 2000  # test images (class-balanced, fixed) per corruption; 0 = all
PLOTS = True              # write the PNG plots
# ------------------------------------------------------------------------------
noisy.install_error_hook()
settings = noisy.configure(globals())
noisy.require(BATCH_SIZE >= 1 and ECE_BINS >= 1, "--batch_size and --ece_bins must be >= 1")
noisy.require(all(s in (1, 2, 3, 4, 5) for s in SEVERITIES), f"--severities={SEVERITIES}: expected values in 1..5")
noisy.require(CORRUPTION_IMAGES >= 0, "--corruption_images must be >= 0")
noisy.lock(RUN_DIR, ".lock-evaluate")


# 0. What is scored: the teacher and the chosen students; each model must be the file its
#    stage wrote, and each student a student of this teacher.
def is_student(folder):
    """A finished student: its config.json is complete and says stage 'student'."""
    try:
        config = noisy.read_config(os.path.join(RUN_DIR, folder), "train_student.py")
    except noisy.UserError:
        return False
    return config.get("stage") == "student"


if STUDENTS == "all":
    students = sorted(f for f in os.listdir(RUN_DIR) if os.path.isdir(os.path.join(RUN_DIR, f)) and is_student(f))
else:
    students = [name.strip() for name in STUDENTS.split(",") if name.strip()]
    noisy.require(students and len(set(students)) == len(students) and "teacher" not in students
                  and not any(os.sep in name or name in (".", "..") for name in students),
                  f"--students={STUDENTS!r}: expected 'all' or a comma-separated list of distinct student folder "
                  f"names in {RUN_DIR}")
noisy.require(not set(students) & {"students", "test_images", "corruption_images", "class_names", "settings"},
              f"--students={STUDENTS!r}: a student folder may not be named like a key of results.json")
script = dict({"teacher": "train_teacher.py"}, **{name: "train_student.py" for name in students})
configs = {"teacher": noisy.read_config(os.path.join(RUN_DIR, "teacher"), "train_teacher.py")}
for name in students:
    configs[name] = noisy.read_config(os.path.join(RUN_DIR, name), "train_student.py")
    noisy.require(configs[name].get("stage") == "student",
                  f"{RUN_DIR}/{name} holds a {configs[name].get('stage')} stage, not a student; check --students")
    trained_from, teacher_run = configs[name]["teacher"]["run_id"], configs["teacher"]["run_id"]
    noisy.require(trained_from == teacher_run,
                  f"{RUN_DIR}/{name} was trained from teacher run {trained_from}, but {RUN_DIR}/teacher holds "
                  f"teacher run {teacher_run}; retrain the student (train_student.py "
                  f"{'' if name == 'student' else f'--student={name} '}--retrain=True) or score them separately")
pseudo = None  # the summary of RUN_DIR/pseudo, for results.md: it must be what the students learned from
if students:
    pseudo_config = noisy.read_config(os.path.join(RUN_DIR, "pseudo"), "pseudo_label.py", needs=["summary.json"])
    pseudo = dict(noisy.read_json(os.path.join(RUN_DIR, "pseudo", "summary.json"), "rerun pseudo_label.py"),
                  threshold=pseudo_config["threshold"], soft=pseudo_config["soft"])
    pseudo_run = pseudo_config["run_id"]
    for name in students:
        learned_from = configs[name]["pseudo"]["run_id"]
        noisy.require(learned_from == pseudo_run,
                      f"{RUN_DIR}/{name} was trained on pseudo-labels run {learned_from}, but {RUN_DIR}/pseudo "
                      f"holds run {pseudo_run}; retrain the student (train_student.py "
                      f"{'' if name == 'student' else f'--student={name} '}--retrain=True)")
else:
    print(f"no finished student in {RUN_DIR}: evaluating the teacher alone")
for stage, config in configs.items():
    noisy.check_model_file(os.path.join(RUN_DIR, stage), config, script[stage])
data = noisy.load_split(os.path.join(RUN_DIR, "data"))
data_config = noisy.read_config(os.path.join(RUN_DIR, "data"), "train_teacher.py")
class_names = data_config["class_names"]
noisy.require(configs["teacher"].get("identity", {}).get("inputs", {}).get("split")
              in (None, noisy.split_id(os.path.join(RUN_DIR, "data"), data_config)),
              f"{RUN_DIR}/teacher was trained on another split than {RUN_DIR}/data holds; its test images may "
              "not be held out from it")
images, labels = data["test_images"][:], np.asarray(data["test_labels"])
# A fixed, class-balanced subset for the corruption check (identical for every model).
subset = np.arange(len(labels))
if 0 < CORRUPTION_IMAGES < len(labels):
    per_class = max(1, CORRUPTION_IMAGES // len(class_names))
    subset = np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(len(class_names))]))


def predict(model, x):
    return model.predict(noisy.ImageBatches(x, np.arange(len(x)), BATCH_SIZE), verbose=0)


# 1. Clean test accuracy, calibration and per-class accuracy of each model, without and
#    with flip test-time augmentation.
results, models = {"test_images": len(labels), "students": students}, {}
for stage, config in configs.items():
    path = noisy.model_path(os.path.join(RUN_DIR, stage), config)
    print(f"evaluating {path} on {len(labels)} test images ...", flush=True)
    models[stage] = model = noisy.load_model(path, script[stage])
    probs = predict(model, images)
    results[stage] = dict(metrics(probs, labels, ECE_BINS), model=config["model"], noise=config["noise"],
                          run_id=config["run_id"])
    if TTA:
        flipped = metrics(tta_probabilities(functools.partial(predict, model), images, plain=probs), labels, ECE_BINS)
        results[stage].update({f"tta_{key}": value for key, value in flipped.items()})

# 2. Robustness: accuracy under the 15 corruptions of CIFAR-10-C. Each corruption's copies
#    (one per severity) are made once, scored by every model and dropped: memory holds
#    one corruption at a time, and every model sees the same corrupted images.
robustness = {stage: {} for stage in configs}
clean_subset = images[subset]
for i, name in enumerate(CORRUPTIONS if SEVERITIES else (), 1):
    x = np.concatenate([corrupt(clean_subset, name, s, seed=s) for s in SEVERITIES])
    for stage, model in models.items():
        correct = (predict(model, x).argmax(1) == np.tile(labels[subset], len(SEVERITIES))).reshape(len(SEVERITIES), -1)
        robustness[stage][name] = {str(s): float(c.mean()) for s, c in zip(SEVERITIES, correct)}
    del x
    print(f"corruption {i}/{len(CORRUPTIONS)} {name}: " + ", ".join(
        f"{stage} {np.mean(list(robustness[stage][name].values())):.1%}" for stage in models), flush=True)
if SEVERITIES:
    results["corruption_images"] = len(subset)
    for stage in models:
        means = family_means(robustness[stage])
        results[stage].update(corruption_accuracy=robustness[stage], mean_corruption_accuracy=means.pop("all"),
                              family_corruption_accuracy=means)
del models

# 3. results.json, and results.md: a summary (with the pseudo-labels the students learned
#    from), links to the plots, the article's table, calibration, robustness, per class.
try:
    import matplotlib  # noqa: F401  (in requirements.txt; a JAX-only GPU image may lack it)
except ImportError:
    if PLOTS:
        print("warning: matplotlib is not installed, so no plots were drawn (pip install matplotlib)")
    PLOTS = False
plots = ["confusion.png", "curves.png"] + (["corruptions.png"] if SEVERITIES else []) if PLOTS else []
page = results_markdown(results, pseudo, class_names, f"Results for {RUN_DIR}", ECE_BINS, plots)
print()
print(page)
noisy.save_json(os.path.join(RUN_DIR, "results.json"), dict(results, class_names=class_names, settings=settings))
noisy.save_text(os.path.join(RUN_DIR, "results.md"), page)

# 4. Plots.
stages = list(configs)
if PLOTS:
    plot_confusions({stage: results[stage] for stage in stages}, class_names, os.path.join(RUN_DIR, "confusion.png"))
    plot_curves({stage: os.path.join(RUN_DIR, stage, "history.csv") for stage in stages},
                os.path.join(RUN_DIR, "curves.png"))
    if SEVERITIES:
        plot_corruptions(robustness, {stage: results[stage]["accuracy"] for stage in stages},
                         os.path.join(RUN_DIR, "corruptions.png"))
    elif os.path.isfile(os.path.join(RUN_DIR, "corruptions.png")):
        os.remove(os.path.join(RUN_DIR, "corruptions.png"))  # an earlier evaluation's: not of these results
print(f"wrote {RUN_DIR}/results.json, results.md" + "".join(f", {name}" for name in plots))
