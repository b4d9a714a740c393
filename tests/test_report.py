import numpy as np
import pytest

from noisy.report import metrics


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
