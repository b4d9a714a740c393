import numpy as np
import pytest

from noisy.metrics import metrics


def test_metrics_on_a_hand_made_case():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    labels = np.array([0, 1, 1, 1])
    m = metrics(probs, labels, ece_bins=10)
    assert m["accuracy"] == 0.75
    assert m["per_class_accuracy"] == [1.0, 2 / 3]
    assert m["confusion"] == [[1, 0], [1, 2]]
    assert m["loss"] == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.7, 0.8])))
    # Bins: 0.9 (1 right), 0.6 (wrong), 0.7 (right), 0.8 (right), each a quarter of the images.
    assert m["ece"] == pytest.approx((0.1 + 0.6 + 0.3 + 0.2) / 4)


def test_perfectly_calibrated_predictions_have_near_zero_ece():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, 20000)
    correct = rng.random(20000) < confidence
    labels = np.where(correct, 0, 1)
    probs = np.stack([confidence, 1 - confidence], 1)
    assert metrics(probs, labels)["ece"] < 0.02


# ----------------------------------------------------------------------------- plots
def test_training_curves_have_whole_epoch_ticks(tmp_path):
    from noisy.plots import curves_figure
    history = tmp_path / "history.csv"
    history.write_text("epoch,loss,accuracy,val_loss,val_accuracy\n0,1.2,0.4,1.3,0.35\n1,0.9,0.6,1.0,0.55\n")
    one = tmp_path / "one.csv"
    one.write_text("epoch,loss,accuracy\n0,1.2,0.4\n")
    for files, epochs in (({"teacher": str(history), "student": str(tmp_path / "missing.csv")}, [1, 2]),
                          ({"teacher": str(one)}, [1])):
        fig = curves_figure(files)
        fig.canvas.draw()
        for ax in fig.axes:
            lo, hi = ax.get_xlim()
            assert [t for t in ax.get_xticks() if lo <= t <= hi] == epochs  # not 1.0, 1.2, ... or 0.96, 0.98, ...


def test_corruption_panels_are_a_grid_of_families_with_the_tested_severities(tmp_path):
    from noisy.corruptions import CORRUPTIONS, FAMILIES
    from noisy.plots import corruptions_figure, plot_corruptions
    robustness = {stage: {name: {"1": 0.6, "3": 0.5, "5": 0.3} for name in CORRUPTIONS}
                  for stage in ("teacher", "student")}
    fig = corruptions_figure(robustness, {"teacher": 0.7, "student": 0.8})
    grid = fig.axes[0].get_gridspec()
    assert (grid.nrows, grid.ncols) == (len(FAMILIES), 5)  # the digital family has 5 corruptions
    shown = [ax for ax in fig.axes if ax.get_visible() and ax.axison]
    assert sorted(ax.get_title() for ax in shown) == sorted(CORRUPTIONS)
    for ax in shown:
        assert list(ax.get_xticks()) == [0, 1, 3, 5]
        assert [t.get_text() for t in ax.get_xticklabels()] == ["clean", "1", "3", "5"]
    assert [ax.get_ylabel().split("\n")[0] for ax in fig.axes[::5]] == list(FAMILIES)
    assert "'clean' = the uncorrupted test images" in fig._suptitle.get_text()
    plot_corruptions(robustness, {"teacher": 0.7, "student": 0.8}, str(tmp_path / "c.png"))
    assert (tmp_path / "c.png").stat().st_size > 0


# ----------------------------------------------------------------------------- results.md
def stage_results(accuracy, tta_accuracy, corruption):
    from noisy.corruptions import CORRUPTIONS, family_means
    by_name = {name: {"1": corruption + 0.1, "5": corruption - 0.1} for name in CORRUPTIONS}
    by_name["fog"] = {"1": corruption + 0.3, "5": corruption + 0.1}  # weather: 0.2 above the rest / 3
    means = family_means(by_name)
    return {"accuracy": accuracy, "loss": 0.9, "ece": 0.05, "per_class_accuracy": [0.5, None, 0.75],
            "tta_accuracy": tta_accuracy, "tta_loss": 0.8, "tta_ece": 0.04, "model": "tiny", "noise": False,
            "corruption_accuracy": by_name, "mean_corruption_accuracy": means.pop("all"),
            "family_corruption_accuracy": means}


