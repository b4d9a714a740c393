"""The run folder's guarantees that issue #23 found missing: every file a stage hands on
is recorded and checked, nothing is written before every check has passed, a resume
runs under the backend and library versions it was made with, a stage made by other code
is named as such, and a lock is one process's alone."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, TEACHER, run_script
from noisy.errors import UserError
from noisy.data import DATA_FILES
from noisy.rundir import RunDir
from noisy.settings import check_run_dir, check_student_folder
from noisy.stages import Finished, Stage, provenance
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
    with pytest.raises(UserError, match=rf"{run}/data/test_labels.npy is not the file train_teacher.py wrote "
                                        r"\(missing, .*\); run train_teacher.py again with the same settings"):
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
    class Unsaveable:
        def save(self, path):
            raise OSError(28, "No space left on device", path)

    folder = str(tmp_path / "teacher")
    stage = Stage("teacher", folder, {"epochs": 1})
    stage.begin()
    open(stage.path("history.csv"), "w").write("epoch\n0\n")
    stage.finish({"model": "tiny"})
    before = files_of(folder)
    stage = Stage("teacher", folder, {"epochs": 2}, retrain=True)
    stage.begin()
    open(stage.path("history.csv"), "w").write("epoch\n0\n1\n")  # as fit writes it
    with pytest.raises(OSError, match="No space left"):
        stage.finish({"model": "tiny"}, model=Unsaveable())
    assert {k: v for k, v in files_of(folder).items() if not k.startswith("resume")} == before
    recorded = json.loads(before["config.json"])["files"]["history.csv"]  # recorded, so checked when read
    assert recorded["size"] == len("epoch\n0\n") and len(recorded["sha256"]) == 64 and recorded["mtime_ns"] > 0


def test_a_kill_while_a_retrain_moves_its_files_in_leaves_an_unfinished_stage_that_resumes(tmp_path, monkeypatch):
    from noisy import stages

    folder = str(tmp_path / "teacher")
    stage = Stage("teacher", folder, {"epochs": 1})
    stage.begin()
    open(stage.path("history.csv"), "w").write("epoch\n0\n")
    stage.finish({"model": "tiny"})
    stage = Stage("teacher", folder, {"epochs": 2}, retrain=True)
    stage.begin()
    open(stage.path("history.csv"), "w").write("epoch\n0\n1\n")
    open(stage.path("latest.json"), "w").write("{}")  # a checkpoint, as fit leaves one
    real_replace = os.replace

    def killed(src, dst):  # the kill: the first file moved in, then the process dies
        real_replace(src, dst)
        raise KeyboardInterrupt

    monkeypatch.setattr(stages.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        stage.finish({"model": "tiny"})
    monkeypatch.setattr(stages.os, "replace", real_replace)
    with pytest.raises(UserError, match="unfinished train_teacher.py"):  # no reader takes the new file
        Finished(str(tmp_path / "teacher"), "teacher")
    with pytest.raises(UserError, match="unfinished train_teacher.py"):
        RunDir(str(tmp_path)).teacher()
    assert Stage("teacher", folder, {"epochs": 2}).check() is True  # the same command resumes
    with pytest.raises(UserError, match="checkpoints were made with other settings"):
        Stage("teacher", folder, {"epochs": 1}).check()  # the old stage is gone: never "nothing to do"


def test_a_resume_refuses_another_backend_and_names_other_versions_without_refusing(tmp_path, capsys):
    """Provenance is recorded, not enforced: a resume under another backend is refused,
    under another Keras version or other CPU kernels (a rounding difference) it goes on,
    naming them."""
    folder = str(tmp_path / "student")
    stage = Stage("student", folder, {"epochs": 5})
    stage.begin(pseudo="p1")
    open(stage.path("latest.json"), "w").write('{"epoch": 1}')  # as if killed after epoch 1
    marker = json.load(open(stage.path("identity.json")))
    assert marker["backend"] == provenance()["backend"] and marker["provenance"] == provenance()
    now = provenance()
    json.dump(dict(marker, provenance=dict(now, keras="3.0.0", cpu_kernels="other")), open(stage.path("identity.json"), "w"))
    assert Stage("student", folder, {"epochs": 5}).check(pseudo="p1") is True
    out = capsys.readouterr().out
    assert f"note: resuming {folder} under other versions than it began with: " in out
    assert f'keras "3.0.0" (now "{now["keras"]}")' in out and '"other" (now ' in out
    other = {"jax": "tensorflow"}.get(now["backend"], "jax")
    json.dump(dict(marker, backend=other), open(stage.path("identity.json"), "w"))
    with pytest.raises(UserError, match=rf'cannot resume {folder}: its checkpoints were made with other settings or '
                                        rf'inputs: backend "{other}" \(now "{now["backend"]}"\); rerun with those'):
        Stage("student", folder, {"epochs": 5}).check(pseudo="p1")


def test_a_finished_stage_records_its_provenance_and_names_a_difference_as_nothing_to_do(finished_run,
                                                                                        finished_run_template):
    run, npz = finished_run, finished_run_template[0]
    path = os.path.join(run, "teacher", "config.json")
    config = json.load(open(path))
    assert {"backend", "keras", "code"} <= set(config["provenance"]) and "sources" not in config
    assert config["provenance"]["backend"] in ("tensorflow", "jax")
    json.dump(dict(config, provenance=dict(config["provenance"], keras="3.0.0", code="0123abc")), open(path, "w"))
    out = run_script("train_teacher.py", f"--data={npz}", f"--run_dir={run}", "--epochs=1", *TEACHER).stdout
    assert "nothing to do" in out and 'keras "3.0.0" (now "' in out and 'code "0123abc" (now "' in out


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
    processes = [subprocess.Popen([sys.executable, "-c", code, REPO, str(tmp_path / ".lock-stage")],
                                  stdout=subprocess.PIPE, text=True) for _ in range(6)]
    answers = sorted(p.communicate()[0].strip() for p in processes)
    assert answers == ["held"] + ["refused"] * 5


def test_a_student_folder_may_not_take_a_stage_or_results_key_name_or_a_file_of_the_run_folder(tmp_path):
    """A student made there would leave a folder where another stage, results.json's key
    or evaluate.py's file is (a fresh-eyes tester, #24)."""
    (tmp_path / "notes.txt").write_text("mine")
    for name in ("teacher", "settings", "students", "a/b", "results.json", "curves.png", "notes.txt"):
        with pytest.raises(UserError, match=rf"--student='{name}': expected a new folder name for the student"):
            check_student_folder(name, str(tmp_path))  # a setting's check: before the run folder is touched
    assert sorted(os.listdir(tmp_path)) == ["notes.txt"]


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
    assert f"{run}/teacher was made from split " in error and f", but {run}/data holds split " in error


