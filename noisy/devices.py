"""Where training runs: the input noise on CPU workers or on the accelerator (AUGMENT), and
the GPU speed switches, mixed precision and data parallelism through the backend's own
engine (`tf.distribute.MirroredStrategy` with TensorFlow, `keras.distribution.DataParallel`
with JAX, over one process or several: `join_job`). XLA compilation is
`compile(jit_compile=...)`, set in `compile_model` from `resolve_jit`.

A rehearsal stand-in for several accelerators on a CPU (the tests use it):
`NOISY_CPU_DEVICES=N` splits TensorFlow's CPU into N logical devices;
`XLA_FLAGS=--xla_force_host_platform_device_count=N` does the same for JAX."""
import contextlib
import math
import os
import shutil
import subprocess
import sys

import keras

from noisy.backend import startup_notices_hidden
from noisy.errors import UserError
from noisy.job import job_process
from noisy.settings import PRECISIONS

CPU_DEVICES = "NOISY_CPU_DEVICES"  # the TensorFlow stand-in above: N logical CPU devices
JOB_VARIABLES = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
                 "KERAS_DISTRIBUTION_PROCESS_ID")  # what keras.distribution.initialize() reads


def resolve_augment(augment):
    """'device' or 'cpu' for AUGMENT: 'auto' puts the input noise on the accelerator when
    there is a GPU (on a CPU the PIL path in worker threads is faster:
    docs/device-augment-cpu.txt). A GPU the backend cannot use is warned about in
    `where_it_runs`, not passed over in silence."""
    if augment != "auto":
        return augment
    return "device" if backend_gpus() else "cpu"


def backend_gpus():
    """The GPUs the backend sees (none where its build has no CUDA)."""
    try:
        with startup_notices_hidden():  # the first probe of CUDA prints a cuInit error where there is no GPU
            return keras.distribution.list_devices("gpu")
    except Exception:  # a backend without a GPU build raises instead of listing none
        return []


def noise_placement(settings, noise, augment):
    """Where a training stage's input noise runs: records it as `settings['augment']`
    ('device', 'cpu', or 'none' without noise: part of the stage's identity) and returns
    (on CPU workers, on the device)."""
    settings["augment"] = resolve_augment(augment) if noise else "none"
    return settings["augment"] == "cpu", settings["augment"] == "device"


def split_tensorflow_cpu():
    """NOISY_CPU_DEVICES=N: N logical CPU devices under TensorFlow (before it starts its
    runtime), so that MirroredStrategy has N replicas on a CPU. A test stand-in only."""
    count = os.environ.get(CPU_DEVICES, "")
    if not count:
        return
    if not count.isdigit() or int(count) < 1:
        raise UserError(f"{CPU_DEVICES}={count!r}: expected a number of devices >= 1")
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * int(count))
    except RuntimeError:  # the runtime already started (a second call in one process): keep what it has
        pass


def configure_devices(mixed_precision="", data_parallel=False):
    """Set the global dtype policy and, with `data_parallel`, replicate the model over all
    accelerators (or all CPUs where there is none), of every process of the job under JAX
    (`join_job`). Returns (scope, replicas): build, compile and fit the model inside
    `scope`; the global batch and rate come from `global_batch_and_rate`."""
    if mixed_precision not in PRECISIONS:
        raise UserError(f"--mixed_precision={mixed_precision!r}: expected one of {PRECISIONS}")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        split_tensorflow_cpu()
    if mixed_precision:
        # float16 gets dynamic loss scaling from compile(); the classifier stays float32.
        keras.mixed_precision.set_global_policy(f"mixed_{mixed_precision}")
    processes = job_process()[1]
    if processes > 1 and not (data_parallel and backend == "jax"):
        raise UserError(f"a job of {processes} processes (KERAS_DISTRIBUTION_NUM_PROCESSES) trains with "
                        "--data_parallel=True under KERAS_BACKEND=jax (docs/GPU.md#several-hosts)")
    if not data_parallel:
        return contextlib.nullcontext(), 1
    if backend == "jax":
        join_job()
        devices = keras.distribution.list_devices()
        keras.distribution.set_distribution(keras.distribution.DataParallel(
            devices=devices, auto_shard_dataset=False))  # each process reads its own part: `process_part`
        return contextlib.nullcontext(), len(devices)
    if backend == "tensorflow":
        import tensorflow as tf
        strategy = tf.distribute.MirroredStrategy()
        return strategy.scope(), strategy.num_replicas_in_sync
    raise UserError(f"--data_parallel=True needs the tensorflow or jax backend, not {backend}")


