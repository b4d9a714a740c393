"""The weight average (EMA) as the official code keeps it: every float variable of the
model, batch-norm statistics included, with the decay warm-up min(decay, (1+t)/(10+t));
the kept model is the average; a resumed run continues the same average."""
import keras
import numpy as np
import pytest

from noisy.averaging import Averaged, averaged_variables, decay_at
from noisy.streams import NoisyStream
from noisy.data import one_hot
from noisy.training import compile_model, fit, make_optimizer

DECAY = 0.95  # reached at step 170: both the warm-up and the plain decay are exercised


def bn_model(seed=0):
    """A tiny model with batch normalisation, so that moving statistics exist to average."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False)(keras.layers.Rescaling(1 / 255)(inputs))
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(momentum=0.5)(x))
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(x)))


def stream_and_validation(seed=0, n=96):
    rng = np.random.default_rng(seed)
    images, labels = rng.integers(0, 256, (n, 4, 4, 3)).astype(np.uint8), rng.integers(0, 3, n)
    stream = NoisyStream([(images, np.arange(n))], one_hot(labels, 3), 16, seed=seed)  # 6 steps an epoch
    val_images, val_labels = rng.integers(0, 256, (48, 4, 4, 3)).astype(np.uint8), rng.integers(0, 3, 48)
    return stream, (val_images, one_hot(val_labels, 3))


class Recorder(keras.callbacks.Callback):
    """The raw value of every averaged variable before training and after every step (of
    the model inside `Averaged`, which is what fit trains)."""

    def raw(self):
        return [keras.ops.convert_to_numpy(v) for v in averaged_variables(self.model.model)]

    def on_train_begin(self, logs=None):
        self.steps = [self.raw()]

    def on_train_batch_end(self, batch, logs=None):
        self.steps.append(self.raw())


def numpy_average(steps, decay, upto):
    """tf.train.ExponentialMovingAverage(decay, num_updates=t) over steps[1..upto], from steps[0]."""
    average = [w.astype(np.float64) for w in steps[0]]
    for t in range(1, upto + 1):
        d = min(decay, (1 + t) / (10 + t))
        average = [d * a + (1 - d) * w for a, w in zip(average, steps[t])]
    return average


def train(stage_dir, epochs, validation=None, recorder=None, seed=0):
    stream, val = stream_and_validation(seed)
    model = bn_model(seed)
    compile_model(model, make_optimizer("sgd", 0.05, "constant", len(stream) * epochs, 0), "false")
    model, checkpoint = fit(model, stream, val if validation else None, str(stage_dir), epochs, "constant",
                            average=DECAY, verbose=0, callbacks=[recorder] if recorder else [])
    return model, checkpoint.history, val, len(stream)


def test_the_decay_warms_up_as_tensorflow_s_num_updates():
    assert decay_at(0.9999, 1) == pytest.approx(2 / 11)
    assert decay_at(0.9999, 100) == pytest.approx(101 / 110)
    assert decay_at(0.95, 170) == 0.95 and decay_at(0.95, 169) == pytest.approx(170 / 179)


def test_the_kept_model_is_the_average_of_every_variable_batch_norm_statistics_included(tmp_path):
    recorder = Recorder()
    model, history, _, steps_per_epoch = train(tmp_path / "stage", epochs=30, recorder=recorder)
    assert len(recorder.steps) == 30 * steps_per_epoch + 1
    expected = numpy_average(recorder.steps, DECAY, 30 * steps_per_epoch)
    kept = [keras.ops.convert_to_numpy(v) for v in averaged_variables(model)]
    names = [v.path for v in averaged_variables(model)]
    assert any("moving_mean" in n for n in names) and any("moving_variance" in n for n in names)
    for name, got, want, raw in zip(names, kept, expected, recorder.steps[-1]):
        assert np.allclose(got, want, rtol=1e-4, atol=1e-6), name
        assert not np.allclose(got, raw, rtol=1e-3, atol=1e-5), f"{name}: the raw weights were kept"


def test_validation_and_the_best_epoch_use_the_average(tmp_path):
    recorder = Recorder()
    model, history, (val_images, val_targets), steps_per_epoch = train(tmp_path / "stage", epochs=8,
                                                                      validation=True, recorder=recorder)
    best = int(np.argmax([row["val_accuracy"] for row in history]))
    expected = numpy_average(recorder.steps, DECAY, (best + 1) * steps_per_epoch)
    for got, want in zip(averaged_variables(model), expected):
        assert np.allclose(keras.ops.convert_to_numpy(got), want, rtol=1e-4, atol=1e-6)
    scores = model.evaluate(val_images, val_targets, verbose=0, return_dict=True)
    assert np.isclose(scores["accuracy"], history[best]["val_accuracy"])
    assert np.isclose(scores["loss"], history[best]["val_loss"], rtol=1e-4)


def test_a_killed_and_resumed_run_ends_with_the_same_average(tmp_path):
    straight, *_ = train(tmp_path / "straight", epochs=4)
    train(tmp_path / "killed", epochs=2)  # what a run killed after epoch 2 leaves in resume/
    resumed, history, *_ = train(tmp_path / "killed", epochs=4)
    assert [row["epoch"] for row in history] == [0, 1, 2, 3]
    for a, b in zip(averaged_variables(straight), averaged_variables(resumed)):
        assert np.allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), rtol=1e-5, atol=1e-7)


def test_a_checkpoint_keeps_the_average_s_update_count(tmp_path):
    """A resumed run's warm-up counts on from the checkpoint's own count of updates, which
    an uninterrupted run has too (the optimizer's count can lag it under a float16 loss
    scale that skips steps)."""
    _, history, _, steps_per_epoch = train(tmp_path / "stage", epochs=2)
    saved = keras.models.load_model(tmp_path / "stage" / "resume" / "epoch-0001" / "model.keras")
    assert isinstance(saved, Averaged) and int(keras.ops.convert_to_numpy(saved.updates)) == 2 * steps_per_epoch
    assert len(saved.average) == len(averaged_variables(bn_model()))


def test_a_decay_outside_0_1_is_refused_with_its_value():
    with pytest.raises(ValueError, match="Received: decay=1.0"):
        Averaged(bn_model(), 1.0)
