"""Validation accuracy, calibration and robustness of finished stages, for choosing a
recipe without the test set (issue #18): each model on its run's 2,000-image validation
split (carved from the training images, never the test set), plain and with flip
test-time augmentation, and under a few corruptions of those images.

    python bench/val_metrics.py --stages="('runs/sweep/seed0/teacher/teacher','runs/sweep/seed0/hard_x1.5/student')"

A stage is RUN_DIR/teacher or RUN_DIR/student (its data/ is RUN_DIR/data). Prints one
line per model and writes OUT (markdown) when given. The corruptions here are a check of
the choice, not the evaluation's set: evaluate.py scores the test set under all 15.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from noisy.settings import configure  # noqa: E402
from noisy.errors import install_error_hook, require  # noqa: E402

# ------------------------------------------------------------------------------ settings
STAGES = ()               # stage folders: RUN_DIR/teacher or RUN_DIR/student
CORRUPTIONS = ("gaussian_noise", "defocus_blur", "fog", "pixelate", "jpeg_compression")  # none a RandAugment op resembles
SEVERITY = 3              # one CIFAR-10-C severity, 1..5
ECE_BINS = 15             # confidence bins of the expected calibration error
OUT = ""                  # '' = print only; or a markdown file for the table
# ------------------------------------------------------------------------------


def stage_metrics(stage_dir):
    import noisy
    from noisy.corruptions import corrupt
    from noisy.metrics import metrics, tta_probabilities
    run_dir, stage = os.path.split(os.path.normpath(stage_dir))
    run = noisy.RunDir(run_dir)
    split = run.data()
    finished = run.finished_stage(stage, split)  # finished, its files as written, of this split
    data = split.arrays()
    val = np.asarray(data["val"])
    require(len(val) > 0, f"{run_dir}/data has no validation split (--num_val=0): nothing to score")
    images, labels = data["train_images"][val], np.asarray(data["train_labels"])[val]
    model = finished.load_model()

    def predict(x):
        return model.predict(noisy.ImageBatches(x, np.arange(len(x)), 256), verbose=0)
    plain = predict(images)
    scores = metrics(plain, labels, ECE_BINS)
    row = {"stage": stage_dir, "accuracy": scores["accuracy"], "ece": scores["ece"]}
    row["tta_accuracy"] = metrics(tta_probabilities(predict, images, plain=plain), labels)["accuracy"]
    row["corrupted_accuracy"] = float(np.mean([
        (predict(corrupt(images, name, SEVERITY, seed=SEVERITY)).argmax(1) == labels).mean() for name in CORRUPTIONS]))
    return row


if __name__ == "__main__":
    install_error_hook()
    configure(globals())
    require(STAGES, "--stages: give at least one stage folder")
    lines = ["| stage | val accuracy % | flip TTA % | ECE | mean under corruption % |", "|---|---|---|---|---|"]
    for stage_dir in STAGES:
        r = stage_metrics(stage_dir)
        print(json.dumps(r), flush=True)
        lines.append(f"| {r['stage']} | {r['accuracy']:.2%} | {r['tta_accuracy']:.2%} | {r['ece']:.3f} | "
                     f"{r['corrupted_accuracy']:.2%} |")
    text = "\n".join([f"Validation split; corruptions {', '.join(CORRUPTIONS)} at severity {SEVERITY}.", "",
                      *lines]) + "\n"
    print(text)
    if OUT:
        with open(OUT, "w") as f:
            f.write(text)
