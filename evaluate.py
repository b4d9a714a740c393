"""Stage 4 of Noisy Student: test the teacher and the student.

Reads RUN_DIR/teacher/ and RUN_DIR/student/ (a missing student: the teacher alone) and
the test split in RUN_DIR/data/. Prints the article's table and writes into RUN_DIR:

    results.json     loss, accuracy, per-class accuracy, confusion matrix, expected
                     calibration error, accuracy under common corruptions
    results.md       the same as tables
    confusion.png    confusion matrices;  curves.png  training curves (history.csv)
    corruptions.png  accuracy against corruption severity

    python evaluate.py --run_dir=runs/demo

The article's table: teacher without noise 88.39% -> student 93.94%; with a noised
teacher 94.14% -> 94.28% (one run each, checkpoints selected on the test set).
"""
import os

import numpy as np

import noisy
from noisy.corruptions import CORRUPTIONS, corrupt
from noisy.report import metrics, plot_confusions, plot_corruptions, plot_curves

# ------------------------------------------------------------------------------ settings
RUN_DIR = "runs/default"  # folder every stage reads from and writes to
BATCH_SIZE = 1024         # images per prediction batch
ECE_BINS = 15             # confidence bins for the expected calibration error
SEVERITIES = (1, 3, 5)    # corruption severities to test (1..5); () = skip the robustness check
CORRUPTION_IMAGES = 2000  # test images (class-balanced, fixed) per corruption; 0 = all
PLOTS = True              # write the PNG plots
# ------------------------------------------------------------------------------
noisy.install_error_hook()
settings = noisy.configure(globals())
noisy.require(BATCH_SIZE >= 1 and ECE_BINS >= 1, "--batch_size and --ece_bins must be >= 1")
noisy.require(all(s in (1, 2, 3, 4, 5) for s in SEVERITIES), f"--severities={SEVERITIES}: expected values in 1..5")
noisy.require(CORRUPTION_IMAGES >= 0, "--corruption_images must be >= 0")
noisy.lock(RUN_DIR, ".lock-evaluate")

# 0. What is scored: each model must be the file its stage wrote, and the student the
#    student of this teacher.
configs = {"teacher": noisy.read_config(os.path.join(RUN_DIR, "teacher"), "train_teacher.py", needs=["model.keras"])}
if os.path.exists(os.path.join(RUN_DIR, "student", "config.json")):
    configs["student"] = noisy.read_config(os.path.join(RUN_DIR, "student"), "train_student.py", needs=["model.keras"])
    trained_from, teacher_run = configs["student"]["teacher"]["run_id"], configs["teacher"]["run_id"]
    noisy.require(trained_from == teacher_run,
                  f"{RUN_DIR}/student was trained from teacher run {trained_from}, but {RUN_DIR}/teacher holds "
                  f"teacher run {teacher_run}; retrain the student (train_student.py --retrain=True) or score "
                  "them separately")
else:
    print(f"no finished student in {RUN_DIR}/student: evaluating the teacher alone")
for stage, config in configs.items():
    noisy.check_model_file(os.path.join(RUN_DIR, stage), config, f"train_{stage}.py")
