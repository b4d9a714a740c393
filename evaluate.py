"""Stage 4 of Noisy Student: test loss and accuracy of the teacher and the student.

Reads RUN_DIR/teacher/ and RUN_DIR/student/ (models and configs) and the test split in
RUN_DIR/data/, prints the article's table, and writes RUN_DIR/results.json (loss,
accuracy, per-class accuracy, expected calibration error) and RUN_DIR/results.md.

    python evaluate.py --run_dir=runs/demo

The article's table: teacher without noise 88.39% -> student 93.94%; with a noised
teacher 94.14% -> 94.28% (one run each, checkpoints selected on the test set).
"""
import os

import numpy as np

import noisy

# ------------------------------------------------------------------------------ settings
RUN_DIR = "runs/default"  # folder every stage reads from and writes to
BATCH_SIZE = 1024         # images per prediction batch
ECE_BINS = 15             # confidence bins for the expected calibration error
# ------------------------------------------------------------------------------
noisy.install_error_hook()
settings = noisy.configure(globals())
noisy.require(BATCH_SIZE >= 1 and ECE_BINS >= 1, "--batch_size and --ece_bins must be >= 1")
data = noisy.load_split(os.path.join(RUN_DIR, "data"))
images, labels = data["test_images"], np.asarray(data["test_labels"])


def evaluate(model):
    """Loss, accuracy, per-class accuracy and expected calibration error on the test split."""
    probs = model.predict(noisy.ImageBatches(images, np.arange(len(labels)), BATCH_SIZE), verbose=0)
    probs = np.clip(probs.astype(np.float64), 1e-12, 1.0)
    predicted, confidence = probs.argmax(1), probs.max(1)
    correct = predicted == labels
    bins = np.minimum((confidence * ECE_BINS).astype(int), ECE_BINS - 1)
    ece = sum(abs(correct[bins == b].mean() - confidence[bins == b].mean()) * (bins == b).mean()
              for b in range(ECE_BINS) if (bins == b).any())
    return {"loss": float(-np.log(probs[np.arange(len(labels)), labels]).mean()),
            "accuracy": float(correct.mean()),
            "per_class_accuracy": [float(correct[labels == c].mean()) for c in range(probs.shape[1])],
            "ece": float(ece)}


results = {"test_images": len(labels)}
for stage, script in (("teacher", "train_teacher.py"), ("student", "train_student.py")):
    stage_dir = os.path.join(RUN_DIR, stage)
    if stage == "student" and not os.path.exists(os.path.join(stage_dir, "config.json")):
        print(f"no finished student in {stage_dir}: evaluating the teacher alone")
        continue
    config = noisy.read_config(stage_dir, script, needs=["model.keras"])
    print(f"evaluating {stage_dir}/model.keras on {len(labels)} test images ...", flush=True)
    model = noisy.load_model(os.path.join(stage_dir, "model.keras"), script)
    results[stage] = dict(evaluate(model), model=config["model"], noise=config["noise"],
                          run_id=config["run_id"])
class_names = noisy.read_config(os.path.join(RUN_DIR, "data"), "train_teacher.py")["class_names"]
stages = [stage for stage in ("teacher", "student") if stage in results]


def cell(r):
    return f"{r['model']} | {'Yes' if r['noise'] else 'None'} | {r['loss']:.4f} / {r['accuracy']:.2%}"


lines = [" | ".join(f"{stage} model | noise | test loss / accuracy" for stage in stages),
         "---|---|---" + "|---|---|---" * (len(stages) - 1),
         " | ".join(cell(results[stage]) for stage in stages), ""]
if "student" in results:
    pseudo = noisy.read_config(os.path.join(RUN_DIR, "pseudo"), "pseudo_label.py")
    lines += [f"Pseudo-labels: threshold {pseudo['threshold']}, {'soft' if pseudo['soft'] else 'hard'} targets.", ""]
lines += [f"Expected calibration error ({ECE_BINS} bins): "
          + ", ".join(f"{stage} {results[stage]['ece']:.4f}" for stage in stages) + ".", "",
          "class | " + " | ".join(stages), "---" + "|---" * len(stages)]
lines += [f"{name} | " + " | ".join(f"{results[stage]['per_class_accuracy'][c]:.2%}" for stage in stages)
          for c, name in enumerate(class_names)]
table = "\n".join(f"| {line} |" if "|" in line else line for line in lines) + "\n"
print()
print(table)
noisy.save_json(os.path.join(RUN_DIR, "results.json"), dict(results, class_names=class_names, settings=settings))
noisy.save_text(os.path.join(RUN_DIR, "results.md"), f"# Results for {RUN_DIR}\n\n{table}")
print(f"wrote {RUN_DIR}/results.json and {RUN_DIR}/results.md")
