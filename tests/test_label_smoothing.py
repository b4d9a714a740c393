"""compile_model's label smoothing: the loss is cross entropy against
(1 - s) * target + s / classes, for one-hot labels and for soft pseudo-labels alike."""
import math

import keras
import numpy as np
import pytest

from noisy.training import compile_model, make_optimizer

# The fixed model predicts p = (1/2, 1/4, 1/8, 1/8) for every row, so that -log p is
# (1, 2, 3, 3) * ln 2 and each loss below is a multiple of ln 2 worked out by hand.
PREDICTED = np.array([0.5, 0.25, 0.125, 0.125])
LN2 = math.log(2)


def fixed_model(probs=PREDICTED):
    """Dense(softmax) with a zero kernel and bias log p: the output is p whatever the input."""
    inputs = keras.Input((3,))
    dense = keras.layers.Dense(len(probs), activation="softmax")
    model = keras.Model(inputs, dense(inputs))
    dense.set_weights([np.zeros((3, len(probs)), np.float32), np.log(probs).astype(np.float32)])
    return model


def loss_of(targets, smoothing):
    model = fixed_model()
    compile_model(model, make_optimizer("adam", 0.001, "constant", 10, 0), "false", label_smoothing=smoothing)
    targets = np.asarray(targets, np.float32)
    inputs = np.random.default_rng(0).normal(size=(len(targets), 3)).astype(np.float32)
    return model.evaluate(inputs, targets, batch_size=len(targets), verbose=0, return_dict=True)["loss"]


def test_the_fixed_model_predicts_the_known_softmax():
    model = fixed_model()
    assert model.predict(np.ones((2, 3), np.float32), verbose=0) == pytest.approx(np.tile(PREDICTED, (2, 1)), abs=1e-6)


def test_one_hot_loss_without_smoothing_is_minus_log_p_of_the_label():
    # class 1: -ln(1/4) = 2 ln 2 = 1.386294
    loss = loss_of([[0, 1, 0, 0]], 0.0)
    assert loss == pytest.approx(2 * LN2, rel=1e-5) and loss == pytest.approx(1.386294, abs=1e-5)


def test_one_hot_loss_with_smoothing_0_2_uses_the_smoothed_target():
    # (1 - 0.2) * (0, 1, 0, 0) + 0.2 / 4 = (0.05, 0.85, 0.05, 0.05):
    # (0.05 * 1 + 0.85 * 2 + 0.05 * 3 + 0.05 * 3) ln 2 = 2.05 ln 2 = 1.420953
    loss = loss_of([[0, 1, 0, 0]], 0.2)
    assert loss == pytest.approx(2.05 * LN2, rel=1e-5) and loss == pytest.approx(1.420953, abs=1e-5)
    # not 0.2 * target + 0.8 / 4 (p and 1 - p swapped: 2.2 ln 2), nor s / (classes - 1)
    # off the label (0.8 * 2 + 0.2 / 3 * (1 + 3 + 3) = 2.0667 ln 2)
    assert loss != pytest.approx(2.2 * LN2, rel=1e-3) and loss != pytest.approx((1.6 + 0.2 / 3 * 7) * LN2, rel=1e-3)


def test_soft_target_loss_without_smoothing_is_the_cross_entropy():
    # target (0.6, 0.1, 0.3, 0): (0.6 * 1 + 0.1 * 2 + 0.3 * 3) ln 2 = 1.7 ln 2 = 1.178350
    assert loss_of([[0.6, 0.1, 0.3, 0.0]], 0.0) == pytest.approx(1.7 * LN2, rel=1e-5)


def test_soft_target_loss_with_smoothing_0_2_pulls_the_target_toward_uniform():
    # 0.8 * (0.6, 0.1, 0.3, 0) + 0.05 = (0.53, 0.13, 0.29, 0.05):
    # (0.53 * 1 + 0.13 * 2 + 0.29 * 3 + 0.05 * 3) ln 2 = 1.81 ln 2 = 1.254590
    loss = loss_of([[0.6, 0.1, 0.3, 0.0]], 0.2)
    assert loss == pytest.approx(1.81 * LN2, rel=1e-5) and loss == pytest.approx(1.254590, abs=1e-5)


def test_a_batch_loss_is_the_mean_of_its_rows_with_smoothing():
    # the one-hot and the soft row above, with s = 0.2 and with s = 0: they differ by
    # ((2.05 + 1.81) - (2 + 1.7)) / 2 ln 2 = 0.08 ln 2 = 0.055452
    rows = [[0, 1, 0, 0], [0.6, 0.1, 0.3, 0.0]]
    smoothed, plain = loss_of(rows, 0.2), loss_of(rows, 0.0)
    assert smoothed == pytest.approx((2.05 + 1.81) / 2 * LN2, rel=1e-5)
    assert plain == pytest.approx((2 + 1.7) / 2 * LN2, rel=1e-5)
    assert smoothed - plain == pytest.approx(0.08 * LN2, abs=1e-5)


def test_training_uses_the_smoothed_loss():
    # fit's reported loss is the same smoothed cross entropy (a rate of 1e-12 leaves the
    # weights unchanged, so the one step reports the loss of the fixed prediction)
    model = fixed_model()
    compile_model(model, make_optimizer("sgd", 1e-12, "constant", 10, 0), "false", label_smoothing=0.2)
    inputs = np.zeros((1, 3), np.float32)
    history = model.fit(inputs, np.array([[0, 1, 0, 0]], np.float32), epochs=1, verbose=0)
    assert history.history["loss"][0] == pytest.approx(2.05 * LN2, rel=1e-5)
