"""evaluate.py: flip test-time augmentation, several students of one teacher, and the
page a reader gets (one real 1-epoch run on the synthetic data, scored three ways)."""
import json
import os
import shutil

import numpy as np
import pytest

from conftest import run_script
from noisy.metrics import tta_probabilities
from test_pipeline import one_line_error


def test_tta_averages_each_image_with_its_horizontal_mirror():
    # Two 2x2 one-channel images; the "model" reads the top-left pixel only, so the
    # horizontal mirror shows it the top-right one (a vertical flip would give bottom-left).
    images = np.array([[[1, 7], [3, 9]], [[6, 2], [4, 8]]], np.float64)[..., None]
    calls = []

    def predict_fn(x):
        calls.append(x[:, :, :, 0].tolist())
        p = x[:, 0, 0, 0] / 10
        return np.stack([p, 1 - p], 1)

    probs = tta_probabilities(predict_fn, images)
    assert probs[:, 0] == pytest.approx([(0.1 + 0.7) / 2, (0.6 + 0.2) / 2])
    assert probs.sum(1) == pytest.approx([1, 1])
    assert calls[1] == [[[7, 1], [9, 3]], [[2, 6], [8, 4]]]
    again = tta_probabilities(predict_fn, images, plain=np.array([[0.3, 0.7], [0.5, 0.5]]))
    assert again[:, 0] == pytest.approx([(0.3 + 0.7) / 2, (0.5 + 0.2) / 2])  # plain reused, mirror predicted


@pytest.fixture(scope="module")
def run_with_two_students(finished_run_template, tmp_path_factory):
    """The finished 1-epoch run, and a second student folder copied from the first (scored
    as a student of the same teacher)."""
    run = str(tmp_path_factory.mktemp("evaluate") / "run")
    shutil.copytree(finished_run_template[1], run)
    shutil.copytree(os.path.join(run, "student"), os.path.join(run, "student2"))
    return run


@pytest.mark.xdist_group("run_with_two_students")  # one worker makes the run once
def test_every_student_is_scored_with_and_without_tta(run_with_two_students):
    import keras
    run = run_with_two_students
    out = run_script("evaluate.py", f"--run_dir={run}", "--corruption_images=40")
    results = json.load(open(os.path.join(run, "results.json")))
    assert results["students"] == ["student", "student2"]
    assert results["student2"]["accuracy"] == results["student"]["accuracy"]  # the same model file
    assert "| teacher model | noise | test loss / accuracy | student model | noise | test loss / accuracy " \
           "| student2 model | noise | test loss / accuracy |" in out.stdout
    # Flip TTA as the model gives it: the mean of the probabilities of each image and its mirror.
    images, labels = np.load(os.path.join(run, "data", "test_images.npy")), np.load(os.path.join(run, "data",
                                                                                             "test_labels.npy"))
    model = keras.models.load_model(os.path.join(run, "teacher", "model.keras"))
    probs = (model.predict(images, verbose=0) + model.predict(images[:, :, ::-1], verbose=0)) / 2
    teacher = results["teacher"]
    assert teacher["tta_accuracy"] == pytest.approx((probs.argmax(1) == labels).mean())
    assert teacher["tta_loss"] == pytest.approx(-np.log(np.clip(probs[np.arange(80), labels], 1e-12, 1)).mean(),
                                                rel=1e-4)
    assert {"tta_ece", "tta_per_class_accuracy", "tta_confusion", "ece", "loss"} <= set(teacher)
    # All 15 corruptions, one progress line each, per family and overall.
    assert results["corruption_images"] == 40 and len(teacher["corruption_accuracy"]) == 15
    assert set(teacher["family_corruption_accuracy"]) == {"noise", "blur", "weather", "digital"}
    lines = [line for line in out.stdout.splitlines() if line.startswith("corruption ")]
    assert len(lines) == 15 and lines[2].startswith("corruption 3/15 impulse_noise: teacher ")
    assert ", student " in lines[2] and ", student2 " in lines[2]
    page = open(os.path.join(run, "results.md")).read()
    assert page.startswith(f"# Results for {run}\n\n## Summary\n\n- Test accuracy (80 images): teacher ")
    summary = json.load(open(os.path.join(run, "pseudo", "summary.json")))
    assert f"{summary['kept']} of 280 pool images kept ({summary['accuracy_kept']:.2%} correct)" in page
    assert "![corruptions](corruptions.png)" in page and "| weather (snow, frost, fog) |" in page


@pytest.mark.xdist_group("run_with_two_students")  # one worker makes the run once
def test_chosen_students_only_and_a_student_of_another_teacher_is_refused(run_with_two_students):
    run = run_with_two_students
    run_script("evaluate.py", f"--run_dir={run}", "--students=student2", "--severities=()", "--tta=False",
               "--plots=False")
    results = json.load(open(os.path.join(run, "results.json")))
    assert results["students"] == ["student2"] and "student" not in results
    assert "tta_accuracy" not in results["student2"] and "corruption_accuracy" not in results["teacher"]
    # A student folder whose config names another teacher run is refused, naming both runs.
    config_file = os.path.join(run, "student2", "config.json")
    config = json.load(open(config_file))
    teacher_run = config["identity"]["inputs"]["teacher"]
    config["teacher"]["run_id"] = config["identity"]["inputs"]["teacher"] = "20260101T000000-0badcafe"
    json.dump(config, open(config_file, "w"))
    error = one_line_error(run_script("evaluate.py", f"--run_dir={run}", check=False))  # 'all' finds it
    assert f"{run}/student2 was made from teacher run 20260101T000000-0badcafe, but {run}/teacher holds " \
           f"teacher run {teacher_run}" in error
    assert "--student=student2 --retrain=True" in error
    error = one_line_error(run_script("evaluate.py", f"--run_dir={run}", "--students=student,nobody", check=False))
    assert f"--students=student,nobody: {run}/nobody holds no stage; finished students in {run}: student, student2" \
        in error
