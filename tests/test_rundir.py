"""The run folder's guarantees that issue #23 found missing: every file a stage hands on
is recorded and checked, nothing is written before every check has passed, a resume
runs under the backend and library versions it was made with, a stage made by other code
is named as such, and a lock is one process's alone."""
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, TEACHER, run_script
from noisy.errors import UserError
from noisy.locks import lock
from noisy.rundir import RunDir
from test_pipeline import one_line_error


def files_of(folder):
    """{relative path: bytes} of every file below `folder` (locks aside)."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            if not name.startswith(".lock"):
                path = os.path.join(root, name)
                found[os.path.relpath(path, folder)] = open(path, "rb").read()
    return found


def test_a_refused_teacher_leaves_the_split_and_the_later_stages_as_they_were(finished_run, finished_run_template,
                                                                                tmp_path):
    run, npz = finished_run, str(tmp_path / "changed.npz")
    arrays = dict(np.load(finished_run_template[0]))
    np.savez(npz, **dict(arrays, x_train=255 - arrays["x_train"]))  # the source changed ...
    config = json.load(open(os.path.join(run, "data", "config.json")))
    json.dump(dict(config, source=npz), open(os.path.join(run, "data", "config.json"), "w"))  # ... (moved here)
    os.remove(os.path.join(run, "data", "val.npy"))  # ... and a data file was lost
    before = files_of(run)
    error = one_line_error(run_script("train_teacher.py", f"--data={npz}", f"--run_dir={run}", "--epochs=1", *TEACHER,
                                      check=False))
    assert f"{run}/teacher holds a teacher made with other settings or inputs: inputs.split" in error
    assert files_of(run) == before  # the split was made beside RUN_DIR/data and dropped
    assert sorted(os.listdir(tmp_path)) == ["changed.npz", "run"]


def test_a_lost_data_file_is_remade_when_the_source_is_unchanged(finished_run, finished_run_template):
    run, npz = finished_run, finished_run_template[0]
    val = open(os.path.join(run, "data", "val.npy"), "rb").read()
    os.remove(os.path.join(run, "data", "val.npy"))
    out = run_script("train_teacher.py", f"--data={npz}", f"--run_dir={run}", "--epochs=1", *TEACHER)
    assert "nothing to do" in out.stdout
    assert open(os.path.join(run, "data", "val.npy"), "rb").read() == val


@pytest.mark.parametrize("damage", ["relabeled", "truncated"])
def test_a_changed_data_file_is_named_by_its_consumers_and_remade_by_the_teacher(damage, finished_run,
                                                                                finished_run_template):
    run, npz = finished_run, finished_run_template[0]
    path = os.path.join(run, "data", "test_labels.npy")
    labels = open(path, "rb").read()
    if damage == "relabeled":
        np.save(path, np.zeros_like(np.load(path)))
    else:
        open(path, "r+b").truncate(100)
    with pytest.raises(UserError, match=rf"{run}/data: test_labels.npy changed since train_teacher.py wrote it; "
                                        "run train_teacher.py again with the same settings"):
        RunDir(run).data()
    out = run_script("train_teacher.py", f"--data={npz}", f"--run_dir={run}", "--epochs=1", *TEACHER)
    assert "nothing to do" in out.stdout  # the same split, made again from the source: the teacher is its own
    assert open(path, "rb").read() == labels
    RunDir(run).teacher()


def test_a_cached_pool_changed_after_labeling_is_refused(finished_run, tmp_path):
    from PIL import Image
    from conftest import synthetic_images
    run, folder = finished_run, tmp_path / "pool"
    folder.mkdir()
    for i, image in enumerate(synthetic_images(12, 4, seed=5)[0]):
        Image.fromarray(image).save(folder / f"{i:02d}.png")
    run_script("pseudo_label.py", f"--run_dir={run}", f"--unlabeled={folder}", "--threshold=0.0", "--retrain=True")
    pseudo = json.load(open(os.path.join(run, "pseudo", "config.json")))
    cache = os.path.join(run, pseudo["pool_file"])
    images = np.load(cache)
    np.save(cache, images[::-1])  # the rows reordered: every pseudo-label now names another image
    error = one_line_error(run_script("train_student.py", f"--run_dir={run}", "--epochs=1", "--batch_size=32",
                                      "--retrain=True", check=False))
    assert f"{cache} changed since pseudo_label.py labeled it" in error


def test_a_retrain_that_fails_at_its_last_step_leaves_every_file_of_the_finished_stage(tmp_path):
    from noisy.stages import begin_stage, finish_stage, identity, staged_path

    class Unsaveable:
        def save(self, path):
            raise OSError(28, "No space left on device", path)

    stage = str(tmp_path / "teacher")
    begin_stage(stage, "teacher", identity({"epochs": 1}, {}), retrain=False)
    open(staged_path(stage, "history.csv"), "w").write("epoch\n0\n")
    finish_stage(stage, {"model": "tiny"}, identity({"epochs": 1}, {}))
    before = files_of(stage)
    begin_stage(stage, "teacher", identity({"epochs": 2}, {}), retrain=True)
    open(staged_path(stage, "history.csv"), "w").write("epoch\n0\n1\n")  # as fit writes it
    with pytest.raises(OSError, match="No space left"):
        finish_stage(stage, {"model": "tiny"}, identity({"epochs": 2}, {}), model=Unsaveable())
    assert {k: v for k, v in files_of(stage).items() if not k.startswith("resume")} == before
    assert json.loads(before["config.json"])["files_sha256"]["history.csv"]  # recorded, so checked when read


def test_a_kill_while_a_retrain_moves_its_files_in_leaves_an_unfinished_stage_that_resumes(tmp_path, monkeypatch):
    from noisy import stages
    from noisy.stages import begin_stage, check_stage, finish_stage, identity, staged_path

    stage, old, new = str(tmp_path / "teacher"), identity({"epochs": 1}, {}), identity({"epochs": 2}, {})
    begin_stage(stage, "teacher", old, retrain=False)
    open(staged_path(stage, "history.csv"), "w").write("epoch\n0\n")
    finish_stage(stage, {"model": "tiny"}, old)
    begin_stage(stage, "teacher", new, retrain=True)
    open(staged_path(stage, "history.csv"), "w").write("epoch\n0\n1\n")
    open(staged_path(stage, "latest.json"), "w").write("{}")  # a checkpoint, as fit leaves one
    real_replace = os.replace

    def killed(src, dst):  # the kill: the first file moved in, then the process dies
        real_replace(src, dst)
        raise KeyboardInterrupt

    monkeypatch.setattr(stages.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        finish_stage(stage, {"model": "tiny"}, new)
    monkeypatch.setattr(stages.os, "replace", real_replace)
    with pytest.raises(UserError, match="unfinished train_teacher.py"):  # no reader takes the new file
        RunDir(str(tmp_path)).finished("teacher", "teacher")
    with pytest.raises(UserError, match="unfinished train_teacher.py"):
        RunDir(str(tmp_path)).teacher()
    assert check_stage(stage, "teacher", new, retrain=False) is True  # the same command resumes
    with pytest.raises(UserError, match="checkpoints were made with other settings"):
        check_stage(stage, "teacher", old, retrain=False)  # the old stage is gone: never "nothing to do"


def test_a_resume_under_another_backend_is_refused_and_other_code_is_named(finished_run, finished_run_template):
    run, npz = finished_run, finished_run_template[0]
    args = [f"--data={npz}", f"--run_dir={run}", "--epochs=1", *TEACHER]
    teacher = os.path.join(run, "teacher")
    config = json.load(open(os.path.join(teacher, "config.json")))
    # As if the teacher's first run had been killed after epoch 0 under JAX and Keras 3.0.0.
    os.rename(os.path.join(teacher, "config.json"), os.path.join(teacher, "finished.json"))
    os.makedirs(os.path.join(teacher, "resume"))
    marker = dict(config["identity"], environment={"backend": "jax", "keras": "3.0.0"})
    json.dump(marker, open(os.path.join(teacher, "resume", "identity.json"), "w"))
    json.dump({"epoch": 0, "best_epoch": 0}, open(os.path.join(teacher, "resume", "latest.json"), "w"))
    error = one_line_error(run_script("train_teacher.py", *args, check=False))
    assert f"cannot resume {teacher}: its checkpoints were made with other settings or inputs: " in error
    assert 'environment.backend "jax" (now "' in error and 'environment.keras "3.0.0" (now "' in error
    assert "rerun with those settings (KERAS_BACKEND=jax) to resume" in error
    # The same backend and versions, TensorFlow's other CPU kernels (TF_ENABLE_ONEDNN_OPTS).
    from noisy.stages import environment
    now = environment()
    assert config["environment"] == now  # what made the finished stage, recorded beside its identity
    if "cpu_kernels" in now:
        other = {"onednn": "eigen", "eigen": "onednn"}[now["cpu_kernels"]]
        json.dump(dict(config["identity"], environment=dict(now, cpu_kernels=other)),
                  open(os.path.join(teacher, "resume", "identity.json"), "w"))
        error = one_line_error(run_script("train_teacher.py", *args, check=False))
        assert f'environment.cpu_kernels "{other}" (now "{now["cpu_kernels"]}")' in error
        assert f"(TF_ENABLE_ONEDNN_OPTS={dict(onednn=1, eigen=0)[other]} (" in error
        # Checkpoints of code that did not record the kernels: not resumed, and said why.
        json.dump(dict(config["identity"], environment={k: v for k, v in now.items() if k != "cpu_kernels"}),
                  open(os.path.join(teacher, "resume", "identity.json"), "w"))
        error = one_line_error(run_script("train_teacher.py", *args, check=False))
        assert "environment.cpu_kernels null" in error and "not recorded: code before 8bdf3ec" in error
    # The finished teacher made by other code: still nothing to do, and said so.
    shutil.rmtree(os.path.join(teacher, "resume"))
    config["sources"]["noisy/training.py"] = "0" * 16
    json.dump(config, open(os.path.join(teacher, "config.json"), "w"))
    out = run_script("train_teacher.py", *args)
    assert "nothing to do" in out.stdout and re.search(r"by other code: [^;]*noisy/training.py[^;]* differ", out.stdout)


def test_arm_6_scores_a_student_whose_teacher_is_a_student(finished_run, finished_run_template, tmp_path):
    """A second round: RUN_DIR/teacher is the first round's student (a link)."""
    run, second, npz = finished_run, str(tmp_path / "round2"), finished_run_template[0]
    os.makedirs(second)
    os.symlink(os.path.join(run, "data"), os.path.join(second, "data"))
    os.symlink(os.path.join(run, "student"), os.path.join(second, "teacher"))
    run_script("pseudo_label.py", f"--run_dir={second}", "--threshold=0.0")
    run_script("train_student.py", f"--run_dir={second}", "--epochs=1", "--batch_size=32")
    run_script("evaluate.py", f"--run_dir={second}", "--severities=()", "--plots=False")
    results = json.load(open(os.path.join(second, "results.json")))
    assert results["students"] == ["student"] and results["teacher"]["run_id"] == \
        json.load(open(os.path.join(run, "student", "config.json")))["run_id"]
    # A teacher is never made through the link, over the first round's student.
    before = files_of(os.path.join(run, "student"))
    error = one_line_error(run_script("train_teacher.py", f"--data={npz}", f"--run_dir={second}", "--epochs=1",
                                      *TEACHER, "--retrain=True", check=False))
    assert f"{second}/teacher is a link to {os.path.realpath(os.path.join(run, 'student'))}" in error
    assert files_of(os.path.join(run, "student")) == before


