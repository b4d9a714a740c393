"""The article's default schedule (flat epochs, then ReduceLROnPlateau and EarlyStopping),
the restore of the best validation epoch and a resumed noised run, on a tiny model in this
process."""
import keras
import numpy as np
import pytest

from noisy.device_augment import with_device_noise
from noisy.streams import NoisyStream
from noisy.data import one_hot
from noisy.training import compile_model, fit, make_optimizer


def tiny_model(seed=0, dropout=0.0, size=4):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255)(keras.layers.Flatten()(inputs))
    x = keras.layers.Dense(16, activation="relu")(x)
    if dropout:  # the model noise: a mask drawn from the layer's seed generator every step
        x = keras.layers.Dropout(dropout)(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def data(seed, n=96, size=4):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, 3)).astype(np.uint8), rng.integers(0, 3, n)


def train(stage_dir, lr, epochs, flat_epochs, patience, seed=0, dropout=0.0, schedule="plateau", device_noise=False,
          **fit_args):
    size = 32 if device_noise else 4  # the on-device crop pads by 4 pixels: CIFAR-sized images
    images, labels = data(seed, size=size)
    val_images, val_labels = data(seed + 100, 48, size)
    stream = NoisyStream([(images, np.arange(len(images)))], one_hot(labels, 3), 32, seed=seed)
    model = tiny_model(seed, dropout, size)
    if device_noise:  # RandAugment, flip and crop in the train step (--augment=device)
        model = with_device_noise(model, 2, 5, False, seed)
    compile_model(model, make_optimizer("adam", lr, schedule, len(stream) * epochs, 0), "false")
    validation = (val_images, one_hot(val_labels, 3))
    model, checkpoint = fit(model, stream, validation, str(stage_dir), epochs, schedule, flat_epochs,
                            patience, verbose=0, **fit_args)
    return model, checkpoint.history, validation


