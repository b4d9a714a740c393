"""The weight average of the official Noisy Student code (and EfficientNet's).

The official code keeps `tf.train.ExponentialMovingAverage(decay, num_updates=step)` of
every trainable variable *and* of the batch-norm moving mean and variance
(`utils.get_ema_vars`), updated after every training step with the decay
`min(decay, (1 + step) / (10 + step))`, so that the first steps' weights are not carried
for thousands of steps. Validation, checkpoint selection and the exported model use the
average.

Why not Keras' `use_ema` + `SwapEMAWeights`: it averages the trainable weights only (the
averaged model runs with the raw weights' batch-norm statistics), has no warm-up of the
decay, and a resumed run must set a private attribute of the callback. `WeightAverage`
below is a callback with `keras.ops` only (so it runs under every backend): it updates
the average after each batch, holds it in the model while Keras validates, and hands its
values to the checkpoint, which saves them beside the raw model (`average.npz`), so a
resumed run continues the same average.
"""
import keras
import numpy as np
from keras import ops

from noisy.errors import UserError
from noisy.files import fits, load_arrays, save_arrays


def averaged_variables(model):
    """The variables the official code averages: every float variable of the model,
    trainable or not (batch-norm statistics), in the model's order; no seed states."""
    return [v for v in model.variables if "float" in str(v.dtype)]


def decay_at(decay, step):
    """The decay of update number `step` (1 for the first): `tf.train.ExponentialMovingAverage`
    with `num_updates`."""
    return min(decay, (1.0 + step) / (10.0 + step))


class WeightAverage(keras.callbacks.Callback):
    """An exponential moving average of `averaged_variables(model)`, updated after every
    training batch; swapped into the model for validation and while a checkpoint takes
    `values()`. `restored`: (arrays, updates) as a checkpoint saved them (a resumed run),
    else the average starts at the model's weights, as TensorFlow's does."""

    def __init__(self, decay, restored=None):
        super().__init__()
        if not 0 < decay < 1:
            raise ValueError(f"decay must be in (0, 1). Received: decay={decay}")
        self.decay, self.restored = decay, restored
        self.in_model = False

    def on_train_begin(self, logs=None):
        self.variables = averaged_variables(self.model)
        if self.restored is not None:  # the update count too: the decay's warm-up goes on from it
            starts, self.step = self.restored
        else:
            starts, self.step = [ops.copy(v.value) for v in self.variables], 0
        require_fits(starts, self.variables)
        self.average = [keras.Variable(s, dtype=v.dtype, trainable=False, name=f"average_{i}")
                        for i, (s, v) in enumerate(zip(starts, self.variables))]
        self.raw = [keras.Variable(ops.zeros(v.shape, v.dtype), trainable=False, name=f"raw_{i}")
                    for i, v in enumerate(self.variables)]

    def on_train_batch_end(self, batch, logs=None):
        self.model  # noqa: B018  (under JAX, reading a callback's model syncs the step's state into its variables)
        self.step += 1
        rate = 1.0 - decay_at(self.decay, self.step)
        for average, variable in zip(self.average, self.variables):
            average.assign(average - rate * (average - variable))

    def swap_in(self):
        """Put the average into the model, keeping the raw weights aside."""
        if not self.in_model:
            for raw, average, variable in zip(self.raw, self.average, self.variables):
                raw.assign(variable)
                variable.assign(average)
            self.in_model = True

    def swap_out(self):
        """Give the model its raw weights back, to train on."""
        if self.in_model:
            for raw, variable in zip(self.raw, self.variables):
                variable.assign(raw)
            self.in_model = False

    def on_test_begin(self, logs=None):  # Keras' fit validates between these two
        self.swap_in()

    def on_test_end(self, logs=None):
        self.swap_out()

    def values(self):
        """The average as numpy arrays, in `averaged_variables` order (what a checkpoint saves)."""
        return [ops.convert_to_numpy(a) for a in self.average]


def save_average(path, average):
    """A checkpoint's average.npz: the averaged arrays, then the number of updates made,
    which a resumed run counts on from (not the optimizer's step count: a float16 loss
    scale's skipped steps do not advance it, so it can lag the batches trained)."""
    save_arrays(path, [*average.values(), np.array(average.step)])


def load_average(path):
    """(arrays, updates) as `save_average` saved them."""
    *values, step = load_arrays(path)
    if step.shape != () or step.dtype.kind not in "iu":
        raise ValueError(f"{path} ends without the average's update count (an earlier version wrote it)")
    return values, int(step)


def require_fits(values, variables):
    """A saved average (a checkpoint's average.npz) holds one array per averaged variable."""
    if not fits(values, variables):
        raise UserError("the saved weight average does not fit this model's variables; delete the stage's resume/ "
                        "folder or pass --retrain=True")


def apply_average(model, values):
    """Set the model's averaged variables to `values` (a model loaded from a checkpoint
    becomes the averaged model that is saved)."""
    variables = averaged_variables(model)
    require_fits(values, variables)
    for variable, value in zip(variables, values):
        variable.assign(value)