def test_results_page_opens_with_the_summary_a_reader_wants():
    from noisy.results_page import results_markdown
    results = {"test_images": 10000, "corruption_images": 2000, "students": ["student", "student-wide"],
               "teacher": stage_results(0.6080, 0.6150, 0.40),
               "student": dict(stage_results(0.7016, 0.7100, 0.45), noise=True),
               "student-wide": dict(stage_results(0.7210, 0.7300, 0.47), noise=True, model="small")}
    pseudo = {"pool": 46000, "kept": 30500, "balanced": 41230, "kept_per_class": [20000, 0, 10500],
              "accuracy_kept": 0.8812, "accuracy_balanced": 0.8523, "threshold": 0.75, "soft": True}
    page = results_markdown(results, pseudo, ["plane", "car", "bird"], "Results for runs/x")
    summary = page[:page.index("## Tables")]
    assert page.startswith("# Results for runs/x\n\n## Summary\n")
    assert ("Test accuracy (10,000 images): teacher 60.80%, student 70.16% (+9.36 points), "
            "student-wide 72.10% (+11.30 points).") in summary
    assert "(the mean of each image's and its mirror's probabilities): teacher 61.50%, student 71.00% " \
           "(+9.50 points)" in summary
    assert ("Pseudo-labels (soft targets, threshold 0.75): 30,500 of 46,000 pool images kept (88.12% correct), "
            "41,230 after balancing (85.23% correct).") in summary
    assert "Classes that got no pseudo-label: car." in summary
    assert "Mean accuracy over the 15 corruptions and severities 1, 5 (2,000 test images): teacher " in summary
    for name in ("confusion", "curves", "corruptions"):
        assert f"![{name}]({name}.png)" in summary
    # The article's table, then one row per model in the others.
    assert ("| teacher model | noise | test loss / accuracy | student model | noise | test loss / accuracy "
            "| student-wide model | noise | test loss / accuracy |") in page
    assert "| tiny | None | 0.9000 / 60.80% | tiny | Yes | 0.9000 / 70.16% | small | Yes | 0.9000 / 72.10% |" in page
    assert "| student | 70.16% | 0.9000 | 0.0500 | 71.00% | 0.8000 | 0.0400 |" in page
    weather = 0.40 + 0.2 / 3
    assert f"| weather (snow, frost, fog) | {weather:.2%} | " in page
    assert "| noise (gaussian_noise, shot_noise, impulse_noise) | 40.00% | 45.00% | 47.00% |" in page
    assert "| mean over the 15 corruptions and severities 1, 5 | " in page and "frost is procedural" in page
    assert "| impulse_noise | 5 | 30.00% | 35.00% | 37.00% |" in page
    assert "| car | - | - | - |" in page


def test_results_page_of_a_teacher_alone_without_tta_corruptions_or_plots():
    from noisy.results_page import results_markdown
    teacher = {k: v for k, v in stage_results(0.5, 0.5, 0.4).items()
               if not k.startswith(("tta_", "corruption", "mean_corr", "family"))}
    page = results_markdown({"test_images": 80, "teacher": teacher}, None, ["a", "b", "c"], "T", plots=())
    assert "Test accuracy (80 images): teacher 50.00%." in page
    assert "TTA" not in page and "corruption" not in page and "Pseudo" not in page and "![" not in page
    assert "| teacher model | noise | test loss / accuracy |\n|---|---|---|\n| tiny | None | 0.9000 / 50.00% |" in page


def test_results_page_without_hidden_labels_says_pseudo_label_accuracy_is_unknown():
    from noisy.results_page import results_markdown
    pseudo = {"pool": 12, "kept": 12, "balanced": 12, "kept_per_class": [4, 4, 4], "threshold": 0.0, "soft": False}
    results = {"test_images": 80, "corruption_images": 80, "students": ["student"],
               "teacher": stage_results(0.5, 0.5, 0.4),
               "student": stage_results(0.55, 0.56, 0.4)}
    page = results_markdown(results, pseudo, ["a", "b", "c"], "T")
    assert "12 of 12 pool images kept, 12 after balancing (their accuracy is unknown: the pool has no labels)." in page
    assert "Every class got pseudo-labels." in page and "hard targets" in page
