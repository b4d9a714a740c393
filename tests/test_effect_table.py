"""The experiment runner (bench/effect.py) and its table (bench/table.py), on run folders
written here as the stage scripts and evaluate.py leave them (no training)."""
import json
import os

import pytest

from bench import table
from bench.effect import CONFIGS
from conftest import run_script


def write_json(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(value, f)


def stages(run_dir, teacher="t1", pseudo="p1", student="s1", pseudo_teacher=None, student_pseudo=None):
    """A run folder's config.json files: a teacher, its pseudo-labels, a student of both."""
    write_json(os.path.join(run_dir, "teacher", "config.json"), {"run_id": teacher, "complete": True})
    write_json(os.path.join(run_dir, "pseudo", "config.json"), {"run_id": pseudo, "complete": True,
                                                                "teacher": {"run_id": pseudo_teacher or teacher}})
    write_json(os.path.join(run_dir, "student", "config.json"), {
        "run_id": student, "complete": True, "epochs": 3, "teacher": {"run_id": teacher},
        "pseudo": {"run_id": student_pseudo or pseudo}})


def scored(run_dir, teacher_scores, student_scores, settings=None, **ids):
    """results.json as the runner's evaluate.py writes it, of the stages there now."""
    stages(run_dir, **ids)
    write_json(os.path.join(run_dir, "results.json"), {
        "teacher": dict(teacher_scores, run_id=ids.get("teacher", "t1")),
        "student": dict(student_scores, run_id=ids.get("student", "s1")),
        "settings": settings or dict(table.evaluation_settings(table.EVALUATE_ARGS[os.path.basename(run_dir)]),
                                     run_dir=run_dir)})


def test_the_table_counts_an_arm_only_where_its_scores_are_of_the_models_there_now(tmp_path):
    out = str(tmp_path)
    a, b, c, d = (table.folder(out, 0, arm) for arm in (1, 2, 5, 6))
    scored(b, {"accuracy": 0.64, "ece": 0.02, "corruption_accuracy": {"fog": {"1": 0.6, "3": 0.5},
                                                                      "contrast": {"1": 0.1}}},  # trained on: out
           {"accuracy": 0.69, "ece": 0.04, "corruption_accuracy": {"fog": {"1": 0.6, "3": 0.56}}})
    write_json(os.path.join(b, "pseudo", "summary.json"), {"kept": 900, "balanced": 800, "accuracy_kept": 0.7})
    scored(c, {"accuracy": 0.64}, {"accuracy": 0.67})
    scored(a, {"accuracy": 0.61}, {"accuracy": 0.66}, settings={"ece_bins": 2})  # a hand-run, other settings
    scored(d, {"accuracy": 0.69}, {"accuracy": 0.70}, teacher="s1", student="s9", pseudo="p9")
    write_json(os.path.join(d, "pseudo", "summary.json"), {"kept": 1, "balanced": 1})
    result = table.collect(out, 0)
    assert result["accuracy"] == {1: None, 2: 0.64, 3: None, 4: 0.69, 5: 0.67, 6: 0.70}
    assert result["ece"][4] == 0.04 and result["ece"][5] is None  # not invented
    assert result["corrupted"][2] == pytest.approx(0.55) and result["corrupted"][5] is None
    assert set(result["pseudo"]) == {"round 1, teacher 2", "round 2, teacher 4"}
    stages(d, teacher="s1", student="s10", pseudo="p9")  # arm 6 trained again since it was scored
    stages(c, student_pseudo="p0")  # arm 5's student made from other pseudo-labels than the folder's
    write_json(os.path.join(b, "pseudo", "config.json"), {"run_id": "p1", "complete": False})  # killed relabeling
    result = table.collect(out, 0)
    assert result["accuracy"] == {arm: None for arm in table.ARMS} and result["pseudo"] == {"round 2, teacher 4": {
        "kept": 1, "balanced": 1}}
    stages(d, teacher="s1", student="s10", pseudo="p9", pseudo_teacher="s0")  # labeled by another teacher
    assert table.collect(out, 0)["pseudo"] == {}


def test_a_partial_table_averages_what_exists_and_names_what_is_missing(tmp_path):
    none = {arm: None for arm in table.ARMS}
    pseudo = {"round 1, teacher 2": {"kept": 41000, "balanced": 30000, "accuracy_kept": 0.675}}
    seed0 = {"accuracy": {1: 0.60, 2: 0.64, 3: 0.65, 4: 0.70, 5: 0.66, 6: None}, "pseudo": pseudo,
             "ece": {**none, 4: 0.04}, "corrupted": {**none, 2: 0.55, 4: 0.58}}
    seed1 = {"accuracy": {1: None, 2: 0.66, 3: None, 4: 0.70, 5: None, 6: None}, "pseudo": pseudo,
             "ece": {**none, 4: 0.03}, "corrupted": none}
    table.write_table(str(tmp_path), "cpu", {0: seed0, 1: seed1}, "Command: test.", CONFIGS["cpu"])
    text = (tmp_path / "effect.md").read_text()
    assert "**Partial table**" in text and "Seeds: 0, 1." in text
    assert "| 2 | teacher, noise | 65.00 ± 1.41 | 64.00% | 66.00% |" in text
    assert "| 5 | student of 2, no noise | 66.00 (one seed) | 66.00% | - |" in text
    assert "| 6 | round 2: student of 4, noise | - | - | - |" in text
    assert "| 4 - 2 (student over its noised teacher) | 5.00 ± 1.41 | 0, 1 |" in text  # +6 and +4
    assert "| 4 - 5 (noise in the student) | 4.00 (one seed) | 0 |" in text
    assert "| 4 | 0.035 ± 0.007 | 58.00 (one seed) | 0, 1 |" in text
    assert "Arm 4 - arm 2 under corruption: +3.00 points, clean +6.00 (mean over seeds 0; 0.50 of the clean gain)." \
        in text
    assert "| round 1, teacher 2 | 41000 | 67.50 ± 0.00 | 30000 | n/a | 0, 1 |" in text
    saved = json.loads((tmp_path / "effect.json").read_text())
    assert saved["missing"] == ["arm 1 seed 1", "arm 3 seed 1", "arm 5 seed 1", "arm 6 seed 0", "arm 6 seed 1"]


def test_tables_of_separate_seeds_merge_into_the_table_of_all_and_others_are_refused(tmp_path):
    def result(accuracy):
        return {"accuracy": {arm: accuracy + arm / 100 for arm in table.ARMS}, "pseudo": {},
                "ece": {arm: 0.03 for arm in table.ARMS}, "corrupted": {arm: None for arm in table.ARMS}}
    for name, seeds, config in (("s01", (0, 1), "cpu"), ("s2", (2,), "cpu"), ("full", (3,), "full")):
        table.write_table(str(tmp_path / name), config, {s: result(0.6 + s / 50) for s in seeds}, "-", CONFIGS[config])
    run_script("bench/table.py", f"--out={tmp_path / 'all'}",
               f"--tables=('{tmp_path}/s01/effect.json','{tmp_path}/s2/effect.json')")
    text = (tmp_path / "all" / "effect.md").read_text()
    assert "Seeds: 0, 1, 2." in text and "Merged by `python bench/table.py" in text and "Partial" not in text
    assert "| 2 | teacher, noise | 64.00 ± 2.00 | 62.00% | 64.00% | 66.00% |" in text
    for tables, message in ((("s01", "s01"), "seed 0 is also in another"), (("s2", "full"), "other settings")):
        error = run_script("bench/table.py", f"--out={tmp_path / 'no'}",
                           f"--tables={tuple(str(tmp_path / t / 'effect.json') for t in tables)}", check=False)
        assert error.returncode == 2 and error.stderr.startswith("error: ") and message in error.stderr, error.stderr
        assert not (tmp_path / "no").exists()


def test_table_only_writes_the_table_of_the_folder_s_own_record(tmp_path):
    write_json(str(tmp_path / "settings.json"), {"config": "full", "resolved": CONFIGS["full"], "data": "cifar10",
                                                  "unlabeled": "", "seeds": [0, 3]})
    scored(table.folder(str(tmp_path), 0, 2), {"accuracy": 0.9}, {"accuracy": 0.95})
    run_script("bench/effect.py", "--config=cpu", f"--out={tmp_path}", "--table_only=True", "--seeds=(0, 1)")
    text = (tmp_path / "effect.md").read_text()
    assert text.startswith("# Noisy Student effect: config 'full'") and "| seed 0 | seed 3 |" in text
    assert "| 4 | student of 2, noise | 95.00 (one seed) | 95.00% | - |" in text
    error = run_script("bench/effect.py", f"--out={tmp_path / 'none'}", "--table_only=True", check=False)
    assert error.returncode == 2 and error.stderr.startswith("error: ") and len(error.stderr.splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--data={tmp}/missing"], "--data: '{tmp}/missing' is neither 'cifar10', a .npz file nor an existing folder"),
    (["--seeds=(1, 1)"], "--seeds=(1, 1): expected distinct integers in [0, 2**32)"),
    (["--phases=(5,)"], "--phases=(5,): expected some of (1, 2, 3, 4)"),
    (["--train_args=('--seed=7',)"], "--train_args: --seed is set by the runner itself (per seed or arm)"),
    (["--train_args=('--num_labeled=9',)"], "--train_args: --num_labeled is set by the configuration for the "
                                            "teacher or the student alone"),
    (["--phases=(2,)"], "--phases=(2,): phases 2 and 4 build on phase 1, and seed 0's arm 4 ({tmp}/effect/seed0/"
                        "B-teacher-noised/student) is not finished; add phase 1"),
    (["--student_images=5", "--data={tmp}/d"], "{tmp}/effect holds runs made with other settings: resolved.student_images 600 (now 5); use another --out"),
])
def test_a_bad_setting_or_another_configuration_is_refused_in_one_line_before_anything_is_written(
        tmp_path, args, message):
    (tmp_path / "d" / "train").mkdir(parents=True)
    (tmp_path / "d" / "test").mkdir()
    out = tmp_path / "effect"
    if "--data={tmp}/d" in args:  # a folder that holds the smoke configuration's runs
        write_json(str(out / "settings.json"), {"config": "smoke", "resolved": CONFIGS["smoke"],
                                                "data": str(tmp_path / "d"), "unlabeled": "", "seeds": [0]})
    before = sorted(os.listdir(out)) if out.exists() else None
    error = run_script("bench/effect.py", "--config=smoke", f"--out={out}", "--seeds=(0,)",
                       *(a.format(tmp=tmp_path) for a in args), check=False)
    assert error.returncode == 2 and len(error.stderr.strip().splitlines()) == 1, error.stderr
    assert error.stderr.startswith("error: " + message.format(tmp=tmp_path)), error.stderr
    assert (sorted(os.listdir(out)) if out.exists() else None) == before
