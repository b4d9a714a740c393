"""The weight average of the official Noisy Student code (and EfficientNet's).

The official code keeps `tf.train.ExponentialMovingAverage(decay, num_updates=step)` of
every trainable variable *and* of the batch-norm moving mean and variance
(`utils.get_ema_vars`), updated after every training step with the decay
`min(decay, (1 + step) / (10 + step))`, so that the first steps' weights are not carried
for thousands of steps. Validation, checkpoint selection and the exported model use the
average.

Why not Keras' `use_ema` + `SwapEMAWeights`: it averages the trainable weights only (the
averaged model runs with the raw weights' batch-norm statistics) and has no warm-up of
the decay. `Averaged` below wraps the model being trained and updates the average inside
the compiled train step, after the optimizer's update (one fused update per step, no
Python per batch, every backend and data-parallel engine); its variables are the model's
own, so an epoch checkpoint's `model.keras` holds the average and its update count and a
resumed run continues the same average. `SwapInAverage` puts the average into the model
while Keras validates, once per epoch.
"""
import keras
from keras import ops

from noisy.errors import UserError


def averaged_variables(model):
    """The variables the official code averages: every float variable of the model,
    trainable or not (batch-norm statistics), in the model's order; no seed states."""
    return [v for v in model.variables if "float" in str(v.dtype)]


def decay_at(decay, step):
    """The decay of update number `step` (1 for the first): `tf.train.ExponentialMovingAverage`
    with `num_updates`, for a Python number or (in the train step) a tensor."""
    warm = (1.0 + step) / (10.0 + step)
    return min(decay, warm) if isinstance(step, (int, float)) else ops.minimum(decay, warm)


@keras.saving.register_keras_serializable(package="noisy")
class Averaged(keras.Model):
    """`model` as it trains, plus an exponential moving average of
    `averaged_variables(model)` updated in the train step: fit this, keep `.model`.
    The average starts at the model's weights, as TensorFlow's does."""

    def __init__(self, model, decay, **kwargs):
        super().__init__(**kwargs)
        if not 0 < decay < 1:
            raise ValueError(f"decay must be in (0, 1). Received: decay={decay}")
        self.model, self.decay = model, decay
        # The model trained is used by this one only: its compiled state (optimizer,
        # loss) is this one's, and is not saved twice.
        model.compiled, model.optimizer = False, None
        # ONLY_FIRST_REPLICA: under tf.distribute every replica computes the same update
        # (the weights are mirrored), and one is kept.
        self.average = [self.add_weight(shape=v.shape, dtype=v.dtype, trainable=False, name=f"average_{i}",
                                        initializer=keras.initializers.Constant(ops.convert_to_numpy(v)),
                                        aggregation="only_first_replica")
                        for i, v in enumerate(averaged_variables(model))]
        self.updates = self.add_weight(shape=(), dtype="int32", trainable=False, name="average_updates",
                                       initializer="zeros", aggregation="only_first_replica")

    @property
    def raw(self):  # a property: a list of variables kept as an attribute would be saved a second time
        return averaged_variables(self.model)

    def call(self, inputs, training=False):
        return self.model(inputs, training=training)

    def rate(self, updates):
        """(1 - decay, update count) of the next update: average -= (1 - decay) (average - raw)."""
        updates = updates + 1
        return 1.0 - decay_at(self.decay, ops.cast(updates, "float32")), updates

    def train_step(self, *args):
        if keras.backend.backend() != "jax":  # stateful: the optimizer has updated the variables
            logs = super().train_step(*args)
            rate, updates = self.rate(self.updates.value)
            for average, raw in zip(self.average, self.raw):  # in place: no copy of a ResNet50's 94 MB
                average.assign_sub(ops.cast(rate, average.dtype) * (average.value - raw.value))
            self.updates.assign(updates)
            return logs
        # JAX: stateless, the step returns the variables' new values in `state`.
        logs, (trainable, non_trainable, optimizer, metrics) = super().train_step(*args)
        where = {id(v): ("t", i) for i, v in enumerate(self.trainable_variables)}
        where.update({id(v): ("n", i) for i, v in enumerate(self.non_trainable_variables)})
        values = {"t": list(trainable), "n": list(non_trainable)}
        value = lambda v: values[where[id(v)][0]][where[id(v)][1]]  # noqa: E731
        rate, updates = self.rate(value(self.updates))
        averages = [value(a) - ops.cast(rate, a.dtype) * (value(a) - value(w)) for a, w in zip(self.average, self.raw)]
        for variable, new in zip([*self.average, self.updates], [*averages, updates]):
            values["n"][where[id(variable)][1]] = new
        return logs, (values["t"], values["n"], optimizer, metrics)

    def swap(self):
        """Exchange the average and the model's raw weights (in the model: the average, for
        validation; swapped again: the raw weights, to train on)."""
        for average, raw in zip(self.average, self.raw):
            kept = ops.copy(raw.value)
            raw.assign(average.value)
            average.assign(kept)

    def averaged_model(self):
        """The wrapped model with the average as its weights, compiled as this one (what a
        stage keeps)."""
        for average, raw in zip(self.average, self.raw):
            raw.assign(average.value)
        self.model.compile_from_config(self.get_compile_config())
        return self.model

    def get_config(self):
        return {**super().get_config(), "model": keras.saving.serialize_keras_object(self.model),
                "decay": self.decay}

    @classmethod
    def from_config(cls, config):
        config["model"] = keras.saving.deserialize_keras_object(config["model"])
        return cls(**config)


def with_average(model, decay):
    """`Averaged(model, decay)` compiled as `model` is (its optimizer, loss, metrics, XLA
    choice), to fit in its place."""
    config = model.get_compile_config()
    averaged = Averaged(model, decay)
    averaged.compile_from_config(config)
    return averaged


class SwapInAverage(keras.callbacks.Callback):
    """Validate on the average: swap it into the model while Keras validates, once per
    epoch (no Python per batch)."""

    def on_test_begin(self, logs=None):
        self.model.swap()

    def on_test_end(self, logs=None):
        self.model.swap()


def require_average(model, stage_dir, decay):
    """A resume point matches the setting: an `Averaged` model exactly when `decay` > 0."""
    if bool(decay) != isinstance(model, Averaged):
        raise UserError(f"cannot resume {stage_dir}: its last checkpoint {'has no' if decay else 'has a'} weight "
                        "average; pass --retrain=True to start this stage over")
