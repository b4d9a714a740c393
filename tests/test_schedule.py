"""The learning rate per step of make_optimizer's schedules, against their closed forms,
and the per-epoch rate that fit's checkpoint history records."""
import math

import keras
import numpy as np
import pytest

from noisy.streams import NoisyStream
from noisy.data import one_hot
from noisy.training import compile_model, fit, make_optimizer

LR, TOTAL, WARMUP = 0.3, 40, 7  # asymmetric: a swapped warmup/decay or a wrong cap shows


def rate_at(optimizer, step):
    """The rate the optimizer applies at `step` (its iteration counter set by hand)."""
    optimizer.iterations.assign(step)
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def cosine(step, lr=LR, total=TOTAL, warmup=WARMUP):
    """The closed form, written out here: linear from 0 to lr over `warmup` steps, then
    lr * 0.5 * (1 + cos(pi * (t - w) / (T - w))) down to 0 at T."""
    if step < warmup:
        return lr * step / warmup
    return lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total - warmup)))


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_cosine_warmup_starts_at_zero(name):
    assert rate_at(make_optimizer(name, LR, "cosine", TOTAL, WARMUP), 0) == 0.0


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_cosine_warmup_is_linear_up_to_the_peak(name):
    optimizer = make_optimizer(name, LR, "cosine", TOTAL, WARMUP)
    # 0.3 * t / 7, by hand: 1 -> 0.042857, 3 -> 0.128571, 5 -> 0.214286
    for step, expected in [(1, 0.3 / 7), (3, 0.9 / 7), (5, 1.5 / 7), (6, 1.8 / 7)]:
        assert rate_at(optimizer, step) == pytest.approx(expected, rel=1e-6), f"step {step}"


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_cosine_warmup_reaches_the_peak_at_warmup_steps(name):
    assert rate_at(make_optimizer(name, LR, "cosine", TOTAL, WARMUP), WARMUP) == pytest.approx(0.3, rel=1e-6)


def test_cosine_decays_by_the_closed_form_after_warmup():
    optimizer = make_optimizer("sgd", LR, "cosine", TOTAL, WARMUP)
    for step in (8, 10, 16, 23, 30, 39):
        assert rate_at(optimizer, step) == pytest.approx(cosine(step), rel=1e-5, abs=1e-7), f"step {step}"
    # Two by hand: halfway through the 33 decay steps (t = 7 + 16.5) the rate would be 0.15;
    # at t = 10 it is 0.15 * (1 + cos(3 pi / 33)) = 0.293924.
    assert rate_at(optimizer, 10) == pytest.approx(0.293924, abs=1e-6)
    assert cosine(23.5) == pytest.approx(0.15)


def test_cosine_reaches_zero_at_total_steps():
    optimizer = make_optimizer("sgd", LR, "cosine", TOTAL, WARMUP)
    assert rate_at(optimizer, TOTAL) == pytest.approx(0.0, abs=1e-9)
    assert rate_at(optimizer, TOTAL - 1) == pytest.approx(0.3 * 0.5 * (1 + math.cos(math.pi * 32 / 33)), rel=1e-4)


def test_cosine_without_warmup_starts_at_the_peak():
    optimizer = make_optimizer("adam", LR, "cosine", TOTAL, 0)
    assert rate_at(optimizer, 0) == pytest.approx(0.3, rel=1e-6)
    assert rate_at(optimizer, 10) == pytest.approx(0.15 * (1 + math.cos(math.pi * 10 / 40)), rel=1e-6)  # 0.256066
    assert rate_at(optimizer, 20) == pytest.approx(0.15, rel=1e-6)


def test_cosine_warmup_is_capped_at_half_the_steps():
    # 30 warmup steps of 43 are capped to 43 // 2 = 21: the peak at step 21, not 30 (nor 22).
    optimizer = make_optimizer("sgd", LR, "cosine", 43, 30)
    assert rate_at(optimizer, 10) == pytest.approx(0.3 * 10 / 21, rel=1e-6)  # uncapped: 0.1
    assert rate_at(optimizer, 21) == pytest.approx(0.3, rel=1e-6)
    assert rate_at(optimizer, 32) == pytest.approx(0.15, rel=1e-5)  # half of the 22 decay steps
    assert rate_at(optimizer, 43) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("schedule", ["constant", "plateau"])
def test_constant_schedule_stays_at_the_rate(schedule):
    optimizer = make_optimizer("adam", LR, schedule, TOTAL, WARMUP)
    assert [rate_at(optimizer, step) for step in (0, 1, 7, 23, 40, 1000)] == pytest.approx([0.3] * 6, rel=1e-6)


def test_sgd_is_nesterov_with_momentum_0_9():
    optimizer = make_optimizer("sgd", LR, "constant", TOTAL, WARMUP)
    assert isinstance(optimizer, keras.optimizers.SGD) and optimizer.nesterov
    assert optimizer.momentum == pytest.approx(0.9)
    assert isinstance(make_optimizer("adam", LR, "constant", TOTAL, WARMUP), keras.optimizers.Adam)


def test_fit_history_records_the_cosine_rate_at_each_epoch_end(tmp_path):
    # 40 images in batches of 8: 5 steps per epoch, 8 epochs = 40 steps, warmup 7 steps.
    # The checkpoint reads optimizer.learning_rate after epoch e's last step, i.e. the
    # schedule at iteration 5 * (e + 1): 5 -> 0.3 * 5 / 7, 10 -> 0.293924, ..., 40 -> 0.
    keras.utils.set_random_seed(4)
    rng = np.random.default_rng(4)
    images, labels = rng.integers(0, 256, (40, 4, 4, 3)).astype(np.uint8), rng.integers(0, 3, 40)
    stream = NoisyStream([(images, np.arange(40))], one_hot(labels, 3), 8, seed=4)
    assert len(stream) == 5
    inputs = keras.Input((4, 4, 3))
    flat = keras.layers.Rescaling(1 / 255)(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(flat))
    compile_model(model, make_optimizer("sgd", LR, "cosine", 5 * 8, WARMUP), "false")
    _, checkpoint = fit(model, stream, None, str(tmp_path / "stage"), 8, "cosine", verbose=0)
    recorded = [row["learning_rate"] for row in checkpoint.history]
    expected = [cosine(5 * (epoch + 1)) for epoch in range(8)]
    assert recorded == pytest.approx(expected, rel=1e-5, abs=1e-7)
    assert recorded[0] == pytest.approx(0.3 * 5 / 7, rel=1e-6) and recorded[-1] == pytest.approx(0.0, abs=1e-7)
    assert max(recorded) < 0.3  # the peak (step 7) falls inside epoch 1, never at an epoch's end
