"""Augmentation inside the train step (DeviceAugment) against PIL in PyDataset workers
(issue #19): one student epoch each way, and the augmentation alone each way.

    python bench/device_augment.py                         # this CPU: resnet9_w16, 6,400 images
    python bench/device_augment.py --model=resnet50 --images=25600 --workers=8   # GPU box

Measures, on the same model, images and batches (synthetic 32x32 uint8, float32 model):
- epoch, device: `keras.Sequential([DeviceAugment(N, M), model])` fed plain uint8 batches
  by NoisyStream (no augmentation in the workers); RandAugment + flip/crop run in the
  compiled train step;
- epoch, PIL: `model` fed by NoisyStream with RandAugment + flip/crop in WORKERS workers;
- augmentation alone: PIL `augment_batch` on one core, and the DeviceAugment layer under
  jit (tf.function(jit_compile=True) / jax.jit) on batches of BATCH_SIZE and ALONE_BATCH;
- the price of computing every op for every image: the layer with 0, 1 and N ops on
  ALONE_BATCH images (each op application computes all 14 and keeps one per image).
The two epochs alternate, after one warm-up epoch of each; the ratio is device / PIL.
"""
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.augment import pil_images_per_second  # noqa: E402
from bench.synthetic_run import synthetic_images  # noqa: E402
from noisy.settings import configure  # noqa: E402
from noisy.errors import install_error_hook  # noqa: E402

# ------------------------------------------------------------------------------ settings
MODEL = "resnet9_w16"     # student preset
IMAGES = 6_400            # images per epoch
BATCH_SIZE = 128          # images per step
WORKERS = 2               # PyDataset workers building batches (both paths)
MULTIPROCESSING = False   # workers as processes instead of threads
NUM_OPS = 2               # RandAugment operations per image
MAGNITUDE = 10            # RandAugment magnitude (0..30)
JIT_COMPILE = "auto"      # 'auto', 'true' or 'false' for both compiled models
REPEATS = 2               # timed epochs of each kind, alternating
ALONE_BATCH = 512         # batch for the augmentation-alone measurement under jit
ALONE_STEPS = 10          # timed calls of the layer alone
# ------------------------------------------------------------------------------


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def jitted_layer(layer, backend):
    """layer(x, training=True) compiled: a function of a uint8 batch returning the output
    as numpy (so the timing includes finishing the computation)."""
    if backend == "tensorflow":
        import tensorflow as tf
        fn = tf.function(lambda x: layer(x, training=True), jit_compile=True)
        return lambda x: fn(x).numpy()
    if backend == "jax":
        import jax
        step = jax.jit(lambda nt, x: layer.stateless_call([], nt, x, training=True))
        state = {"nt": [v.value for v in layer.non_trainable_variables]}

        def run(x):
            out, state["nt"] = step(state["nt"], x)
            return np.asarray(out)
        return run
    raise SystemExit(f"no jit timing for backend {backend}")


def images_per_second(fn, x, steps):
    fn(x)  # compile
    start = time.time()
    for _ in range(steps):
        fn(x)
    return steps * len(x) / (time.time() - start)


if __name__ == "__main__":
    install_error_hook()
    configure(globals())
    import keras
    import noisy
    from noisy.device_augment import DeviceAugment
    backend = keras.backend.backend()
    images, labels = synthetic_images(IMAGES, seed=4)
    targets = noisy.one_hot(labels, 10)

    pil_alone = pil_images_per_second(images, NUM_OPS, MAGNITUDE)

    alone = {}
    for ops_count in (0, 1, NUM_OPS):
        layer = DeviceAugment(ops_count, MAGNITUDE, seed=0)
        alone[ops_count] = images_per_second(jitted_layer(layer, backend), images[:ALONE_BATCH], ALONE_STEPS)
    small = images_per_second(jitted_layer(DeviceAugment(NUM_OPS, MAGNITUDE, seed=0), backend),
                              images[:BATCH_SIZE], ALONE_STEPS * ALONE_BATCH // BATCH_SIZE)

    model = noisy.build_resnet(MODEL, 10, (32, 32, 3), dropout=0.5, survival_last=0.8)
    noisy.compile_model(model, keras.optimizers.Adam(1e-3), JIT_COMPILE)
    trainer = keras.Sequential([DeviceAugment(NUM_OPS, MAGNITUDE, seed=0), model])
    noisy.compile_model(trainer, keras.optimizers.Adam(1e-3), JIT_COMPILE)

    def epoch(device):
        stream = noisy.NoisyStream([(images, np.arange(IMAGES))], targets, BATCH_SIZE,
                                   randaugment=None if device else noisy.RandAugment(NUM_OPS, MAGNITUDE),
                                   flip_crop=not device, seed=0, workers=WORKERS,
                                   use_multiprocessing=MULTIPROCESSING)
        start = time.time()
        (trainer if device else model).fit(stream, epochs=1, verbose=0)
        return IMAGES / (time.time() - start)

    epoch(True), epoch(False)  # warm up: trace and compile both train steps
    device, pil = [], []
    for _ in range(REPEATS):
        device.append(epoch(True))
        pil.append(epoch(False))

    versions = [f"python {platform.python_version()}", f"keras {keras.__version__}", f"numpy {np.__version__}"]
    for name in ("tensorflow", "jax", "PIL"):
        try:
            versions.append(f"{name} {__import__(name).__version__}")
        except ImportError:
            pass
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}; {', '.join(versions)}")
    print(f"model {MODEL}, {IMAGES} synthetic 32x32 images, batch {BATCH_SIZE}, float32, {WORKERS} "
          f"{'process' if MULTIPROCESSING else 'thread'} workers, keras backend {backend}, "
          f"jit_compile {JIT_COMPILE}, RandAugment N={NUM_OPS} M={MAGNITUDE} + flip/crop")
    print("augmentation alone:")
    print(f"  PIL augment_batch, one core:              {pil_alone:8.0f} images/s")
    print(f"  DeviceAugment under jit, batch {BATCH_SIZE:4d}:     {small:8.0f} images/s")
    print(f"  DeviceAugment under jit, batch {ALONE_BATCH:4d}:     {alone[NUM_OPS]:8.0f} images/s")
    per_op = (1 / alone[1] - 1 / alone[0]) * ALONE_BATCH * 1e3
    print(f"  every op for every image: flip/crop only {alone[0]:.0f}, 1 op {alone[1]:.0f}, {NUM_OPS} ops "
          f"{alone[NUM_OPS]:.0f} images/s; one op application (all {len(noisy.randaugment.OPS)} computed, "
          f"one kept per image) costs {per_op:.1f} ms per {ALONE_BATCH} images")
    print(f"epoch, augmentation in the train step: {np.mean(device):8.0f} images/s  "
          f"({', '.join(f'{v:.0f}' for v in device)})")
    print(f"epoch, PIL in {WORKERS} workers:           {np.mean(pil):8.0f} images/s  "
          f"({', '.join(f'{v:.0f}' for v in pil)})")
    print(f"device / PIL:                          {np.mean(device) / np.mean(pil):8.2f}")