def test_two_processes_never_hold_one_lock(tmp_path):
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); from noisy.locks import lock; from noisy.errors "
            "import UserError\ntry:\n lock(sys.argv[2]); print('held', flush=True); time.sleep(1.5)\n"
            "except UserError: print('refused', flush=True)")
    processes = [subprocess.Popen([sys.executable, "-c", code, REPO, str(tmp_path / "stage")], stdout=subprocess.PIPE,
                                  text=True) for _ in range(6)]
    answers = sorted(p.communicate()[0].strip() for p in processes)
    assert answers == ["held"] + ["refused"] * 5


def test_a_student_folder_may_not_take_a_stage_or_results_key_name(tmp_path):
    for name in ("teacher", "settings", "students", "a/b"):
        with pytest.raises(UserError, match=rf"--student='{name}': expected a folder name"):
            RunDir(str(tmp_path)).stage("student", {}, folder=name)
    lock(str(tmp_path / "x"))


def test_a_student_folder_may_not_take_the_name_of_a_file_of_the_run_folder(tmp_path):
    """evaluate.py's outputs, or any file already there: a student made there would leave a
    folder where evaluate.py writes its results (a fresh-eyes tester, #24)."""
    (tmp_path / "notes.txt").write_text("mine")
    for name in ("results.json", "curves.png", "notes.txt"):
        with pytest.raises(UserError, match=rf"--student='{name}': .*/{name} is a file evaluate.py writes or a file "
                                            "already there"):
            RunDir(str(tmp_path)).stage("student", {}, folder=name)
        assert not (tmp_path / name).is_dir()


