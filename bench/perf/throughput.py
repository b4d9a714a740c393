"""Throughput measurement on an accelerator, for any benchmark: the dense bf16 peak of
known devices, a model's FLOPs counted from its layers, the device's name, the GPU's busy
fraction sampled from nvidia-smi, a callback that times every step's end and the epoch's
end, and a child process run within a time budget. bench/perf/gpu.py is one recipe built from them."""
import os
import shutil
import signal
import subprocess
import threading
import time

import numpy as np

from bench.perf.common import REPO

# Dense bfloat16 TFLOP/s of the vendors' data sheets (V100: float16, it has no bfloat16); a
# fraction of it is meaningful for bfloat16 steps only.
PEAKS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L4": 121.0, "A10": 125.0, "V100": 125.0}


def forward_flops(model):
    """2 x multiply-adds of every Conv2D and Dense at their output size (BN, ReLU, pooling left out)."""
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


class GpuBusy:
    """Mean GPU utilization (%) from `nvidia-smi ... -lms interval` in a background process,
    between start() and stop(); stop() returns the text to report."""

    def __init__(self, interval_ms=200):
        self.interval_ms, self.process, self.samples = interval_ms, None, []

    def start(self):
        if shutil.which("nvidia-smi") is None or self.process:
            return
        self.process = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                         f"-lms={self.interval_ms}"], stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stdout:
            try:
                self.samples.append(float(line.split(",")[0]))
            except ValueError:
                pass

    def stop(self):
        if shutil.which("nvidia-smi") is None:
            return "GPU busy n/a (no nvidia-smi)"
        if self.process:
            self.process.terminate()
            self.process.wait()
            self.reader.join(timeout=2)
        if not self.samples:
            return "GPU busy n/a (no samples)"
        return f"GPU busy {np.mean(self.samples):.0f}% (mean of {len(self.samples)} samples, min {min(self.samples):.0f}%)"


def step_clock(deadline, min_steps):
    """A callback that takes the time at the end of every step of fit or predict, once
    Keras has read the step's outputs (so the step has run), samples the GPU's busy
    fraction from the first step's end, stops the loop at `deadline` once `min_steps` are
    done, and takes the time at the epoch's end (after the callbacks before it: fit's
    checkpoint). `async_safe`: where no other callback needs the batch's end, Keras keeps
    dispatching steps meanwhile and calls it from its callback thread, as without it."""
    import keras

    class StepClock(keras.callbacks.Callback):
        async_safe = True

        def __init__(self):
            super().__init__()
            self.ends, self.epoch_end, self.busy = {}, None, GpuBusy()

        def tick(self, step):
            self.ends[step] = time.time()
            if step == 0:
                self.busy.start()
            elif time.time() > deadline and len(self.ends) >= min_steps:
                self.model.stop_training = self.model.stop_predicting = True

        def on_train_batch_end(self, step, logs=None):
            self.tick(step)

        def on_predict_batch_end(self, step, logs=None):
            self.tick(step)

        def on_epoch_end(self, epoch, logs=None):
            self.epoch_end = time.time()

        def timed(self):
            """(steps timed, their seconds): from the first step's end to the last's,
            so compilation and worker start-up are left out."""
            ends = sorted(self.ends.values())
            return len(ends) - 1, ends[-1] - ends[0]

        @property
        def last(self):
            return max(self.ends.values())

    return StepClock()


def run_child(command, seconds, report, prefix="  ", quiet=False):
    """Run `command`, reporting its output lines as they come (unless quiet); kill its
    whole process group after `seconds`; `report(line)` prints a line. Returns (exit code
    or None if killed, wall seconds)."""
    start = time.time()
    child = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True,
                             env=dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="3"))

    def relay():
        for line in child.stdout:
            if not quiet:
                report(prefix + line.rstrip())

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    try:
        code = child.wait(timeout=max(seconds, 1))
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGTERM)
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        code = None
    reader.join(timeout=5)
    elapsed = time.time() - start
    if code is None:
        report(f"{prefix}(stopped at its budget of {seconds:.0f} s)")
    elif code:
        report(f"{prefix}(exit code {code} after {elapsed:.0f} s)")
    return code, elapsed
