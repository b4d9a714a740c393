"""The four scripts end to end on tiny synthetic data, their errors, resume and determinism."""
import csv
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, TEACHER, run_script


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def read_history(path):
    with open(path) as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_four_scripts_end_to_end(synthetic_npz, tmp_path):
    run = str(tmp_path / "run")
    out = run_script("train_teacher.py", f"--data={synthetic_npz}", f"--run_dir={run}", "--epochs=3", *TEACHER)
    assert "labeled 80, validation 40, unlabeled pool 280, test 80 images of 4 classes" in out.stdout
    out = run_script("pseudo_label.py", f"--run_dir={run}", "--threshold=0.3")
    summary = json.load(open(os.path.join(run, "pseudo", "summary.json")))
    assert summary["pool"] == 280 and 0 < summary["kept"] <= 280
    assert len(set(summary["balanced_per_class"]) - {0}) == 1  # every non-empty class equal
    indices = np.load(os.path.join(run, "pseudo", "indices.npy"))
    targets = np.load(os.path.join(run, "pseudo", "targets.npy"))
    assert len(indices) == summary["balanced"] == len(targets)
    assert np.allclose(targets.sum(1), 1, atol=1e-5) and (targets.max(1) > 0.3).all()  # soft labels
    unlabeled = np.load(os.path.join(run, "data", "unlabeled.npy"))
    assert np.isin(indices, unlabeled).all()  # only pool images, never labeled or validation ones
    train_labels = np.load(os.path.join(run, "data", "train_labels.npy"))  # the pool's hidden labels
    assert summary["accuracy_balanced"] == pytest.approx((targets.argmax(1) == train_labels[indices]).mean())
    out = run_script("train_student.py", f"--run_dir={run}", "--epochs=2", "--batch_size=32", "--labeled_copies=2")
    assert f"student data: 160 labeled (2 x 80) + {summary['balanced']} pseudo-labeled images" in out.stdout
    assert f"2 epochs of {(160 + summary['balanced']) // 32} steps" in out.stdout
    steps = (160 + summary['balanced']) // 32
    assert "━" not in out.stdout and f"{steps}/{steps} - " in out.stdout  # not a terminal: one line per epoch
    out = run_script("evaluate.py", f"--run_dir={run}")
    assert "| teacher model | noise | test loss / accuracy | student model |" in out.stdout
    results = json.load(open(os.path.join(run, "results.json")))
    for stage in ("teacher", "student"):
        confusion = np.array(results[stage]["confusion"])
        assert results[stage]["accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum())
        assert len(results[stage]["per_class_accuracy"]) == 4
    assert results["teacher"]["noise"] is False and results["student"]["noise"] is True
    assert results["teacher"]["accuracy"] > 0.4  # the colour tints are easy: chance is 0.25
    assert set(results["student"]["corruption_accuracy"]) >= {"gaussian_noise", "jpeg_compression", "pixelate"}
    assert np.array(results["teacher"]["confusion"]).sum() == 80
    for name in ("teacher/model.keras", "teacher/history.csv", "student/model.keras", "results.md",
                 "confusion.png", "curves.png", "corruptions.png"):
        assert os.path.isfile(os.path.join(run, name)), name
    assert read_history(os.path.join(run, "student", "history.csv")) == [0, 1]
    assert not os.path.exists(os.path.join(run, "teacher", "resume"))
    assert not [f for _, _, files in os.walk(run) for f in files if ".tmp" in f or "partial" in f]


def test_a_teacher_with_the_gpu_switches_saves_h5_and_labels_a_folder_of_images(synthetic_npz, tmp_path):
    from PIL import Image
    from conftest import synthetic_images
    run = str(tmp_path / "run")
    out = run_script("train_teacher.py", f"--data={synthetic_npz}", f"--run_dir={run}", "--epochs=1", *TEACHER,
                     "--jit_compile=true", "--data_parallel=True",  # XLA, and data parallelism over the one device
                     "--model_file=model.h5")  # the legacy H5 format, as the article saved its models
    assert "1 epochs of 2 steps, XLA on" in out.stdout  # 80 labeled images, global batch 32 on one replica
    assert sorted(f for f in os.listdir(os.path.join(run, "teacher")) if f.startswith("model")) == ["model.h5"]
    folder = tmp_path / "extra"
    folder.mkdir()
    images, _ = synthetic_images(12, 4, size=40, seed=5)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = run_script("pseudo_label.py", f"--run_dir={run}", f"--unlabeled={folder}", "--threshold=0.0")
    assert "skipped 1 unreadable image file(s)" in out.stderr and "broken.jpg" in out.stderr
    pool_file = json.load(open(os.path.join(run, "pseudo", "config.json")))["pool_file"]
    assert pool_file.startswith("pool" + os.sep)  # the folder's cache, inside RUN_DIR
    pool = np.load(os.path.join(run, pool_file))
    assert pool.shape == (12, 16, 16, 3)  # resized to the teacher's input size
    assert json.load(open(os.path.join(run, "pseudo", "summary.json")))["kept"] == 12


def one_line_error(result):
    """The script's own complaint is one line, last on stderr (TensorFlow may print its
    start-up lines before it), and there is no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert lines[-1].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    assert sum(line.startswith("error: ") for line in lines) == 1
    return lines[-1]


@pytest.mark.parametrize("script, args, expected", [
    ("train_teacher.py", ["--epoch=3"], "unknown setting --epoch; valid settings:"),
    ("pseudo_label.py", ["--run_dir={run}"], "{run}/data/config.json not found: run train_teacher.py first"),
    ("train_teacher.py", ["--data={tmp}/missing"], "missing' is neither 'cifar10', a .npz file nor an existing folder"),
    ("train_teacher.py", ["--data={npz}", "--num_labeled=90", "--run_dir={run}"],
     "--num_labeled=90 cannot be split evenly over 4 classes"),
    ("train_teacher.py", ["--model=resnet18"], "--model='resnet18': expected one of"),
    ("pseudo_label.py", ["--threshold=1.5"], "--threshold=1.5: expected a probability in [0, 1)"),
    ("train_student.py", ["--epochs=two"], "--epochs expects int (like 300), got 'two'"),
    ("train_student.py", ["--labeled_copies=0"], "--labeled_copies=0: expected an integer >= 1"),
], ids=["unknown-name", "no-teacher-yet", "missing-data", "uneven-split", "unknown-model", "threshold-range",
        "bad-literal", "labeled-copies-range"])
def test_bad_inputs_get_one_line_errors(script, args, expected, synthetic_npz, tmp_path):
    names = dict(run=str(tmp_path / "run"), tmp=str(tmp_path), npz=synthetic_npz)
    error = one_line_error(run_script(script, *[a.format(**names) for a in args], check=False))
    assert expected.format(**names) in error


def test_killed_training_resumes_with_each_epoch_once(synthetic_npz, tmp_path):
    run = str(tmp_path / "run")
    args = [sys.executable, os.path.join(REPO, "train_teacher.py"), f"--data={synthetic_npz}",
            f"--run_dir={run}", "--epochs=12", *TEACHER]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    latest = os.path.join(run, "teacher", "resume", "latest.json")
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if os.path.exists(latest) and json.load(open(latest))["epoch"] >= 2:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = read_history(os.path.join(run, "teacher", "resume", "history.csv"))  # while it trains
    header = open(os.path.join(run, "teacher", "resume", "history.csv")).readline()
    assert not os.path.exists(os.path.join(run, "teacher", "history.csv"))  # written when the stage finishes
    assert 2 <= len(done) < 12, "the kill should land mid-training"
    assert not os.path.exists(os.path.join(run, "teacher", "config.json"))
    out = run_script(*args[1:])
    # Said counted from 1, like the Keras line that follows it.
    assert f"resuming {run}/teacher after epoch {len(done)} of 12" in out.stdout
    assert re.search(r"^Epoch (\d+)/12", out.stdout, re.M).group(1) == str(len(done) + 1)
    assert read_history(os.path.join(run, "teacher", "history.csv")) == list(range(12))
    assert open(os.path.join(run, "teacher", "history.csv")).readline() == header  # same columns, same order
    assert os.path.isfile(os.path.join(run, "teacher", "model.keras"))


def test_split_and_pseudo_labels_are_byte_identical_for_a_seed(finished_run_template, finished_run, tmp_path):
    npz, template = finished_run_template  # a run made with the same data, settings and seed
    run = str(tmp_path / "again")
    run_script("train_teacher.py", f"--data={npz}", f"--run_dir={run}", "--epochs=1", *TEACHER)
    for name in ("labeled.npy", "val.npy", "unlabeled.npy", "train_images.npy"):
        assert sha(os.path.join(run, "data", name)) == sha(os.path.join(template, "data", name))
    files = ("pool_probs.npy", "indices.npy", "targets.npy", "summary.json")
    run_script("pseudo_label.py", f"--run_dir={finished_run}", "--threshold=0.0", "--retrain=True")  # as the template
    assert [sha(os.path.join(finished_run, "pseudo", f)) for f in files] == \
        [sha(os.path.join(template, "pseudo", f)) for f in files]


def test_unusable_stage_inputs_are_refused_by_name(finished_run, tmp_path):
    run = finished_run
    error = one_line_error(run_script("pseudo_label.py", f"--run_dir={run}", "--threshold=0.99", "--retrain=True",
                                      check=False))
    assert "--threshold=0.99 keeps none of 280 images; teacher confidence histogram: 0.0-0.1: " in error
    error = one_line_error(run_script("pseudo_label.py", f"--run_dir={run}", f"--unlabeled={tmp_path}/none.npy",
                                      check=False))
    assert "none.npy': expected 'auto', 'split', 'cinic10', an existing folder or an existing .npy file" in error
    empty = tmp_path / "empty"
    empty.mkdir()
    error = one_line_error(run_script("pseudo_label.py", f"--run_dir={run}", f"--unlabeled={empty}", check=False))
    assert f"--unlabeled: {empty} holds no image files" in error
    # The student needs finished pseudo-labels, every file of them.
    os.remove(os.path.join(run, "pseudo", "targets.npy"))
    error = one_line_error(run_script("train_student.py", f"--run_dir={run}", "--student=another", check=False))
    assert f"{run}/pseudo/targets.npy is not the file pseudo_label.py wrote (missing, or" in error
    shutil.rmtree(os.path.join(run, "pseudo"))
    error = one_line_error(run_script("train_student.py", f"--run_dir={run}", "--student=another", check=False))
    assert f"{run}/pseudo/config.json not found: run pseudo_label.py first" in error
    # A damaged model file.
    with open(os.path.join(run, "teacher", "model.keras"), "r+b") as f:
        f.truncate(100)
    error = one_line_error(run_script("pseudo_label.py", f"--run_dir={run}", check=False))
    assert f"{run}/teacher/model.keras is not the file train_teacher.py wrote" in error


def test_sharded_labeling_merges_to_the_whole(finished_run):
    run = finished_run
    whole = np.load(os.path.join(run, "pseudo", "pool_probs.npy"))  # labeled in one run
    out = run_script("pseudo_label.py", f"--run_dir={run}", "--num_shards=2", "--shard=1")
    assert "wrote shard 1 of 2" in out.stdout
    error = one_line_error(run_script("pseudo_label.py", f"--run_dir={run}", "--num_shards=2", "--threshold=0.0",
                                      "--retrain=True", check=False))
    assert "shard(s) 0 of 2 not labeled yet" in error
    run_script("pseudo_label.py", f"--run_dir={run}", "--num_shards=2", "--shard=0")
    run_script("pseudo_label.py", f"--run_dir={run}", "--num_shards=2", "--shard=-1", "--threshold=0.0",
               "--retrain=True")  # the same pseudo-labels as the whole run's: made again only when asked
    merged = np.load(os.path.join(run, "pseudo", "pool_probs.npy"))
    assert merged.shape == whole.shape and np.allclose(merged, whole, atol=1e-5)


def test_without_a_pool_in_the_split_the_default_is_cinic10_imagenet_images_only(synthetic_npz, tmp_path):
    """(And a student smaller than its teacher is refused: the teacher here is 'small'.)"""
    from PIL import Image
    from conftest import synthetic_images
    run = str(tmp_path / "run")
    out = run_script("train_teacher.py", f"--data={synthetic_npz}", f"--run_dir={run}", "--epochs=1",
                     "--num_labeled=0", "--num_val=40", "--model=small", "--batch_size=32")
    assert "stage 2 (pseudo_label.py) will label CINIC-10's ImageNet images, 800 per class" in out.stdout
    # Offline, the default pool (CINIC-10's download) fails in one line naming the way out.
    offline = {"KERAS_HOME": str(tmp_path / "keras"), "https_proxy": "http://127.0.0.1:9",
               "HTTPS_PROXY": "http://127.0.0.1:9"}
    error = one_line_error(run_script("pseudo_label.py", f"--run_dir={run}", check=False, env=offline))
    assert "CINIC-10: could not download or unpack it: https://datashare.ed.ac.uk/server/api/" in error
    assert "; then https://datashare.is.ed.ac.uk/bitstream/" in error  # the new address first, then the old
    assert "--unlabeled=<your folder of images>" in error and "--num_labeled=4000" in error
    # A CINIC-10 folder on disk: only its <synset>_<number>.png files, drawn per class.
    cinic = tmp_path / "CINIC-10"
    images, labels = synthetic_images(40, 4, size=32, seed=7)
    for split in ("train", "valid", "test"):
        for c in range(4):
            (cinic / split / str(c)).mkdir(parents=True)
            Image.new("RGB", (32, 32)).save(cinic / split / str(c) / f"cifar10-{split}-{c}.png")  # black
    for i, (image, label) in enumerate(zip(images, labels)):
        split = ("train", "valid", "test")[i % 3]
        Image.fromarray(image).save(cinic / split / str(label) / f"n0{label}0000{i:02d}_{i}.png")
    out = run_script("pseudo_label.py", f"--run_dir={run}", f"--unlabeled={cinic}", "--cinic_per_class=6",
                     "--threshold=0.0")
    summary = json.load(open(os.path.join(run, "pseudo", "summary.json")))
    assert summary["pool"] == 24 and summary["labels_from"] == "CINIC-10's class folders"
    pool = np.load(os.path.join(run, json.load(open(os.path.join(run, "pseudo", "config.json")))["pool_file"]))
    assert pool.shape == (24, 16, 16, 3) and pool.reshape(24, -1).max(axis=1).min() > 0  # no black CIFAR file
    error = one_line_error(run_script("train_student.py", f"--run_dir={run}", "--model=tiny", check=False))
    assert "fewer than the teacher's small" in error


def test_a_terminal_gets_a_progress_bar(finished_run):
    """(Not on a terminal, one line per epoch: test_four_scripts_end_to_end.)"""
    import pty
    args = [sys.executable, os.path.join(REPO, "train_student.py"), f"--run_dir={finished_run}", "--epochs=1",
            "--batch_size=32"]
    main, terminal = pty.openpty()
    process = subprocess.Popen([*args, "--student=on_a_terminal"], stdout=terminal, stderr=terminal, cwd=REPO)
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the terminal closed: the process has ended
            break
        if not chunk:
            break
        shown += chunk
    assert process.wait(timeout=120) == 0
    shown = shown.decode(errors="replace")
    assert "━" in shown and "15/15" in shown  # Keras' progress bar, redrawn per step