def test_a_source_changed_in_place_is_read_again_and_a_data_record_changed_is_refused(synthetic_npz, tmp_path):
    run = str(tmp_path / "run")
    args = [f"--data={synthetic_npz}", f"--run_dir={run}", "--epochs=1", *TEACHER]
    run_script("train_teacher.py", *args)
    os.utime(synthetic_npz)  # touched, same content: read again, the same split
    assert "nothing to do" in run_script("train_teacher.py", *args).stdout
    arrays = dict(np.load(synthetic_npz))
    np.savez(synthetic_npz, **dict(arrays, y_train=(arrays["y_train"] + 1) % 4))  # relabeled in place
    before = files_of(run)
    error = one_line_error(run_script("train_teacher.py", *args, check=False))
    assert f"{run}/teacher holds a teacher made with other settings or inputs: inputs.split" in error
    assert files_of(run) == before
    config = json.load(open(os.path.join(run, "data", "config.json")))
    json.dump(dict(config, num_classes=5), open(os.path.join(run, "data", "config.json"), "w"))
    error = one_line_error(run_script("pseudo_label.py", f"--run_dir={run}", check=False))
    assert f"{run}/teacher was made from another split than {run}/data holds" in error


def test_merged_shards_that_are_not_probabilities_are_refused(tmp_path):
    from noisy.pseudo import merge_shards, save_shard
    pool_id = {"teacher": "t1", "pool_rows": 4}
    save_shard(str(tmp_path), 0, 2, pool_id, np.full((2, 3), 1 / 3, np.float32))
    save_shard(str(tmp_path), 1, 2, pool_id, np.full((2, 3), 2.0, np.float32))
    with pytest.raises(UserError, match=r"the shards hold rows that are not probabilities; label them again"):
        merge_shards(str(tmp_path), 2, pool_id)


