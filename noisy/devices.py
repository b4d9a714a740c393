"""Where training runs: the input noise on CPU workers or on the accelerator (AUGMENT), and
the GPU speed switches, mixed precision and data parallelism through the backend's own
engine (`tf.distribute.MirroredStrategy` with TensorFlow, `keras.distribution.DataParallel`
with JAX). XLA compilation is `compile(jit_compile=...)`, set in `compile_model`."""
import contextlib

import keras

from noisy.quiet import startup_notices_hidden
from noisy.errors import UserError
from noisy.training_checks import PRECISIONS


def resolve_augment(augment):
    """'device' or 'cpu' for AUGMENT: 'auto' puts the input noise on the accelerator when
    there is a GPU (on a CPU the PIL path in worker threads is faster:
    docs/device-augment-cpu.txt)."""
    if augment != "auto":
        return augment
    try:
        with startup_notices_hidden():  # the first probe of CUDA prints a cuInit error where there is no GPU
            gpus = keras.distribution.list_devices("gpu")
    except Exception:  # a backend without a GPU build raises instead of listing none
        gpus = []
    return "device" if gpus else "cpu"


def noise_placement(settings, noise, augment):
    """Where a training stage's input noise runs: records it as `settings['augment']`
    ('device', 'cpu', or 'none' without noise: part of the stage's identity) and returns
    (on CPU workers, on the device)."""
    settings["augment"] = resolve_augment(augment) if noise else "none"
    return settings["augment"] == "cpu", settings["augment"] == "device"


def configure_devices(mixed_precision="", data_parallel=False):
    """Set the global dtype policy and, with `data_parallel`, replicate the model over all
    accelerators (or all CPUs where there is none). Returns (scope, replicas): build,
    compile and fit the model inside `scope`; scale the global batch size and the
    learning rate by `replicas` (the linear scaling rule, Goyal et al. 2017)."""
    if mixed_precision not in PRECISIONS:
        raise UserError(f"--mixed_precision={mixed_precision!r}: expected one of {PRECISIONS}")
    if mixed_precision:
        # float16 gets dynamic loss scaling from compile(); the classifier stays float32.
        keras.mixed_precision.set_global_policy(f"mixed_{mixed_precision}")
    if not data_parallel:
        return contextlib.nullcontext(), 1
    backend = keras.backend.backend()
    if backend == "jax":
        devices = keras.distribution.list_devices()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        return contextlib.nullcontext(), len(devices)
    if backend == "tensorflow":
        import tensorflow as tf
        strategy = tf.distribute.MirroredStrategy()
        return strategy.scope(), strategy.num_replicas_in_sync
    raise UserError(f"--data_parallel=True needs the tensorflow or jax backend, not {backend}")