def resolve_jit(jit_compile, replicas):
    """JIT_COMPILE as compile() gets it. Under TensorFlow over several replicas Keras cannot
    compile MirroredStrategy's train step with XLA ("Trying to access resource ...
    replica_1", keras-team/keras#19005) and its own 'auto' turns XLA off under
    tf.distribute: there 'true' is refused and 'auto' is said as 'false'. Elsewhere 'auto'
    stays Keras' choice (under JAX always XLA; under TensorFlow XLA where there is a GPU)."""
    jit = str(jit_compile).lower()
    if replicas > 1 and keras.backend.backend() == "tensorflow":
        if jit == "true":
            raise UserError(f"--jit_compile=true with --data_parallel=True over {replicas} replicas: TensorFlow's "
                            "MirroredStrategy cannot run Keras' XLA train step (keras-team/keras#19005); use "
                            "--jit_compile=auto (no XLA) or KERAS_BACKEND=jax")
        return "false"
    return jit


def global_batch_and_rate(batch_size, lr, replicas, optimizer, rule="auto", settings=None):
    """(global batch, its learning rate, the rule used) for BATCH_SIZE images per replica:
    the rate times `replicas` ('linear': SGD's rule, Goyal et al. 2017), times its square
    root ('sqrt') or unchanged ('none'); 'auto' is linear for sgd and none for adam
    (docs/SETTINGS.md says why). With a stage's `settings` under DATA_PARALLEL, records
    `replicas` in them: the global batch is part of what the stage trains, so a resume on
    another device count is refused."""
    if settings is not None and settings["data_parallel"]:
        settings["replicas"] = replicas
    if rule == "auto":
        rule = "linear" if optimizer == "sgd" else "none"
    factor = {"linear": replicas, "sqrt": math.sqrt(replicas), "none": 1}[rule]
    return batch_size * replicas, lr * factor, rule


# ---------------------------------------------------------------- several processes (JAX)
def job_size():
    """(this process's index, processes in the job): (0, 1) outside a multi-process job."""
    if keras.backend.backend() != "jax":
        return 0, 1
    import jax
    return jax.process_index(), jax.process_count()


def join_job():
    """Join the multi-process job the environment describes (KERAS_DISTRIBUTION_*, read by
    `keras.distribution.initialize()`), once; nothing without them. On CPUs the processes
    talk through gloo."""
    if not os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES") or keras.backend.backend() != "jax":
        return
    import jax
    if jax.distributed.is_initialized():
        return
    if not os.environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES"):
        raise UserError(f"a multi-process job needs {', '.join(JOB_VARIABLES)} (docs/GPU.md#several-hosts)")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU collectives; GPUs use NCCL
    keras.distribution.initialize()
    barrier("every process has copied the run folder")  # before process 0 writes in it (noisy/job.py)


def process_part(batch):
    """This process's rows of a global batch (all of them in a one-process job): with
    `auto_shard_dataset=False` each process hands Keras its own consecutive part."""
    index, count = job_size()
    if count == 1:
        return batch
    size = len(batch) // count
    return batch[index * size:(index + 1) * size]


def barrier(name):
    """Every process of the job waits here for the others (nothing in a one-process job)."""
    if job_size()[1] > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


# ---------------------------------------------------------------- what a script says at start
def where_it_runs(replicas=1, augment="none", labeling=None):
    """One line: backend, devices, precision, where the noise runs, data-parallel width and
    processes (XLA is said once the model is compiled); `labeling`: the teacher being
    labeled with (its own precision). And a warning where nvidia-smi sees a GPU the backend does not."""
    backend = keras.backend.backend()
    devices = keras.distribution.list_devices()
    kinds = sorted({str(d).split(":")[0].lower() for d in devices})
    index, count = job_size()
    parts = [f"running on {backend}: {len(devices)} {'/'.join(kinds)} device(s)",
             # the teacher's first layer with weights: a loaded model's own policy is the global one
             next(layer.dtype_policy for layer in labeling.layers if layer.weights).name if labeling else
             keras.mixed_precision.global_policy().name]
    if labeling:
        parts.append("predicting on one device")
    else:
        parts += [{"device": "noise on the device", "cpu": "noise on CPU workers", "none": "no input noise"}[augment],
                  f"data parallel over {replicas} replicas" if replicas > 1 else "one replica"]
    if count > 1:
        parts.append(f"process {index} of {count}")
    print(", ".join(parts), flush=True)
    unseen_gpu_warning(backend)


def unseen_gpu_warning(backend):
    """Warn (stderr) where nvidia-smi lists GPUs but the backend sees none: its CPU-only
    build is installed, and everything, the input noise included, runs on the CPU."""
    if not shutil.which("nvidia-smi") or backend_gpus():
        return
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return
    gpus = [line for line in listed.splitlines() if line.startswith("GPU")]
    if gpus:
        fix = 'pip install "jax[cuda12]"' if backend == "jax" else 'pip install "tensorflow[and-cuda]"'
        print(f"warning: nvidia-smi sees {len(gpus)} GPU(s) but {backend} sees none, so this runs on the CPU: "
              f"install {backend}'s CUDA build ({fix}; docs/GPU.md)", file=sys.stderr, flush=True)
