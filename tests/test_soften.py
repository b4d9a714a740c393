"""soften(probs, T): the teacher's probabilities at a temperature, p^(1/T) renormalised."""
import math

import numpy as np
import pytest

from noisy.pseudo_labels import soften

ROW = np.array([[0.5, 0.3, 0.2]], np.float32)  # asymmetric: a reversed or unnormalised row shows


def test_temperature_0_5_squares_and_renormalises():
    # (0.25, 0.09, 0.04) / 0.38
    assert soften(ROW, 0.5)[0] == pytest.approx([25 / 38, 9 / 38, 4 / 38], abs=1e-6)
    assert soften(ROW, 0.5)[0] == pytest.approx([0.657895, 0.236842, 0.105263], abs=1e-6)


def test_temperature_2_takes_square_roots_and_renormalises():
    roots = [math.sqrt(0.5), math.sqrt(0.3), math.sqrt(0.2)]  # 0.707107, 0.547723, 0.447214
    assert soften(ROW, 2)[0] == pytest.approx([r / sum(roots) for r in roots], abs=1e-6)
    assert soften(ROW, 2)[0] == pytest.approx([0.415446, 0.321803, 0.262751], abs=1e-6)


def test_temperature_1_returns_the_input_unchanged():
    probs = np.array([[0.5, 0.3, 0.2], [0.05, 0.9, 0.05]], np.float32)
    out = soften(probs, 1)
    assert out.dtype == np.float32
    assert np.array_equal(out, np.array([[0.5, 0.3, 0.2], [0.05, 0.9, 0.05]], np.float32))
    assert np.array_equal(soften(probs, 1.0), probs)


def test_the_input_is_not_modified():
    probs = ROW.copy()
    soften(probs, 0.5)
    assert np.array_equal(probs, ROW)


def test_tiny_probabilities_at_temperature_0_1_stay_finite():
    # p^10 renormalised: 0.6^10 = 0.0060466, 0.4^10 = 0.00010486 -> (0.982954, 0.017046);
    # 1e-12^10 and 1e-25^10 are far below float32 and come out as exactly 0, not NaN.
    out = soften(np.array([[0.6, 0.4, 1e-12, 1e-25]], np.float32), 0.1)
    assert np.isfinite(out).all() and out.dtype == np.float32
    assert out[0] == pytest.approx([0.6**10 / (0.6**10 + 0.4**10), 0.4**10 / (0.6**10 + 0.4**10), 0, 0], abs=1e-6)
    assert out[0] == pytest.approx([0.982954, 0.017046, 0, 0], abs=1e-6)


def test_a_near_uniform_row_at_a_very_low_temperature_becomes_one_hot_not_nan():
    # 100 classes near 0.01 at T = 0.005: p^200 ~ 1e-400 underflows even float64 when
    # computed directly (0 / 0 = NaN); in log space the largest p takes (nearly) all.
    rng = np.random.default_rng(7)
    probs = rng.uniform(0.9, 1.1, (3, 100))
    probs = (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)
    out = soften(probs, 0.005)
    assert np.isfinite(out).all()
    assert out.sum(axis=1) == pytest.approx([1, 1, 1], abs=1e-6)
    assert np.array_equal(out.argmax(axis=1), probs.argmax(axis=1))
    assert (out.max(axis=1) > 10 * probs.max(axis=1)).all()  # sharpened: the top class far above 1 %


@pytest.mark.parametrize("temperature", [0.1, 0.5, 0.7, 2, 5])
def test_rows_still_sum_to_one(temperature):
    probs = np.random.default_rng(3).dirichlet([0.3] * 10, size=200).astype(np.float32)
    assert soften(probs, temperature).sum(axis=1) == pytest.approx(np.ones(200), abs=1e-5)


@pytest.mark.parametrize("temperature", [0.1, 0.5, 0.7, 2, 5])
def test_the_argmax_never_changes(temperature):
    probs = np.random.default_rng(3).dirichlet([0.3] * 10, size=200).astype(np.float32)
    assert np.array_equal(soften(probs, temperature).argmax(axis=1), probs.argmax(axis=1))


def test_a_low_temperature_sharpens_and_a_high_one_flattens():
    # the top probability 0.5 becomes 0.657895 at T = 0.5 and 0.415447 at T = 2
    assert soften(ROW, 0.5)[0, 0] > 0.5 > soften(ROW, 2)[0, 0]
    assert soften(ROW, 100)[0] == pytest.approx([1 / 3] * 3, abs=0.01)  # T -> infinity: uniform
