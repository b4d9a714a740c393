"""The experiment runner (bench/effect.py) and its table (bench/table.py) from finished
and unfinished arms, and the record that keeps a run folder's table the table of what it
says."""
import json
import os
import re

import numpy as np
import pytest

import bench.runner as runner
from bench import arms, ledger, table
from bench.configs import CONFIGS, resolve
from conftest import run_script
from noisy.errors import UserError


@pytest.fixture
def out(tmp_path):
    return tmp_path


def arm_dirs(out, seed):
    return [arms.folder(str(out), seed, arm) for arm in (1, 2, 5, 6)]


def write_table(out, results, seconds):
    table.write_table(str(out), "cpu", results, seconds)


def finished_stages(run_dir, teacher="teacher-1", pseudo="pseudo-1", student="student-1"):
    """A run folder's records as its stages leave them (a split, then a teacher, its
    pseudo-labels and a student made from both, by run id), with no models in them."""
    from noisy.data import DATA_FILES
    os.makedirs(os.path.join(run_dir, "data"), exist_ok=True)
    for name in DATA_FILES:
        np.save(os.path.join(run_dir, "data", name), np.zeros(2, np.int64))
    write_json(os.path.join(run_dir, "data", "config.json"), {"complete": True})
    write_json(os.path.join(run_dir, "teacher", "config.json"), {"run_id": teacher, "complete": True,
                                                                 "stage": "teacher"})
    write_json(os.path.join(run_dir, "pseudo", "config.json"), {"run_id": pseudo, "complete": True, "stage": "pseudo",
                                                                "teacher": {"run_id": teacher}})
    write_json(os.path.join(run_dir, "student", "config.json"), {"run_id": student, "complete": True,
                                                                 "stage": "student", "teacher": {"run_id": teacher},
                                                                 "pseudo": {"run_id": pseudo}})


def vouched_stages(run_dir, out=None):
    """What the runner's ledger says after its scripts ran on run_dir (OUT/seed<N>/<arm>):
    its three stages, as they are now, the runner's under the folder's record."""
    out = out or os.path.dirname(os.path.dirname(run_dir))
    write_settings(out)
    for script in ("train_teacher.py", "pseudo_label.py", "train_student.py"):
        ledger.vouch(out, run_dir, script)


def write_settings(out, **record):
    """out/settings.json as the runner writes it (unless there is one)."""
    if not os.path.isfile(os.path.join(out, "settings.json")):
        write_json(os.path.join(out, "settings.json"), dict({
            "config": "cpu", "resolved": CONFIGS["cpu"], "data": "cifar10", "unlabeled": "", "data_sha256": None,
            "unlabeled_sha256": None, "seeds": [0]}, **record))


def scored(run_dir, results):
    """results.json as the runner's evaluate.py leaves it: of the models there now (their
    run ids), with the runner's settings for that folder, which the runner ran."""
    finished_stages(run_dir)
    vouched_stages(run_dir)
    settings = runner.evaluation_settings(arms.EVALUATE_ARGS[os.path.basename(run_dir)])
    write_json(os.path.join(run_dir, "results.json"), dict(
        {stage: dict(results.get(stage, {}), run_id=f"{stage}-1") for stage in ("teacher", "student")},
        settings=settings))
    ledger.vouch_results(os.path.dirname(os.path.dirname(run_dir)), run_dir)  # the runner's evaluate.py wrote it


