"""What a run guarantees (docs/RUNS.md): a stage's outputs match its settings and inputs, no
failure destroys finished work, one run per stage, and every failure is one line."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
from PIL import Image
import pytest

from conftest import REPO, TEACHER, run_script, synthetic_images
from noisy.images import cache_image_folder, folder_identity
from noisy.errors import UserError, one_line
from noisy.locks import lock, unlock
from noisy.rundir import RunDir
from noisy.stages import Finished, Stage, differences, identity
from noisy.arrays import NpyRows
from noisy.training import load_resume_point
from test_pipeline import one_line_error


def config_bytes(run, stage):
    with open(os.path.join(run, stage, "config.json"), "rb") as f:
        return f.read()


# ----------------------------------------------------------------------------- 1. identity
def test_a_finished_stage_refuses_other_settings_and_ignores_runtime_ones(finished_run):
    run = finished_run
    error = one_line_error(run_script("train_student.py", f"--run_dir={run}", "--epochs=2", "--batch_size=32",
                                      check=False))
    assert f"{run}/student holds a student made with other settings or inputs: settings.epochs 1 (now 2)" in error
    assert "pass --retrain=True to replace it" in error
    same = run_script("train_student.py", f"--run_dir={run}", "--epochs=1", "--batch_size=32", "--workers=1")
    assert "already holds a finished student made with these settings and inputs" in same.stdout  # WORKERS does
    assert "nothing to do" in same.stdout  # not define the result


def test_a_teacher_made_again_is_seen_by_every_later_stage_and_by_evaluate(finished_run, finished_run_template):
    run, synthetic_npz = finished_run, finished_run_template[0]
    old_teacher = json.load(open(os.path.join(run, "teacher", "config.json")))["run_id"]
    run_script("train_teacher.py", f"--data={synthetic_npz}", f"--run_dir={run}", "--epochs=1", *TEACHER,
               "--retrain=True")
    new_teacher = json.load(open(os.path.join(run, "teacher", "config.json")))["run_id"]
    assert new_teacher != old_teacher
    error = one_line_error(run_script("evaluate.py", f"--run_dir={run}", check=False))  # what to redo first
    assert f"pseudo was made from teacher run {old_teacher}, but {run}/teacher holds teacher run {new_teacher}; " \
           "rerun pseudo_label.py --retrain=True" in error
    error = one_line_error(run_script("train_student.py", f"--run_dir={run}", "--epochs=1", "--batch_size=32",
                                      check=False))
    assert f"{run}/pseudo was made from teacher run {old_teacher}, but {run}/teacher holds teacher run {new_teacher}" \
           in error
    error = one_line_error(run_script("pseudo_label.py", f"--run_dir={run}", "--threshold=0.0", check=False))
    assert f'inputs.teacher "{old_teacher}" (now "{new_teacher}")' in error


def test_a_model_file_replaced_by_another_valid_model_is_refused(finished_run):
    run = finished_run
    shutil.copy(os.path.join(run, "student", "model.keras"), os.path.join(run, "teacher", "model.keras"))
    for script in ("pseudo_label.py", "evaluate.py"):
        error = one_line_error(run_script(script, f"--run_dir={run}", "--retrain=True" if script == "pseudo_label.py"
                                          else "--severities=()", check=False))
        assert f"{run}/teacher/model.keras is not the file train_teacher.py wrote" in error


def test_checks_come_before_a_finished_stage_is_touched(finished_run, finished_run_template, tmp_path):
    run, synthetic_npz = finished_run, finished_run_template[0]
    before = {stage: config_bytes(run, stage) for stage in ("teacher", "pseudo", "student")}
    one_line_error(run_script("pseudo_label.py", f"--run_dir={run}", f"--unlabeled={tmp_path}/none",
                              "--retrain=True", check=False))
    one_line_error(run_script("pseudo_label.py", f"--run_dir={run}", "--threshold=0.9999", "--retrain=True",
                              check=False))  # keeps none: found only after labeling, still before any write
    one_line_error(run_script("train_teacher.py", f"--data={synthetic_npz}", f"--run_dir={run}", "--epochs=1",
                              *TEACHER[:1], "--num_val=80", *TEACHER[2:], "--retrain=True", check=False))
    one_line_error(run_script("train_student.py", f"--run_dir={run}", "--model=no_such_model", "--retrain=True",
                              check=False))
    assert {stage: config_bytes(run, stage) for stage in before} == before


def test_identity_ignores_runtime_settings_and_names_every_difference():
    a = identity({"epochs": 2, "workers": 4, "run_dir": "a", "severities": (1, 3)}, {"teacher": "t1"})
    b = identity({"epochs": 3, "workers": 1, "run_dir": "b", "severities": [1, 3]}, {"teacher": "t2"})
    assert a["settings"] == {"epochs": 2, "severities": [1, 3]}
    assert differences(a, b) == ['inputs.teacher "t1" (now "t2")', "settings.epochs 2 (now 3)"]
    assert differences(a, a) == []


def test_resume_checkpoints_are_used_only_under_the_identity_they_were_made_with(tmp_path, capsys):
    folder = str(tmp_path / "student")

    def student(epochs, pseudo="p1", retrain=False):
        stage = Stage("student", folder, {"epochs": epochs}, retrain)
        stage.inputs = {"pseudo": pseudo}
        return stage

    student(5).begin()
    with open(os.path.join(folder, "resume", "latest.json"), "w") as f:
        json.dump({"epoch": 1}, f)  # as if killed after epoch 1
    assert student(5).begin() is True  # the same: resumes
    assert os.path.isfile(os.path.join(folder, "resume", "latest.json"))
    with pytest.raises(UserError, match=r'cannot resume .*: inputs.pseudo "p1" \(now "p2"\); rerun with those'):
        student(5, "p2").check(pseudo="p2")
    student(6, retrain=True).begin()  # starts afresh
    assert not os.path.exists(os.path.join(folder, "resume", "latest.json"))
    made = student(5)
    made.check(pseudo="p1")
    made.finish({"model": "tiny"})
    with pytest.raises(SystemExit) as done:
        student(5).check(pseudo="p1")
    assert done.value.code == 0 and "already holds a finished student" in capsys.readouterr().out
    # Checkpoints of an abandoned retrain beside it: asking for the finished student is still
    # "nothing to do"; asking for anything else names the checkpoints' settings.
    student(7, retrain=True).begin()
    with open(os.path.join(folder, "resume", "latest.json"), "w") as f:
        json.dump({"epoch": 0}, f)
    with pytest.raises(SystemExit) as done:
        student(5).check(pseudo="p1")
    assert done.value.code == 0
    assert student(7).check(pseudo="p1") is True  # the retrain resumes
    with pytest.raises(UserError, match=r"holds a student made with other settings or inputs: settings.epochs 5 "
                                        r"\(now 8\)"):
        student(8).check(pseudo="p1")


def image_folder(folder):
    """Three 8x8 PNG files in `folder`; returns their images."""
    folder.mkdir()
    images, _ = synthetic_images(3, 3, size=8)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i}.png")
    return images


def test_a_changed_file_in_an_unlabeled_folder_makes_a_new_cache(tmp_path):
    folder = tmp_path / "pool"
    images = image_folder(folder)
    first, count, key = cache_image_folder(str(folder), str(tmp_path / "cache"), 8)
    assert cache_image_folder(str(folder), str(tmp_path / "cache"), 8)[2] == key  # reused
    Image.fromarray(255 - images[1]).save(folder / "1.png")  # same name, new content
    os.utime(folder / "1.png", ns=(time.time_ns(), time.time_ns() + 10**9))
    second, _, new_key = cache_image_folder(str(folder), str(tmp_path / "cache"), 8)
    assert new_key != key and second != first
    assert np.array_equal(np.load(second)[1], 255 - images[1]) and np.array_equal(np.load(first)[1], images[1])
    assert folder_identity([str(folder / "0.png")], 8) != folder_identity([str(folder / "0.png")], 16)


@pytest.mark.parametrize("damage", ["pixels", "record"])
def test_a_cache_changed_or_damaged_since_it_was_written_is_decoded_again(damage, tmp_path, capsys):
    folder = tmp_path / "pool"
    images = image_folder(folder)
    file, count, key = cache_image_folder(str(folder), str(tmp_path / "cache"), 8)
    if damage == "pixels":  # same shape, other pixels, written a moment later
        np.save(file, 255 - np.load(file))
        os.utime(file, ns=(time.time_ns(), os.stat(file).st_mtime_ns + 10**6))
    else:
        (tmp_path / "cache" / key / "source.json").write_text("{}")
    assert cache_image_folder(str(folder), str(tmp_path / "cache"), 8) == (file, 3, key)
    assert "is not the cache as it was written" in capsys.readouterr().out
    assert np.array_equal(np.load(file), images)


# ----------------------------------------------------------------------------- 3. one run per stage
def test_a_second_process_is_refused_and_a_dead_holder_is_taken_over(tmp_path):
    stage, path = str(tmp_path / "teacher"), str(tmp_path / ".lock-teacher")
    holder = subprocess.Popen([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); from noisy.locks "
                               "import lock; lock(sys.argv[2], sys.argv[3]); print('held', flush=True); sys.stdin.read()",
                               REPO, path, stage], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(UserError, match=rf"{stage} is in use by process {holder.pid} on host .* since "):
            lock(path, stage)
    finally:
        holder.kill()  # SIGKILL: its lock file stays behind
        holder.wait()
    assert os.path.exists(path)
    lock(path, stage)  # the holder is gone: the kernel released its flock with it
    assert open(path).read().startswith(f"process {os.getpid()} on host ")
    unlock(path)


def test_a_stage_is_locked_by_a_hidden_file_of_the_run_folder_not_by_its_own_folder(finished_run):
    """A stage's lock is RUN_DIR/.lock-<folder> (a shard's .lock-pseudo-NNNN): the stage
    folder is made only when the stage begins, so a stage refused before leaves none."""
    run = RunDir(finished_run)
    run.stage("student", {}, folder="wide")
    run.stage("pseudo", {}, shard=3)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from noisy import RunDir; run = RunDir(sys.argv[2])\n"
            "for kind, folder, shard in (('student', 'wide', None), ('pseudo', None, 3)):\n"
            " try: run.stage(kind, {}, folder=folder, shard=shard)\n"
            " except Exception as e: print(e)")
    try:
        refused = subprocess.run([sys.executable, "-c", code, REPO, finished_run], capture_output=True, text=True)
        for what in ("wide", "pseudo shard 3"):
            assert f"{finished_run}/{what} is in use by process {os.getpid()} on host" in refused.stdout
        assert not os.path.exists(os.path.join(finished_run, "wide"))
        assert {".lock-wide", ".lock-pseudo-0003"} <= set(os.listdir(finished_run))
    finally:
        for name in (".lock-wide", ".lock-pseudo-0003"):
            unlock(os.path.join(finished_run, name))


# ----------------------------------------------------------------------------- 4. one line
def test_a_truncated_npy_is_refused_naming_its_size(tmp_path):
    np.save(tmp_path / "pool.npy", np.zeros((100, 8, 8, 3), np.uint8))
    with open(tmp_path / "pool.npy", "r+b") as f:
        f.truncate(3000)
    with pytest.raises(UserError, match=r"pool.npy is truncated: 3000 bytes, its header promises 19328"):
        NpyRows(str(tmp_path / "pool.npy"))


def test_a_damaged_resume_marker_is_refused_naming_the_way_out(tmp_path):
    os.makedirs(tmp_path / "stage" / "resume")
    (tmp_path / "stage" / "resume" / "latest.json").write_text('{"epoch": ')
    with pytest.raises(UserError, match=r"latest.json is damaged \(JSONDecodeError.*; delete .*resume or pass "
                                        r"--retrain=True"):
        load_resume_point(str(tmp_path / "stage"))


@pytest.mark.parametrize("key, change, message", [
    ("y_train", lambda y: y[:-5], r"holds 395 labels for the 400 images"),
    ("y_test", lambda y: y - 1, r"labels of dtype int64 from -1 to 2"),
], ids=["labels-short", "labels-negative"])
def test_an_npz_with_bad_labels_is_refused(key, change, message, tmp_path, synthetic_npz):
    from noisy.data import load_source
    arrays = dict(np.load(synthetic_npz))
    np.savez(tmp_path / "bad.npz", **dict(arrays, **{key: change(arrays[key])}))
    with pytest.raises(UserError, match=message):
        load_source(str(tmp_path / "bad.npz"))


def test_os_errors_and_unexpected_errors_are_one_line():
    full = OSError(28, "No space left on device", "/runs/a/teacher/model.keras")
    assert one_line(OSError, full) == "error: No space left on device: /runs/a/teacher/model.keras"
    assert one_line(PermissionError, PermissionError(13, "Permission denied", "/ro")) == \
        "error: Permission denied: /ro"
    assert one_line(ValueError, ValueError("bad\nmore")) == \
        "error: unexpected ValueError: bad (set NOISY_TRACEBACK=1 to see the traceback)"


def test_a_run_folder_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    error = one_line_error(run_script("train_teacher.py", f"--run_dir={tmp_path}/file/run", check=False))
    assert error == f"error: Not a directory: {tmp_path}/file/run"


def test_a_failed_cifar10_download_is_one_line_naming_the_alternatives(tmp_path):
    # No internet: every connection is refused by a proxy that is not there.
    offline = {"KERAS_HOME": str(tmp_path / "keras"), "https_proxy": "http://127.0.0.1:9",
               "HTTPS_PROXY": "http://127.0.0.1:9"}
    error = one_line_error(run_script("train_teacher.py", f"--run_dir={tmp_path}/run", check=False, env=offline))
    assert "--data=cifar10: could not download or unpack https://www.cs.toronto.edu/~kriz/cifar-10-python" in error
    assert "use --data=<folder with train/<class>/ and test/<class>/ image files> or --data=<file.npz" in error
    assert not os.path.exists(tmp_path / "run" / "teacher" / "config.json")


def test_ctrl_c_exits_130_naming_the_epoch_and_the_same_command_resumes(synthetic_npz, tmp_path):
    run = str(tmp_path / "run")
    args = [f"--data={synthetic_npz}", f"--run_dir={run}", "--epochs=400", "--schedule=constant", *TEACHER]
    process = subprocess.Popen([sys.executable, os.path.join(REPO, "train_teacher.py"), *args], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
                               # as from a terminal: an xdist worker ignores SIGINT, and its children inherit that
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    latest = os.path.join(run, "teacher", "resume", "latest.json")
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        try:
            if json.load(open(latest))["epoch"] >= 1:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=600)  # generous: starved (at nice 19 beside a training) it took over 120 s
    assert os.path.isfile(latest), err  # else the run ended before its first checkpoint: say why
    saved = json.load(open(latest))["epoch"]
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == f"interrupted: rerun the same command to resume after epoch {saved + 1}"  # Keras counts from 1
    lock(os.path.join(run, ".lock-teacher"))  # released on the way out
    unlock(os.path.join(run, ".lock-teacher"))
    error = one_line_error(run_script("train_teacher.py", *args[:2], "--epochs=401", *args[3:], check=False))
    assert f"cannot resume {run}/teacher: its checkpoints were made with other settings or inputs: " \
           "settings.epochs 400 (now 401)" in error


def test_evaluate_refuses_a_student_of_other_pseudo_labels_than_the_run_folder_holds(finished_run):
    run = finished_run
    student = json.load(open(os.path.join(run, "student", "config.json")))
    run_script("pseudo_label.py", f"--run_dir={run}", "--threshold=0.1", "--retrain=True")
    now = json.load(open(os.path.join(run, "pseudo", "config.json")))["run_id"]
    error = one_line_error(run_script("evaluate.py", f"--run_dir={run}", "--severities=()", check=False))
    assert f"student was made from pseudo-labels run {student['pseudo']['run_id']}, but {run}/pseudo holds " \
           f"pseudo-labels run {now}" in error


def test_a_pseudo_label_file_changed_after_labeling_is_refused_before_the_student_is_touched(finished_run):
    run = finished_run
    before = config_bytes(run, "student")
    targets = np.load(os.path.join(run, "pseudo", "targets.npy"))
    np.save(os.path.join(run, "pseudo", "targets.npy"), np.full_like(targets, np.nan))
    error = one_line_error(run_script("train_student.py", f"--run_dir={run}", "--retrain=True", check=False))
    assert f"{run}/pseudo/targets.npy is not the file pseudo_label.py wrote" in error
    assert config_bytes(run, "student") == before


def test_a_split_file_changed_under_a_finished_teacher_is_named_by_every_consumer(finished_run):
    run = finished_run
    test_images = os.path.join(run, "data", "test_images.npy")
    np.save(test_images, np.zeros_like(np.load(test_images)))
    named = f"{run}/data/test_images.npy is not the file train_teacher.py wrote"
    error = one_line_error(run_script("pseudo_label.py", f"--run_dir={run}", "--retrain=True", check=False))
    assert named in error
    error = one_line_error(run_script("evaluate.py", f"--run_dir={run}", "--severities=()", "--students=student",
                                      check=False))
    assert named in error


def test_a_stage_record_that_is_no_json_object_is_refused(tmp_path):
    (tmp_path / "stage").mkdir()
    (tmp_path / "stage" / "config.json").write_text("[]")
    with pytest.raises(UserError, match=r"stage/config.json holds a JSON list, not an object; rerun train_teacher.py --retrain=True"):
        Finished(str(tmp_path / "stage"), "teacher")


def test_a_damaged_data_record_is_refused(tmp_path):
    from noisy.data import prepare_data
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "config.json").write_text("{bad")
    with pytest.raises(UserError, match=r"data/config.json is not readable JSON \(JSONDecodeError"):
        prepare_data("cifar10", str(tmp_path / "data"), 0, 0, 0)


def test_a_damaged_lock_file_nobody_holds_is_taken(tmp_path):
    lock_file = tmp_path / ".lock-teacher"
    lock_file.write_text('{"host": "elsewhere"}')  # damaged: no pid
    os.utime(lock_file, (time.time() - 60, time.time() - 60))
    lock(str(lock_file))  # a damaged lock file nobody holds is taken
    assert open(lock_file).read().startswith(f"process {os.getpid()} on host ")
    unlock(str(lock_file))


def test_only_the_settings_block_is_settings_not_imported_names():
    from noisy.settings import configure
    # evaluate.py imports CORRUPTIONS; only its settings block is settings.
    namespace = {"__file__": os.path.join(REPO, "evaluate.py"), "CORRUPTIONS": ("jpeg",), "SEVERITIES": (1,)}
    with pytest.raises(UserError, match=r"unknown setting --corruptions; valid settings: --severities"):
        configure(namespace, ["--corruptions=('x',)"])


def test_a_changed_output_of_a_finished_stage_is_refused_by_its_rerun_and_its_consumer(finished_run):
    run = finished_run
    with open(os.path.join(run, "pseudo", "summary.json"), "a") as f:
        f.write(" ")
    error = one_line_error(run_script("pseudo_label.py", f"--run_dir={run}", "--threshold=0.0", check=False))
    assert f"{run}/pseudo/summary.json is not the file pseudo_label.py wrote" in error  # not "nothing to do"
    error = one_line_error(run_script("train_student.py", f"--run_dir={run}", "--retrain=True", check=False))
    assert f"{run}/pseudo/summary.json is not the file pseudo_label.py wrote" in error


def test_a_retrain_leaves_the_finished_stage_whole_until_it_finishes(tmp_path):
    stage = str(tmp_path / "teacher")
    first = Stage("teacher", stage, {"epochs": 1})
    first.check()
    first.finish({"model": "tiny"})
    (tmp_path / "teacher" / "history.csv").write_text("epoch\n0\n")
    before = config_bytes(str(tmp_path), "teacher")
    retrain = Stage("teacher", stage, {"epochs": 2}, retrain=True)
    retrain.begin()
    assert config_bytes(str(tmp_path), "teacher") == before  # still the finished teacher
    (tmp_path / "teacher" / "resume" / "history.csv").write_text("epoch\n0\n1\n")  # as fit writes it
    assert (tmp_path / "teacher" / "history.csv").read_text() == "epoch\n0\n"
    retrain.finish({"model": "tiny"})
    assert (tmp_path / "teacher" / "history.csv").read_text() == "epoch\n0\n1\n"
    assert json.load(open(os.path.join(stage, "config.json")))["identity"]["settings"] == {"epochs": 2}