data = noisy.load_split(os.path.join(RUN_DIR, "data"))
data_config = noisy.read_config(os.path.join(RUN_DIR, "data"), "train_teacher.py")
class_names = data_config["class_names"]
noisy.require(configs["teacher"].get("identity", {}).get("inputs", {}).get("split")
              in (None, noisy.split_id(data, data_config)),
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


# 1. Clean test accuracy, calibration and per-class accuracy of each model.
results, robustness = {"test_images": len(labels)}, {}
corrupted = {(name, s): corrupt(images[subset], name, s, seed=s) for name in CORRUPTIONS for s in SEVERITIES}
for stage, config in configs.items():
    stage_dir = os.path.join(RUN_DIR, stage)
    print(f"evaluating {stage_dir}/model.keras on {len(labels)} test images ...", flush=True)
    model = noisy.load_model(os.path.join(stage_dir, "model.keras"), f"train_{stage}.py")
    results[stage] = dict(metrics(predict(model, images), labels, ECE_BINS), model=config["model"],
                          noise=config["noise"], run_id=config["run_id"])
    # 2. Robustness: accuracy under common corruptions of the test images.
    robustness[stage] = {name: {} for name in CORRUPTIONS} if SEVERITIES else {}
    for (name, s), x in corrupted.items():
        robustness[stage][name][str(s)] = float((predict(model, x).argmax(1) == labels[subset]).mean())
    if SEVERITIES:
        results[stage]["corruption_accuracy"] = robustness[stage]
        results[stage]["mean_corruption_accuracy"] = float(np.mean(
            [a for by_severity in robustness[stage].values() for a in by_severity.values()]))
stages = [stage for stage in ("teacher", "student") if stage in results]

# 3. Tables: the article's, then calibration, robustness and per-class accuracy.
def cell(r):
    return f"{r['model']} | {'Yes' if r['noise'] else 'None'} | {r['loss']:.4f} / {r['accuracy']:.2%}"


rows = [" | ".join(f"{stage} model | noise | test loss / accuracy" for stage in stages),
        "---|---|---" + "|---|---|---" * (len(stages) - 1),
        " | ".join(cell(results[stage]) for stage in stages), ""]
if "student" in results:
    pseudo = noisy.read_config(os.path.join(RUN_DIR, "pseudo"), "pseudo_label.py")
    rows += [f"Pseudo-labels: threshold {pseudo['threshold']}, {'soft' if pseudo['soft'] else 'hard'} targets.", ""]
rows += [f"Expected calibration error ({ECE_BINS} bins): "
         + ", ".join(f"{stage} {results[stage]['ece']:.4f}" for stage in stages) + ".", ""]
if SEVERITIES:
    rows += [f"Accuracy under corruption ({len(subset)} test images, severities {', '.join(map(str, SEVERITIES))}):", "",
             "corruption | severity | " + " | ".join(stages), "---|---" + "|---" * len(stages)]
    rows += [f"{name} | {s} | " + " | ".join(f"{robustness[stage][name][str(s)]:.2%}" for stage in stages)
             for name in CORRUPTIONS for s in SEVERITIES]
    rows += ["mean | all | " + " | ".join(f"{results[stage]['mean_corruption_accuracy']:.2%}" for stage in stages), ""]
rows += ["class | " + " | ".join(stages), "---" + "|---" * len(stages)]
rows += [f"{name} | " + " | ".join(f"{results[stage]['per_class_accuracy'][c]:.2%}" for stage in stages)
         for c, name in enumerate(class_names)]
table = "\n".join(f"| {row} |" if "|" in row else row for row in rows) + "\n"
print()
print(table)
noisy.save_json(os.path.join(RUN_DIR, "results.json"), dict(results, class_names=class_names, settings=settings))
noisy.save_text(os.path.join(RUN_DIR, "results.md"), f"# Results for {RUN_DIR}\n\n{table}")

# 4. Plots (matplotlib is in requirements.txt; a JAX-only GPU image may lack it).
try:
    import matplotlib  # noqa: F401
except ImportError:
    if PLOTS:
        print("warning: matplotlib is not installed, so no plots were drawn (pip install matplotlib)")
    PLOTS = False
if PLOTS:
    plot_confusions({stage: results[stage] for stage in stages}, class_names, os.path.join(RUN_DIR, "confusion.png"))
    plot_curves({stage: os.path.join(RUN_DIR, stage, "history.csv") for stage in stages},
                os.path.join(RUN_DIR, "curves.png"))
    if SEVERITIES:
        plot_corruptions(robustness, {stage: results[stage]["accuracy"] for stage in stages},
                         os.path.join(RUN_DIR, "corruptions.png"))
print(f"wrote {RUN_DIR}/results.json, results.md" + (", confusion.png, curves.png, corruptions.png" if PLOTS else ""))