def write_json(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(value, f)


def test_collect_reads_the_arms_and_rounds_that_have_finished(out):
    a, b, c, d = arm_dirs(out, 0)
    scored(b, {"teacher": {"accuracy": 0.64}, "student": {"accuracy": 0.69}})
    write_json(os.path.join(b, "pseudo", "summary.json"), {"kept": 41000, "balanced": 30000, "accuracy_kept": 0.675})
    os.makedirs(os.path.join(b, "data"), exist_ok=True)
    np.save(os.path.join(b, "data", "train_labels.npy"), np.array([0, 1, 2, 3, 4, 5]))
    np.save(os.path.join(b, "pseudo", "indices.npy"), np.array([5, 1, 2, 2]))  # training rows, repeats allowed
    np.save(os.path.join(b, "pseudo", "targets.npy"), np.eye(6)[[5, 0, 2, 2]])  # row 1 is labeled wrong
    scored(c, {"teacher": {"accuracy": 0.64}, "student": {"accuracy": 0.67}})
    scored(a, {"teacher": {"accuracy": 0.61}, "student": {"accuracy": 0.66}})
    json.dump(dict(json.load(open(os.path.join(a, "results.json"))), settings={"ece_bins": 2}),
              open(os.path.join(a, "results.json"), "w"))  # a hand-run with other settings: not the runner's
    result = table.collect(str(out), 0)
    assert result["accuracy"] == {1: None, 2: 0.64, 3: None, 4: 0.69, 5: 0.67, 6: None}
    assert result["ece"] == {arm: None for arm in arms.ARMS}  # results without ece: not invented
    assert list(result["pseudo"]) == ["round 1, teacher 2"]
    assert result["pseudo"]["round 1, teacher 2"]["accuracy_balanced"] == 0.75


def test_collect_leaves_out_balanced_accuracy_for_an_outside_pool(out):
    a, b, c, d = arm_dirs(out, 0)  # an --unlabeled folder: no hidden labels, so no accuracy_kept
    finished_stages(b)
    vouched_stages(b)
    write_json(os.path.join(b, "pseudo", "summary.json"), {"kept": 900, "balanced": 800})
    assert "accuracy_balanced" not in table.collect(str(out), 0)["pseudo"]["round 1, teacher 2"]


def test_partial_table_averages_what_exists_and_names_what_is_missing(out):
    seed0 = {1: 0.60, 2: 0.64, 3: 0.65, 4: 0.69, 5: 0.66, 6: None}
    seed1 = {1: None, 2: 0.66, 3: None, 4: 0.70, 5: None, 6: None}
    pseudo = {"round 1, teacher 2": {"kept": 41000, "balanced": 30000, "accuracy_kept": 0.675,
                                     "accuracy_balanced": 0.76}}
    write_table(out, {0: {"accuracy": seed0, "pseudo": pseudo}, 1: {"accuracy": seed1, "pseudo": pseudo}}, None)
    text = (out / "effect.md").read_text()
    assert "**Partial table**" in text
    assert "| 2 | teacher, noise | 65.00 ± 1.41 | 64.00% | 66.00% |" in text
    assert "| 5 | student of 2, no noise | 66.00 (one seed) | 66.00% | - |" in text
    assert "| 6 | round 2: student of 4, noise | - | - | - |" in text
    assert "| 4 - 2 (student over its noised teacher) | 4.50 ± 0.71 | 0, 1 |" in text  # +5 and +4
    assert "| 4 - 5 (noise in the student) | 3.00 (one seed) | 0 |" in text
    assert "| round 1, teacher 2 | 41000 | 67.50 ± 0.00 | 30000 | 76.00 ± 0.00 | 0, 1 |" in text
    saved = json.loads((out / "effect.json").read_text())
    assert saved["missing"] == ["arm 1 seed 1", "arm 3 seed 1", "arm 5 seed 1", "arm 6 seed 0", "arm 6 seed 1"]


def test_complete_table_is_not_marked_partial(out):
    acc = {arm: 0.5 + arm / 100 for arm in arms.ARMS}
    write_table(out, {0: {"accuracy": acc, "pseudo": {}}, 1: {"accuracy": dict(acc), "pseudo": {}}}, 600)
    text = (out / "effect.md").read_text()
    assert "Partial" not in text and "Wall time of this invocation: 10 min" in text
    assert "| 6 - 4 (second round) | 2.00 ± 0.00 | 0, 1 |" in text


def test_student_images_replaces_the_budget_and_leaves_the_configuration_alone():
    cfg = resolve("full", 1_500_000)
    assert cfg["student_images"] == 1_500_000 and cfg["student_epochs"] is None  # epochs follow from the budget
    assert cfg["teacher"] == CONFIGS["full"]["teacher"]
    assert CONFIGS["full"]["student_epochs"] == 300
    assert resolve("cpu") == CONFIGS["cpu"]


def test_train_args_go_last_to_both_training_scripts_and_leave_the_configuration_alone():
    cfg = resolve("cpu", train_args=("--augment=device", "--workers=8"))
    assert cfg["train"][-2:] == ["--augment=device", "--workers=8"]  # after the configuration's --workers=2: it wins
    assert cfg["train"][:-2] == CONFIGS["cpu"]["train"] and "--augment=device" not in CONFIGS["cpu"]["train"]
    assert runner.student_settings(cfg)[:len(cfg["train"])] == cfg["train"]


def test_evaluate_runs_again_unless_results_are_the_runner_s_of_the_current_models_and_settings(out, monkeypatch):
    calls = []
    run_dir = str(out / "seed0" / "arm")
    finished_stages(run_dir, "t1", "p1", "s1")
    write_settings(out)
    path = os.path.join(run_dir, "results.json")

    def results(teacher, student, severities=(), **other):  # as evaluate.py writes it
        write_json(path, {"teacher": {"run_id": teacher, "accuracy": 0.5}, "student": {"run_id": student},
                          "settings": dict(runner.evaluation_settings([]), severities=list(severities),
                                           run_dir=run_dir, **other)})

    def evaluate_py(script, folder, *args):  # the runner's evaluate.py: scores the models there now
        calls.append(args)
        ids = [json.load(open(os.path.join(folder, stage, "config.json")))["run_id"] for stage in ("teacher", "student")]
        settings = runner.evaluation_settings(args)
        results(*ids, **dict(settings, severities=settings["severities"]))

    monkeypatch.setattr(runner, "run", evaluate_py)
    runner.evaluate(str(out), run_dir, "--severities=()")  # no results yet
    runner.evaluate(str(out), run_dir, "--severities=()")  # the runner's, of these models and settings: skipped
    assert calls == [("--severities=()",)]
    runner.evaluate(str(out), run_dir)  # the default severities (1, 3, 5): other settings
    runner.evaluate(str(out), run_dir, "--severities=(1, 3)")  # other settings
    runner.evaluate(str(out), run_dir, "--severities=()")
    assert len(calls) == 4
    finished_stages(run_dir, "t1", "p1", "s2")
    runner.evaluate(str(out), run_dir, "--severities=()")  # a student trained again since
    finished_stages(run_dir, "t2", "p2", "s3")
    runner.evaluate(str(out), run_dir, "--severities=()")  # a teacher trained again since
    assert len(calls) == 6
    results("t2", "s3", (), corruption_images=20, ece_bins=2)  # a hand-run with other settings
    runner.evaluate(str(out), run_dir, "--severities=()")
    runner.evaluate(str(out), run_dir, "--severities=()")  # these models, these settings, the runner's: kept
    assert len(calls) == 7
    edited = json.load(open(path))
    edited["teacher"]["accuracy"] = 0.999  # a score edited by hand: not the file the runner's evaluate.py wrote
    write_json(path, edited)
    runner.evaluate(str(out), run_dir, "--severities=()")
    assert len(calls) == 8
    # The scores are of the models there now, as evaluate.py would take them: a folder
    # evaluate.py refuses is scored again (and refused there), never kept.
    write_json(os.path.join(run_dir, "pseudo", "config.json"), {"run_id": "p2", "complete": True, "stage": "pseudo",
                                                                "teacher": {"run_id": "t0"}})
    runner.evaluate(str(out), run_dir, "--severities=()")  # the pseudo-labels are another teacher's
    assert len(calls) == 9
    finished_stages(run_dir, "t2", "p2", "s3")
    np.save(os.path.join(run_dir, "student", "model.npy"), np.zeros(1))
    student = json.load(open(os.path.join(run_dir, "student", "config.json")))
    write_json(os.path.join(run_dir, "student", "config.json"), dict(student, files_sha256={"model.npy": "0" * 64}))
    runner.evaluate(str(out), run_dir, "--severities=()")  # the student's model is not the file its stage wrote
    assert len(calls) == 10


def test_calibration_and_robustness_of_arms_2_and_4_against_the_clean_gain(out):
    a, b, c, d = arm_dirs(out, 0)
    scored(b, {
        "teacher": {"accuracy": 0.64, "ece": 0.02, "corruption_accuracy": {
            "fog": {"1": 0.6, "3": 0.5}, "contrast": {"1": 0.1, "3": 0.1}}},  # contrast: a RandAugment op, left out
        "student": {"accuracy": 0.70, "ece": 0.04, "corruption_accuracy": {"fog": {"1": 0.6, "3": 0.56}}}})
    scored(c, {"teacher": {"accuracy": 0.64}, "student": {"accuracy": 0.66, "ece": 0.2}})
    result = table.collect(str(out), 0)
    assert result["ece"][4] == 0.04 and result["corrupted"][2] == 0.55 and result["corrupted"][5] is None
    write_table(out, {0: result}, None)
    text = (out / "effect.md").read_text()
    assert "| 4 | 0.040 (one seed) | 58.00 (one seed) | 0 |" in text
    assert "| 5 | 0.200 (one seed) | not scored | 0 |" in text
    assert "Arm 4 - arm 2 under corruption: +3.00 points, clean +6.00 (mean over seeds 0; 0.50 of the clean gain)." in text
    result["accuracy"][4] = 0.643  # a clean gain of 0.3 points: both gains, no ratio
    write_table(out, {0: result}, None)
    assert "Arm 4 - arm 2 under corruption: +3.00 points, clean +0.30 (mean over seeds 0)." in (out / "effect.md").read_text()


def test_a_folder_relabeled_since_its_student_was_trained_is_not_in_the_table(out):
    """pseudo_label.py --retrain=True after the student: evaluate.py refuses the folder, so
    its old scores are not the table's either (a fresh-eyes tester, #24)."""
    b = arms.folder(str(out), 0, 2)
    scored(b, {"teacher": {"accuracy": 0.64}, "student": {"accuracy": 0.69}})
    assert table.collect(str(out), 0)["accuracy"][4] == 0.69
    write_json(os.path.join(b, "pseudo", "config.json"), {"run_id": "pseudo-2", "complete": True})
    assert table.collect(str(out), 0)["accuracy"] == {arm: None for arm in range(1, 7)}


def test_a_folder_made_with_other_settings_is_refused_before_its_record_is_written(out):
    record = {"config": "cpu", "resolved": CONFIGS["cpu"], "data": "/d", "unlabeled": "", "seeds": [0]}
    runner.check_record(str(out), record)  # nothing recorded yet
    runner.write_record(str(out), record, runner.__file__)
    runner.check_record(str(out), dict(record, seeds=[0, 1, 2]))  # more seeds: the same table, extended
    before = (out / "settings.json").read_text()
    with pytest.raises(UserError, match=r"holds runs made with other settings: unlabeled \"\" \(now \"/pool\"\); "
                                        r"use another --out"):
        runner.check_record(str(out), dict(record, unlabeled="/pool"))
    assert (out / "settings.json").read_text() == before and (out / "runner.py").is_file()


def test_the_table_only_is_labelled_from_the_folder_s_own_record(out):
    write_settings(str(out), config="full", resolved=CONFIGS["full"], seeds=[0, 3])
    scored(arms.folder(str(out), 0, 2), {"teacher": {"accuracy": 0.9}, "student": {"accuracy": 0.95}})
    run_script("bench/effect.py", "--config=cpu", f"--out={out}", "--table_only=True", "--seeds=(0, 1)")
    text = (out / "effect.md").read_text()
    assert text.startswith("# Noisy Student effect: config 'full'")
    assert "\nSeeds: 0, 3. " in text and "from the folder's record" in text and "| seed 0 | seed 3 |" in text
    error = run_script("bench/effect.py", f"--out={out / 'none'}", "--table_only=True", check=False)
    assert error.returncode == 2 and error.stderr.strip().startswith("error: ")


def test_the_record_keeps_every_seed_the_folder_has_run(out):
    record = {"config": "smoke", "resolved": CONFIGS["smoke"], "data": "/d", "unlabeled": "", "seeds": [2]}
    runner.write_record(str(out), record, runner.__file__)
    runner.write_record(str(out), dict(record, seeds=[0, 2]), runner.__file__)
    assert json.loads((out / "settings.json").read_text())["seeds"] == [0, 2]
    assert runner.recorded_seeds(str(out), [5]) == [0, 2, 5] and runner.recorded_seeds(str(out / "new")) == []


@pytest.mark.parametrize("args, message", [
    (["--data={tmp}/missing"], "--data: '{tmp}/missing' is neither 'cifar10', a .npz file nor an existing folder"),
    (["--data={tmp}/missing.npz"], "--data: {tmp}/missing.npz not found"),
    (["--data={tmp}"], "{tmp}/train not found: a data folder needs train/<class>/ and test/<class>/"),
    (["--unlabeled={tmp}/none"], "--unlabeled='{tmp}/none': expected '' (pseudo_label.py's default), an existing "
                                 "folder or .npy file"),
    (["--seeds=('a',)"], "--seeds=('a',): expected distinct integers in [0, 2**32)"),
    (["--seeds=(1, 1)"], "--seeds=(1, 1): expected distinct integers in [0, 2**32)"),
    (["--train_args=('--seed=7',)"], "--train_args: --seed is set by the runner itself (per seed or arm)"),
    (["--train_args=('--data=/x',)"], "--train_args: --data is set by the runner itself (per seed or arm)"),
    (["--train_args=('--epochs=9',)"], "--train_args: --epochs is set by the runner itself (per seed or arm)"),
    (["--train_args=('--num_labeled=9',)"], "--train_args: --num_labeled is set by the configuration for the "
                                            "teacher or the student alone"),
    (["--train_args=('--unlabeled=x',)"], "--train_args: --unlabeled is not a setting of both train_teacher.py "
                                          "and train_student.py"),
])
def test_a_bad_runner_setting_is_refused_before_the_folder_is_claimed(out, args, message):
    """A typo must not write the folder's record (which would refuse the corrected command
    as 'other settings'), nor start a stage."""
    folder = out / "effect"
    error = run_script("bench/effect.py", "--config=smoke", f"--out={folder}", "--seeds=(0,)",
                       *(a.format(tmp=out) for a in args), check=False)
    assert error.returncode == 2 and error.stderr.strip().startswith("error: " + message.format(tmp=out)), error.stderr
    assert not folder.exists()


def test_the_settings_both_training_scripts_share_pass_as_train_args():
    runner.require_train_args("--train_args", ("--augment=device", "--jit_compile=true", "--lr=0.05"), CONFIGS["cpu"])


def test_the_same_data_named_by_a_relative_path_is_recorded_as_its_absolute_path(out):
    for split in ("train", "test"):
        (out / "d" / split).mkdir(parents=True)
    write_json(str(out / "effect" / "settings.json"), {"config": "smoke", "resolved": CONFIGS["smoke"],
                                                       "data": "/elsewhere", "unlabeled": "", "data_sha256": None,
                                                       "unlabeled_sha256": None, "seeds": [0]})
    from conftest import REPO
    error = run_script("bench/effect.py", "--config=smoke", f"--out={out / 'effect'}", "--seeds=(0,)",
                       f"--data={os.path.relpath(out / 'd', REPO)}", check=False)
    assert error.returncode == 2 and 'data "/elsewhere" (now "/' in error.stderr, error.stderr  # absolute, not "../"


def test_a_data_folder_changed_between_invocations_is_refused(out):
    """Arms of later phases would read the changed folder, the earlier ones the old split
    (a fresh-eyes tester, #24): the record keeps what the folder's files hold, so a file
    only touched (its bytes the same) leaves the folder usable (a second tester)."""
    from noisy.data import source_sha256
    for split in ("train", "test"):
        (out / "d" / split).mkdir(parents=True)
    (out / "d" / "train" / "a.png").write_bytes(b"0")
    write_json(str(out / "effect" / "settings.json"), {
        "config": "smoke", "resolved": CONFIGS["smoke"], "data": str(out / "d"), "unlabeled": "",
        "data_sha256": source_sha256(str(out / "d")), "unlabeled_sha256": None, "seeds": [0]})
    args = ["bench/effect.py", "--config=smoke", f"--out={out / 'effect'}", "--seeds=(0,)", f"--data={out / 'd'}",
            "--phases=(2,)"]
    os.utime(out / "d" / "train" / "a.png", (1, 1))  # touched: the same bytes
    error = run_script(*args, check=False)
    assert error.returncode == 2 and "phases 2 and 4 build on phase 1" in error.stderr, error.stderr  # past the record
    (out / "d" / "train" / "b.png").write_bytes(b"1")
    error = run_script(*args, check=False)
    assert error.returncode == 2 and "holds runs made with other settings: data_sha256" in error.stderr, error.stderr


def test_a_folder_recorded_by_earlier_code_names_the_code_to_finish_it_with(out):
    record = {"config": "cpu", "resolved": CONFIGS["cpu"], "data": "/d", "unlabeled": "", "seeds": [0]}
    write_json(str(out / "settings.json"), dict(record, data_files="abc"))  # before the record kept data_sha256
    with pytest.raises(UserError, match=r"recorded by an earlier bench/effect.py \(its record has no data_sha256\): "
                                        r"finish it with the code that started it"):
        runner.check_record(str(out), dict(record, data_sha256="abc"))


def test_best_val_reads_the_finished_stage_not_an_abandoned_retrain(out):
    stage = out / "run" / "student"
    os.makedirs(stage / "resume")
    (stage / "history.csv").write_text("epoch,val_accuracy\n0,0.5\n1,0.7\n")
    (stage / "resume" / "history.csv").write_text("epoch,val_accuracy\n0,0.2\n")  # a retrain, abandoned
    assert runner.best_val(str(stage)) == (0.2, 0, 1)  # not finished yet: the live history
    write_json(str(stage / "config.json"), {"complete": True})
    assert runner.best_val(str(stage)) == (0.7, 1, 2)


@pytest.mark.parametrize("phases", ["(2,)", "(3, 4)"])
def test_phases_that_build_on_arm_4_are_refused_before_anything_runs_without_it(out, phases):
    """Arm 5 takes arm 4's teacher, labels and epochs, arm 6 its student: neither is made
    for a seed whose arm 4 is not finished, and no seed's stage starts."""
    args = ["bench/effect.py", "--config=smoke", f"--out={out}", "--seeds=(0, 1)", f"--phases={phases}"]
    os.makedirs(os.path.join(arms.folder(str(out), 0, 2), "student"))
    write_json(os.path.join(arms.folder(str(out), 0, 2), "student", "config.json"), {"complete": True})
    error = run_script(*args, check=False)  # seed 0's arm 4 is finished, seed 1's is not
    assert error.returncode == 2 and error.stderr.strip() == (
        f"error: --phases={phases}: phases 2 and 4 build on phase 1, and seed 1's arm 4 "
        f"({arms.folder(str(out), 1, 2)}/student) is not finished; add phase 1")
    assert not os.path.exists(arms.folder(str(out), 1, 2)) and not (out / "seed0" / "A-teacher-plain").exists()


@pytest.mark.parametrize("phases", ["()", "(0,)", "(5,)", "(1.0,)"])
def test_phases_outside_the_four_are_refused(out, phases):
    error = run_script("bench/effect.py", "--config=smoke", f"--out={out}", f"--phases={phases}", check=False)
    assert error.returncode == 2 and error.stderr.strip().startswith(f"error: --phases={phases}: expected some of")
    assert not os.listdir(out)


def test_tables_of_separate_seeds_merge_into_the_table_of_all_of_them(out):
    """bench/merge_tables.py: the seeds of runners' tables made in separate folders (a seed per
    session) averaged as one runner's table over those seeds is; tables of another
    configuration, or naming a seed twice, are refused."""
    result = lambda accuracy: {"accuracy": {arm: accuracy + arm / 100 for arm in arms.ARMS},  # noqa: E731
                               "ece": {arm: 0.03 for arm in arms.ARMS}, "corrupted": {arm: None for arm in arms.ARMS},
                               "pseudo": {"round 1, teacher 2": {"kept": 40000 + 10 * accuracy, "balanced": 30000}}}
    for seed, accuracy in ((0, 0.60), (1, 0.62), (2, 0.64)):
        table.write_table(str(out / f"s{seed}"), "cpu", {seed: result(accuracy)}, 60, settings=CONFIGS["cpu"])
    table.write_table(str(out / "s01"), "cpu", {0: result(0.60), 1: result(0.62)}, 60, settings=CONFIGS["cpu"])
    table.write_table(str(out / "full"), "full", {3: result(0.60)}, 60, settings=CONFIGS["full"])
    run_script("bench/merge_tables.py", f"--out={out / 'all'}", f"--tables=('{out}/s01/effect.json','{out}/s2/effect.json')")
    text = (out / "all" / "effect.md").read_text()
    assert "\nSeeds: 0, 1, 2." in text and "Merged by `python bench/merge_tables.py" in text and "Partial" not in text
    assert "| 2 | teacher, noise | 64.00 ± 2.00 | 62.00% | 64.00% | 66.00% |" in text
    assert "| 4 - 2 (student over its noised teacher) | 2.00 ± 0.00 | 0, 1, 2 |" in text
    assert "| 4 | 0.030 ± 0.000 | not scored | 0, 1, 2 |" in text
    assert json.loads((out / "all" / "effect.json").read_text())["seeds"] == [0, 1, 2]
    odd = json.loads((out / "s0" / "effect.json").read_text())
    odd["results"]["0"]["accuracy"].pop("6")  # a seed without a score or null for every arm
    (out / "odd.json").write_text(json.dumps(odd))
    for tables, message in ((f"('{out}/s01/effect.json','{out}/s1/effect.json')", "seed 1 is also in another"),
                            (f"('{out}/s0/effect.json','{out}/full/effect.json')", "other settings"),
                            (f"('{out}/s0/effect.md',)", "not readable JSON"),
                            (f"('{out}/odd.json',)", "not an effect.json of bench/effect.py")):
        error = run_script("bench/merge_tables.py", f"--out={out / 'refused'}", f"--tables={tables}", check=False)
        assert error.returncode == 2 and error.stderr.startswith("error: ") and message in error.stderr
        assert not (out / "refused").exists()


def test_the_table_counts_only_stages_the_runner_ran_under_the_folder_s_record(out):
    """A fresh-eyes tester (#24): a student trained again by hand with other settings and
    scored with the runner's evaluate.py settings, a seed folder copied in, a record edited:
    none of them is the runner's table."""
    import shutil
    a, b, c, d = arm_dirs(out, 0)
    scored(a, {"teacher": {"accuracy": 0.61}, "student": {"accuracy": 0.66}})
    scored(b, {"teacher": {"accuracy": 0.64}, "student": {"accuracy": 0.69}})
    assert table.collect(str(out), 0)["accuracy"] == {1: 0.61, 2: 0.64, 3: 0.66, 4: 0.69, 5: None, 6: None}
    # arm 3 made again by hand (a new run id) and scored as the runner scores: not the runner's
    finished_stages(a, student="student-2")
    results = json.load(open(os.path.join(a, "results.json")))
    results["student"] = {"accuracy": 1.0, "run_id": "student-2"}
    write_json(os.path.join(a, "results.json"), results)
    assert runner.evaluated(a, arms.EVALUATE_ARGS[os.path.basename(a)])  # its evaluation alone would pass
    assert table.collect(str(out), 0)["accuracy"] == {1: None, 2: 0.64, 3: None, 4: 0.69, 5: None, 6: None}
    ledger.vouch_results(str(out), a)  # as if the runner's evaluate.py had written it
    assert table.collect(str(out), 0)["accuracy"] == {1: 0.61, 2: 0.64, 3: None, 4: 0.69, 5: None, 6: None}
    ledger.vouch(str(out), a, "train_student.py")  # the runner's train_student.py ran and found it its own
    assert table.collect(str(out), 0)["accuracy"][3] == 1.0
    # arm 3's student replaced by a link to arm 4's: another folder than the one the runner ran
    os.rename(os.path.join(a, "student"), os.path.join(a, "student-aside"))
    os.symlink(os.path.join(b, "student"), os.path.join(a, "student"))
    assert table.collect(str(out), 0)["accuracy"][3] is None
    os.remove(os.path.join(a, "student"))
    os.rename(os.path.join(a, "student-aside"), os.path.join(a, "student"))
    assert table.collect(str(out), 0)["accuracy"][3] == 1.0
    # a seed folder copied or linked in: its stages are not where the runner ran them
    shutil.copytree(arms.seed_dir(str(out), 0), arms.seed_dir(str(out), 1), symlinks=True)
    assert table.collect(str(out), 1)["accuracy"] == {arm: None for arm in arms.ARMS}
    os.symlink("seed0", arms.seed_dir(str(out), 2))
    assert table.collect(str(out), 2)["accuracy"] == {arm: None for arm in arms.ARMS}
    # the record edited (another configuration): nothing in the folder was made under it
    settings = json.load(open(out / "settings.json"))
    write_json(str(out / "settings.json"), dict(settings, config="full", resolved=CONFIGS["full"]))
    assert table.collect(str(out), 0)["accuracy"] == {arm: None for arm in arms.ARMS}
    write_json(str(out / "settings.json"), dict(settings, seeds=[0, 1, 2]))  # more seeds: the same record
    assert table.collect(str(out), 0)["accuracy"][4] == 0.69


def test_a_round_s_pseudo_labels_are_counted_as_their_stage_wrote_them(out):
    from noisy.files import sha256 as file_sha256
    b = arms.folder(str(out), 0, 2)
    finished_stages(b)
    summary = os.path.join(b, "pseudo", "summary.json")
    write_json(summary, {"kept": 900, "balanced": 800})
    config = json.load(open(os.path.join(b, "pseudo", "config.json")))
    write_json(os.path.join(b, "pseudo", "config.json"), dict(config, files_sha256={"summary.json": file_sha256(summary)}))
    assert "round 1, teacher 2" not in table.collect(str(out), 0)["pseudo"]  # not the runner's yet
    vouched_stages(b)
    assert table.collect(str(out), 0)["pseudo"]["round 1, teacher 2"]["kept"] == 900
    write_json(summary, {"kept": 9999, "balanced": 800})  # edited since pseudo_label.py wrote it
    assert "round 1, teacher 2" not in table.collect(str(out), 0)["pseudo"]
    write_json(summary, {"kept": 900, "balanced": 800})
    write_json(os.path.join(b, "pseudo", "config.json"), {"stage": "pseudo", "complete": False})  # killed finishing
    assert table.collect(str(out), 0)["pseudo"] == {}


def test_a_shared_stage_is_linked_or_refused_never_taken_as_it_is(out):
    """A copy made with links followed leaves arm 5's teacher a folder of its own; a link
    elsewhere is not the stage the runner shares (a fresh-eyes tester, #24)."""
    target = out / "B" / "teacher"
    target.mkdir(parents=True)
    runner.link(str(out / "C"), "teacher", str(target))
    runner.link(str(out / "C"), "teacher", str(target))  # again: already so
    assert os.path.realpath(out / "C" / "teacher") == str(target.resolve())
    (out / "D" / "teacher").mkdir(parents=True)
    with pytest.raises(UserError, match=r"D/teacher should be a link to .*B/teacher .* but is a folder of its own; "
                                        r"delete .*D/teacher and rerun"):
        runner.link(str(out / "D"), "teacher", str(target))
    os.symlink(str(out / "elsewhere"), out / "E")
    with pytest.raises(UserError, match=r"but is a link to .*elsewhere"):
        runner.link(str(out), "E", str(target))


@pytest.mark.parametrize("change, message", [
    (lambda out: os.remove(out / "ledger.json"), "recorded by an earlier bench/effect.py, or no stage of it has "
                                                 "finished .*ledger.json"),
    (lambda out: write_json(str(out / "ledger.json"), {"seed0/B-teacher-noised/teacher": 3}),
     "is not a ledger of bench/effect.py; delete it"),
    (lambda out: write_json(str(out / "settings.json"), {"config": "cpu", "seeds": "0"}),
     "is not a record of bench/effect.py"),
    (lambda out: (out / "d" / "a.png").write_bytes(b"1"), "--data=.*/d changed since"),
])
def test_a_table_only_of_a_folder_it_cannot_vouch_for_is_refused_in_one_line(out, change, message):
    from noisy.data import source_sha256
    (out / "d").mkdir()
    (out / "d" / "a.png").write_bytes(b"0")
    write_settings(str(out), data=str(out / "d"), data_sha256=source_sha256(str(out / "d")))
    scored(arms.folder(str(out), 0, 2), {"teacher": {"accuracy": 0.9}, "student": {"accuracy": 0.95}})
    run_script("bench/effect.py", f"--out={out}", "--table_only=True")
    change(out)
    error = run_script("bench/effect.py", f"--out={out}", "--table_only=True", check=False)
    assert error.returncode == 2 and len(error.stderr.strip().splitlines()) == 1, error.stderr
    assert re.search(message, error.stderr), error.stderr