def test_merged_shards_that_are_not_probabilities_are_refused(tmp_path):
    from noisy.shards import merge_shards, save_shard
    pool_id = {"teacher": "t1", "pool_rows": 4}
    save_shard(str(tmp_path), 0, 2, pool_id, np.full((2, 3), 1 / 3, np.float32))
    save_shard(str(tmp_path), 1, 2, pool_id, np.full((2, 3), 2.0, np.float32))
    with pytest.raises(UserError, match=r"the shards hold rows that are not probabilities; label them again"):
        merge_shards(str(tmp_path), 2, pool_id)


def test_a_shard_changed_after_it_was_written_is_refused_at_the_merge(tmp_path):
    from noisy.shards import merge_shards, save_shard
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
    with pytest.raises(UserError, match=r"student/config.json is not readable JSON .*; move .*student away, or rerun "
                                        r"its stage with --retrain=True"):
        run.students("all", run.teacher())


@pytest.mark.parametrize("kind", ["pseudo", "student", "evaluate"])
def test_a_mistyped_run_folder_is_refused_and_not_made(kind, tmp_path):
    run = RunDir(str(tmp_path / "typo"))
    with pytest.raises(UserError, match=r"typo/data/config.json not found: run train_teacher.py first"):
        run.lock_evaluation() if kind == "evaluate" else run.stage(kind, {})
    assert not os.path.exists(tmp_path / "typo")