def test_a_shard_changed_after_it_was_written_is_refused_at_the_merge(tmp_path):
    from noisy.pseudo import merge_shards, save_shard
    pool_id = {"teacher": "t1", "pool_rows": 4}
    for shard in (0, 1):
        save_shard(str(tmp_path), shard, 2, pool_id, np.full((2, 3), 1 / 3, np.float32))
    assert merge_shards(str(tmp_path), 2, pool_id).shape == (4, 3)
    np.save(tmp_path / "probs-0001-of-0002.npy", np.eye(3, dtype=np.float32)[[0, 1]])  # still probabilities
    with pytest.raises(UserError, match=r"probs-0001-of-0002.npy is not the file pseudo_label.py --num_shards=2 "
                                        r"--shard=1 wrote \(its sha256 differs from the one probs-0001-of-0002.json"):
        merge_shards(str(tmp_path), 2, pool_id)


def test_a_damaged_student_record_is_refused_not_skipped_by_all(finished_run):
    (open(os.path.join(finished_run, "student", "config.json"), "w")).write("{")
    run = RunDir(finished_run)
    with pytest.raises(UserError, match=r"student/config.json is not readable JSON .*; delete .*student or make it "
                                        r"again with --retrain=True"):
        run.students("all", run.teacher())


@pytest.mark.parametrize("kind", ["pseudo", "student", "evaluate"])
def test_a_mistyped_run_folder_is_refused_and_not_made(kind, tmp_path):
    run = RunDir(str(tmp_path / "typo"))
    with pytest.raises(UserError, match=r"typo/data/config.json not found: run train_teacher.py first"):
        run.lock_evaluation() if kind == "evaluate" else run.stage(kind, {})
    assert not os.path.exists(tmp_path / "typo")


def test_a_stage_refused_before_it_began_leaves_no_folder_behind(finished_run):
    """A student asked for in a run folder whose teacher is gone is refused after its lock
    was taken: the stage folder it locked, empty but for the lock, goes with it."""
    shutil.rmtree(os.path.join(finished_run, "teacher"))
    error = run_script("train_student.py", f"--run_dir={finished_run}", "--student=wide", check=False)
    assert error.returncode == 2 and "teacher/config.json not found" in error.stderr
    assert not os.path.exists(os.path.join(finished_run, "wide"))
    assert os.path.isfile(os.path.join(finished_run, "student", "config.json"))  # the finished one is untouched


@pytest.mark.parametrize("folder", ["", " "])
def test_an_empty_run_dir_is_refused_rather_than_the_current_folder_taken(folder):
    with pytest.raises(UserError, match=r"--run_dir=.* is empty"):
        RunDir(folder)


def test_the_test_folder_of_the_teacher_s_data_is_not_an_unlabeled_pool(tmp_path):
    """Only evaluate.py reads the test images (a fresh-eyes tester, #24)."""
    import types
    (tmp_path / "d" / "test" / "cat").mkdir(parents=True)
    split = types.SimpleNamespace(config={"num_unlabeled": 0, "source": str(tmp_path / "d")}, image_shape=(8, 8, 3))
    (tmp_path / "d" / "train").mkdir()
    for named in ("test", "test/", "./test", "test/cat", "."):  # a folder pool is read recursively
        with pytest.raises(UserError, match=r"holds or lies in the test folder of the teacher's --data"):
            RunDir(str(tmp_path / "run")).pool(str(tmp_path / "d" / named), split, 800, 0)
    with pytest.raises(UserError, match=r"train holds no image files"):  # past the check: train/ is no test folder
        RunDir(str(tmp_path / "run")).pool(str(tmp_path / "d" / "train"), split, 800, 0)


def test_students_none_is_the_teacher_alone(tmp_path):
    (tmp_path / "student").mkdir()  # a student folder there is not read
    assert RunDir(str(tmp_path)).students("none", teacher=None) == ([], None)