class Kill(keras.callbacks.Callback):
    """What a kill after `epoch`'s end leaves (run after fit's own callbacks)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_no_callback_runs_python_per_batch(tmp_path, monkeypatch):
    """Keras runs the batch-end callbacks in a background thread (the steps go on without
    waiting for the device; JAX) only when no callback handles batch ends: the default
    callbacks, the plateau schedule's and the weight average's must not."""
    from keras.src import backend, utils
    lists = []
    original = keras.callbacks.CallbackList.__init__

    def spy(self, *args, **kwargs):
        original(self, *args, **kwargs)
        lists.append(self)

    monkeypatch.setattr(keras.callbacks.CallbackList, "__init__", spy)
    train(tmp_path / "stage", 0.01, epochs=2, flat_epochs=0, patience=3, average=0.9, dropout=0.5)
    ours = [c for callbacks in lists for c in callbacks.callbacks
            if not isinstance(c, (keras.callbacks.History, keras.callbacks.ProgbarLogger))]  # Keras' own
    for hook in ("on_batch_end", "on_train_batch_end", "on_batch_begin", "on_train_batch_begin"):
        assert all(utils.is_default(getattr(c, hook)) for c in ours), [type(c).__name__ for c in ours]
    if backend.IS_THREAD_SAFE:  # JAX (TensorFlow's loop runs callbacks in line, reading the logs every call)
        assert lists and all(callbacks._async_train for callbacks in lists)
    names = {type(c).__name__ for c in ours}
    assert {"StopOnNaN", "SwapInAverage", "EpochCheckpoint", "AfterEpoch"} <= names


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's tracing")
@pytest.mark.parametrize("average", [0.0, 0.9])
def test_the_train_step_is_traced_once(tmp_path, average, monkeypatch):
    # Keras creates the optimizer's and metrics' variables inside the first trace unless they
    # exist, and TensorFlow then traces again: a second XLA compile on a GPU. Python runs
    # train_step once per trace, never per step.
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer
    traces, original = [], TensorFlowTrainer.train_step
    monkeypatch.setattr(TensorFlowTrainer, "train_step", lambda self, data: traces.append(1) or original(self, data))
    train(tmp_path / "stage", 0.01, epochs=2, flat_epochs=0, patience=3, average=average)
    assert len(traces) == 1


def test_a_nan_loss_stops_the_run_in_one_line_and_checkpoints_nothing_of_it(tmp_path):
    from noisy.errors import UserError
    images, labels = data(0)
    targets = one_hot(labels, 3)
    targets[5] = np.nan  # one bad target: that step's loss and then every weight turn NaN
    stream = NoisyStream([(images, np.arange(len(images)))], targets, 32, seed=0)
    model = tiny_model()
    compile_model(model, make_optimizer("adam", 0.01, "constant", len(stream) * 3, 0), "false")
    with pytest.raises(UserError, match=r"^training loss became nan in epoch 1; lower --lr"):
        fit(model, stream, None, str(tmp_path / "stage"), 3, "constant", verbose=0)
    assert not (tmp_path / "stage" / "resume" / "latest.json").exists()


def test_checkpoints_every_k_epochs_and_a_resume_from_one_is_exact(tmp_path):
    """CHECKPOINT_EVERY=2: a run killed after epoch 3 (counted from 1) resumes after epoch
    2, its last checkpoint, and ends as an unbroken run does."""
    run = dict(lr=0.01, flat_epochs=5, patience=5, schedule="constant", dropout=0.5, checkpoint_every=2)
    straight, history, _ = train(tmp_path / "straight", epochs=5, **run)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "killed", epochs=5, callbacks=[Kill(2)], **run)
    import json
    latest = json.loads((tmp_path / "killed" / "resume" / "latest.json").read_text())
    assert latest["epoch"] in (1, latest["best_epoch"])  # epoch 2 (from 1), or epoch 3 if it was a new best
    resumed, resumed_history, _ = train(tmp_path / "killed", epochs=5, **run)
    assert [row["loss"] for row in resumed_history] == [row["loss"] for row in history]
    for a, b in zip(straight.trainable_variables, resumed.trainable_variables):
        assert np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)), a.path


def test_plateau_waits_for_the_flat_epochs_then_lowers_the_rate_and_stops(tmp_path):
    # A rate of 1e-12 leaves float32 weights unchanged: the validation loss never improves,
    # so ReduceLROnPlateau (patience 3) and EarlyStopping (patience 4) count from the first
    # epoch after the flat phase (epochs 0-1), never earlier.
    _, history, _ = train(tmp_path / "flat2", 1e-12, epochs=30, flat_epochs=2, patience=4)
    rates = [row["learning_rate"] for row in history]
    assert len(history) == 7  # epoch 2 sets the best; 3, 4, 5, 6 do not improve: stop after 6
    assert np.allclose(rates[:6], 1e-12) and np.isclose(rates[6], 1e-13)  # lowered after epoch 5
    _, history, _ = train(tmp_path / "flat0", 1e-12, epochs=30, flat_epochs=0, patience=4)
    assert len(history) == 5 and np.isclose(history[4]["learning_rate"], 1e-13)
    _, history, _ = train(tmp_path / "flat40", 1e-12, epochs=6, flat_epochs=40, patience=4)
    assert len(history) == 6 and np.allclose([row["learning_rate"] for row in history], 1e-12)


def test_the_best_validation_epoch_is_restored(tmp_path):
    for seed in range(5):  # the first seed whose best epoch is not the last (seeds differ by backend)
        model, history, (val_images, val_targets) = train(tmp_path / f"best{seed}", 0.05, epochs=6,
                                                          flat_epochs=6, patience=4, seed=seed)
        scores = [row["val_accuracy"] for row in history]
        best = int(np.argmax(scores))  # the first of equal scores
        if best != len(history) - 1:
            break
    assert best != len(history) - 1, "no seed's best epoch came before the last"
    accuracy = model.evaluate(val_images, val_targets, verbose=0, return_dict=True)["accuracy"]
    assert np.isclose(accuracy, scores[best]) and not np.isclose(accuracy, scores[-1])


@pytest.mark.parametrize("noise", [dict(dropout=0.5), dict(device_noise=True)])
def test_a_killed_noised_run_resumes_with_the_masks_an_unbroken_run_draws(tmp_path, noise):
    """A .keras file does not keep the seed generators' states: a model loaded to resume
    would draw its first epochs' dropout masks (or on-device RandAugment) again, and the
    run would differ from one that was never stopped (found by a fresh-eyes tester, #24)."""
    run = dict(lr=0.01, flat_epochs=4, patience=4, schedule="constant", **noise)
    straight, history, _ = train(tmp_path / "straight", epochs=4, **run)
    train(tmp_path / "killed", epochs=2, **run)  # what a run killed after epoch 2 leaves in resume/
    resumed, resumed_history, _ = train(tmp_path / "killed", epochs=4, **run)
    assert [row["loss"] for row in resumed_history] == [row["loss"] for row in history]
    for a, b in zip(straight.trainable_variables, resumed.trainable_variables):
        assert np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)), a.path
    other, other_history, _ = train(tmp_path / "other", epochs=4, **run, seed=1)
    assert [row["loss"] for row in other_history] != [row["loss"] for row in history]  # the losses can differ