def test_a_stage_refused_before_it_began_leaves_no_folder_behind(finished_run):
    """A student asked for in a run folder whose teacher is gone is refused after its lock
    (RUN_DIR/.lock-wide) was taken, before it began: its folder is never made."""
    shutil.rmtree(os.path.join(finished_run, "teacher"))
    error = run_script("train_student.py", f"--run_dir={finished_run}", "--student=wide", check=False)
    assert error.returncode == 2 and "teacher/config.json not found" in error.stderr
    assert not os.path.exists(os.path.join(finished_run, "wide"))
    assert os.path.isfile(os.path.join(finished_run, "student", "config.json"))  # the finished one is untouched


@pytest.mark.parametrize("folder", ["", " "])
def test_an_empty_run_dir_is_refused_rather_than_the_current_folder_taken(folder):
    with pytest.raises(UserError, match=r"--run_dir=.* is empty"):
        check_run_dir(folder)


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


def hashed(monkeypatch):
    """The paths noisy.files hashes from now on."""
    from noisy import files
    calls, real = [], files.sha256
    monkeypatch.setattr(files, "sha256", lambda path: calls.append(os.path.basename(path)) or real(path))
    return calls


def test_an_unchanged_run_folder_is_checked_without_hashing_a_file(finished_run, monkeypatch, capsys):
    """DVC's way: a recorded file is hashed again only when its size or time differs."""
    calls = hashed(monkeypatch)
    run = RunDir(finished_run)
    teacher = run.teacher(run.data())
    students, _ = run.students("all", teacher)
    pseudo = run.pseudo(teacher)
    assert teacher.load_model() is not None and len(teacher.model_sha256) == 64 and len(pseudo.targets)
    recorded = students[0].config["identity"]
    with pytest.raises(SystemExit) as done:  # the finished student asked for again
        Stage("student", students[0].dir, recorded["settings"]).check(**recorded["inputs"])
    assert done.value.code == 0 and "nothing to do" in capsys.readouterr().out
    assert calls == []
    os.utime(os.path.join(finished_run, "data", "val.npy"))  # touched: new time, same bytes
    RunDir(finished_run).data()
    assert calls == ["val.npy"]  # hashed once to tell, and accepted


def test_a_file_rewritten_with_the_same_size_is_refused_in_one_line(finished_run):
    run, path = RunDir(finished_run), os.path.join(finished_run, "pseudo", "indices.npy")
    stat, rows = os.stat(path), np.load(path)
    np.save(path, rows[::-1].copy())  # as many bytes, other content
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # rewritten a second later
    assert os.path.getsize(path) == stat.st_size
    with pytest.raises(UserError, match=rf"^{path} is not the file pseudo_label.py wrote \(missing, or its "):
        run.pseudo(run.teacher())
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # its time put back by hand: not seen, as documented
    assert np.array_equal(run.pseudo(run.teacher()).rows, rows[::-1])


def test_a_run_folder_copied_with_new_times_still_works(finished_run, tmp_path, monkeypatch):
    copy = str(tmp_path / "copied")
    shutil.copytree(finished_run, copy, copy_function=shutil.copy)  # cp -r: every file's time is new
    assert os.stat(os.path.join(copy, "teacher", "model.keras")).st_mtime_ns != \
        os.stat(os.path.join(finished_run, "teacher", "model.keras")).st_mtime_ns
    run_script("evaluate.py", f"--run_dir={copy}", "--severities=()", "--plots=False")
    assert json.load(open(os.path.join(copy, "results.json")))["students"] == ["student"]
    calls = hashed(monkeypatch)
    RunDir(copy).data()
    assert sorted(calls) == sorted(DATA_FILES)  # the same bytes: hashed to tell, and accepted
