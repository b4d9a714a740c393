"""GPU throughput of the article's ResNet50: training images/s at a few batch sizes in
bfloat16, with synthetic arrays and with the real noised PyDataset stream, labeling
images/s, and the fraction of the chip's bf16 peak (issue #4, item 5).

    KERAS_BACKEND=jax python bench/gpu.py --out=docs/gpu-h100.txt
    python bench/gpu.py --model=tiny --batch_sizes="(32,)" --steps=3 --label_images=2048   # CPU check

Runs with TensorFlow or with JAX alone (no TensorFlow, no internet): the GPU machine we
can reach has JAX, and keras, namex and optree can be carried there as wheels.

FLOPs are counted from the layers (2 x multiply-adds of every Conv2D and Dense at their
output size; BN, ReLU and pooling are left out); a training step is counted as 3x the
forward pass (forward, and backward for inputs and weights). The peak is the vendor's
dense bf16 tensor-core figure for the device found (H100/H200 SXM: 989 TFLOP/s), or
--peak_tflops.
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import noisy  # noqa: E402

MODEL = "resnet50"          # preset to measure
BATCH_SIZES = (128, 256, 512)  # training batch sizes
STEPS = 30                  # timed training steps per batch size (after one warm-up epoch)
PRECISION = "bfloat16"      # '', 'bfloat16' or 'float16'
LABEL_IMAGES = 100_000      # images to label with predict
LABEL_BATCH = 2048          # prediction batch
STREAM_WORKERS = 16         # workers of the noised stream (processes)
PEAK_TFLOPS = 0.0           # 0 = look up the device's dense bf16 peak
OUT = ""                    # also write the report to this file

PEAKS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L4": 121.0, "A10": 125.0, "V100": 125.0}


def forward_flops(model):
    total = 0
    for layer in model.layers:
        if layer.__class__.__name__ == "Conv2D":
            _, h, w, c_out = layer.output.shape
            kh, kw = layer.kernel_size
            total += 2 * h * w * kh * kw * layer.input.shape[-1] * c_out
        elif layer.__class__.__name__ == "Dense":
            total += 2 * layer.input.shape[-1] * layer.units
    return total


def device_name():
    import keras
    if keras.backend.backend() == "jax":
        import jax
        return jax.devices()[0].device_kind
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf
        gpus = tf.config.list_physical_devices("GPU")
        return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else "CPU"
    return keras.backend.backend()


if __name__ == "__main__":
    noisy.install_error_hook()
    noisy.configure(globals())
    import keras
    lines = []

    def report(text):
        print(text, flush=True)
        lines.append(text)

    noisy.configure_devices(PRECISION)
    device = device_name()
    peak = PEAK_TFLOPS or next((v for k, v in PEAKS.items() if k in device), 0.0)
    model = noisy.build_resnet(MODEL, 10, (32, 32, 3), dropout=0.5, survival_last=0.8)
    flops = forward_flops(model)
    report(f"device {device}; keras {keras.__version__}, backend {keras.backend.backend()}; "
           f"model {MODEL} ({model.count_params():,} parameters, {flops / 1e9:.3f} GFLOP forward per "
           f"32x32 image); precision {PRECISION or 'float32'}; peak {peak or 'unknown'} TFLOP/s")
    rng = np.random.default_rng(0)

    for batch in BATCH_SIZES:
        model = noisy.build_resnet(MODEL, 10, (32, 32, 3), dropout=0.5, survival_last=0.8)
        noisy.compile_model(model, keras.optimizers.SGD(0.1, momentum=0.9), "true")
        x = rng.integers(0, 256, (batch * STEPS, 32, 32, 3), dtype=np.uint8)
        y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch * STEPS)]
        start = time.time()
        model.fit(x[:batch * 2], y[:batch * 2], batch_size=batch, epochs=1, verbose=0)  # compile
        compile_s = time.time() - start
        start = time.time()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
        rate = batch * STEPS / (time.time() - start)
        tflops = rate * 3 * flops / 1e12
        report(f"train batch {batch:5d}: {rate:9.0f} images/s, {tflops:7.1f} TFLOP/s"
               + (f" = {tflops / peak:6.1%} of peak" if peak else "") + f"  (first epoch with compile {compile_s:.0f} s)")

    # The real input path: NoisyStream with RandAugment in worker processes, largest batch.
    batch = BATCH_SIZES[-1]
    images = rng.integers(0, 256, (batch * STEPS, 32, 32, 3), dtype=np.uint8)
    stream = noisy.NoisyStream([(images, np.arange(len(images)))],
                               np.eye(10, dtype=np.float32)[rng.integers(0, 10, len(images))], batch,
                               randaugment=noisy.RandAugment(2, 10), flip_crop=True,
                               workers=STREAM_WORKERS, use_multiprocessing=True)
    model.fit(stream, epochs=1, verbose=0)
    start = time.time()
    model.fit(stream, epochs=1, verbose=0)
    report(f"train batch {batch:5d} from the noised stream ({STREAM_WORKERS} worker processes): "
           f"{len(stream) * batch / (time.time() - start):9.0f} images/s")

    pool = rng.integers(0, 256, (LABEL_IMAGES, 32, 32, 3), dtype=np.uint8)
    batches = noisy.ImageBatches(pool, np.arange(LABEL_IMAGES), LABEL_BATCH)
    model.predict(noisy.ImageBatches(pool[:LABEL_BATCH * 2], np.arange(LABEL_BATCH * 2), LABEL_BATCH), verbose=0)
    start = time.time()
    model.predict(batches, verbose=0)
    rate = LABEL_IMAGES / (time.time() - start)
    report(f"label batch {LABEL_BATCH}: {rate:9.0f} images/s, {rate * flops / 1e12:7.1f} TFLOP/s"
           + (f" = {rate * flops / 1e12 / peak:6.1%} of peak" if peak else ""))
    if OUT:
        noisy.save_text(OUT, "\n".join(lines) + "\n")