def test_a_run_killed_after_its_last_checkpoint_finishes_its_history_on_resume(tmp_path):
    """A kill between the last epoch's latest.json and its history.csv: the rerun trains
    nothing, and must still leave every epoch's row (a fresh-eyes tester, #24)."""
    import os
    import shutil
    run = dict(lr=0.01, flat_epochs=3, patience=3, schedule="constant")
    train(tmp_path / "killed", epochs=3, **run)
    resume = tmp_path / "killed" / "resume"
    rows = (resume / "history.csv").read_text().splitlines()
    assert len(rows) == 4
    (resume / "history.csv").write_text("\n".join(rows[:3]) + "\n")  # what the killed run had written
    shutil.copytree(resume / "epoch-0002", resume / "epoch-0001", dirs_exist_ok=True)  # not yet dropped
    _, history, _ = train(tmp_path / "killed", epochs=3, **run)
    assert [row["epoch"] for row in history] == [0, 1, 2]
    assert (resume / "history.csv").read_text().splitlines() == rows
    best = max(history, key=lambda row: row["val_accuracy"])["epoch"]
    assert sorted(os.listdir(resume)) == sorted({f"epoch-{best:04d}", "epoch-0002", "history.csv", "latest.json"}
                                                | ({"identity.json"} if (resume / "identity.json").exists() else set()))


def test_a_damaged_random_state_is_refused_in_words_of_its_own(tmp_path):
    from noisy.errors import UserError
    run = dict(lr=0.01, flat_epochs=3, patience=3, schedule="constant", dropout=0.5)
    train(tmp_path / "killed", epochs=1, **run)
    (tmp_path / "killed" / "resume" / "epoch-0000" / "random_state.npz").write_text("hello")
    with pytest.raises(UserError, match=r"cannot resume from .*random_state.npz is not an .npz of arrays") as refused:
        train(tmp_path / "killed", epochs=2, **run)
    assert "allow_pickle" not in str(refused.value)


def test_a_random_state_of_another_model_is_refused(tmp_path):
    from noisy.errors import UserError
    from noisy.arrays import save_arrays
    run = dict(lr=0.01, flat_epochs=3, patience=3, schedule="constant", dropout=0.5)
    train(tmp_path / "killed", epochs=1, **run)
    state = tmp_path / "killed" / "resume" / "epoch-0000" / "random_state.npz"
    for arrays in ([np.zeros(5, np.uint32)], [np.zeros(2, np.uint32)] * 2, []):  # wrong shape; one too many; none
        save_arrays(str(state), arrays)
        with pytest.raises(UserError, match=r"cannot resume from .*random_state.npz does not fit the model's "
                                            r"random-number generators"):
            train(tmp_path / "killed", epochs=2, **run)
