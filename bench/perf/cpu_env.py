"""Which TensorFlow CPU kernels, and which memory allocator settings, train fastest here?
Student training steps (the `cpu` configuration's model, batch, RandAugment and worker
threads, on synthetic images) timed in child processes that differ only in their
environment:

    eigen           TF_ENABLE_ONEDNN_OPTS=0: TensorFlow's Eigen kernels, its own default on
                    CPUs without AVX-512 VNNI/BF16, AVX-VNNI or AMX
    eigen+malloc    the same, and glibc keeps freed memory in the process
                    (MALLOC_MMAP_THRESHOLD_ 32 MiB, the most it takes, MALLOC_TRIM_THRESHOLD_
                    16 GiB, MALLOC_TOP_PAD_ 256 MiB): where a page fault is slow (a sandboxed
                    kernel), per-step buffers otherwise come back as fresh pages, faulted in
                    and zeroed every step
    onednn          TF_ENABLE_ONEDNN_OPTS=1: oneDNN's kernels, what `noisy` sets unless the
                    shell says otherwise (noisy/__init__.py)
    onednn+malloc   both

    python bench/perf/cpu_env.py                  # 2 rounds of the 4 environments, alternating
    python bench/perf/cpu_env.py --steps=60 --repeats=3

It prints whether TensorFlow turns oneDNN on by itself on this CPU, seconds per step (mean
of each environment's rounds, the first WARMUP steps of each child left out), each
environment's speed as a ratio to the first one measured in this one run, and the minor
page faults per step. The malloc variables change where memory comes from, not what is
computed; oneDNN and Eigen kernels round differently, so runs made with one and the
other are not bit-identical (each is deterministic on its own).
"""
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from bench.perf.common import run_script, synthetic_images  # noqa: E402
from noisy.errors import install_error_hook, require  # noqa: E402
from noisy.presets import MODELS  # noqa: E402
from noisy.randaugment import RandAugment  # noqa: E402
from noisy.settings import configure  # noqa: E402

# ------------------------------------------------------------------------------ settings
MODEL = "resnet9_w16"     # student preset (the cpu configuration's)
BATCH_SIZE = 128          # images per step
WORKERS = 2               # PyDataset worker threads building noised batches
NUM_OPS = 2               # RandAugment operations per image
MAGNITUDE = 5             # RandAugment magnitude (0..30)
STEPS = 40                # steps per child process
WARMUP = 5                # first steps of each child left out of its time (tracing, first allocations)
REPEATS = 2               # rounds; each round runs every environment once, in turn
ENVIRONMENTS = "eigen,eigen+malloc,onednn,onednn+malloc"  # which of the environments above to time
CHILD = ""                # internal: the environment this process measures ('' = the parent)
# ------------------------------------------------------------------------------
MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(16 << 30),
          "MALLOC_TOP_PAD_": str(256 << 20)}
EIGEN, ONEDNN = {"TF_ENABLE_ONEDNN_OPTS": "0"}, {"TF_ENABLE_ONEDNN_OPTS": "1"}
ENV = {"eigen": EIGEN, "eigen+malloc": {**EIGEN, **MALLOC}, "onednn": ONEDNN, "onednn+malloc": {**ONEDNN, **MALLOC}}


def tensorflow_default():
    """Whether TensorFlow turns oneDNN on by itself here: asked in a child process without
    TF_ENABLE_ONEDNN_OPTS (the parent's copy of it is set by importing noisy)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    code = "from tensorflow.python.util import _pywrap_util_port as p; print(p.IsMklEnabled())"
    result = subprocess.run([sys.executable, "-c", code], env=dict(env, TF_CPP_MIN_LOG_LEVEL="3"),
                            capture_output=True, text=True)
    return {"True": "on", "False": "off"}.get(result.stdout.strip(), "unknown (TensorFlow not importable)")


def measure():
    """Time STEPS - WARMUP training steps in this process; print one JSON line."""
    import keras
    import noisy
    from noisy.resnet import build_resnet
    from noisy.streams import NoisyStream
    from noisy.training import compile_model
    require(keras.backend.backend() == "tensorflow", "bench/perf/cpu_env.py times TensorFlow's CPU kernels: run it with "
            "KERAS_BACKEND=tensorflow")
    from noisy.stages import provenance
    onednn = provenance()["cpu_kernels"] == "onednn"  # the stages' own record of the kernels
    images, labels = synthetic_images(STEPS * BATCH_SIZE, seed=4)
    stream = NoisyStream([(images, np.arange(len(images)))], noisy.one_hot(labels, 10), BATCH_SIZE,
                         randaugment=noisy.RandAugment(NUM_OPS, MAGNITUDE), flip_crop=True, seed=0,
                         workers=WORKERS)
    model = build_resnet(MODEL, 10, (32, 32, 3), dropout=0.2, survival_last=0.9, weight_decay=5e-4)
    compile_model(model, keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True), label_smoothing=0.1)

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == WARMUP - 1:
                self.start, self.faults = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt

        def on_train_end(self, logs=None):
            steps = STEPS - WARMUP
            self.result = {"seconds_per_step": (time.perf_counter() - self.start) / steps,
                           "onednn": onednn,
                           "faults_per_step": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - self.faults) / steps}

    clock = Clock()
    model.fit(stream, epochs=1, verbose=0, callbacks=[clock])
    print(json.dumps(clock.result))


def child_result(name, settings):
    """One child's JSON line; a child that fails ends this run with its own error line."""
    result = run_script("bench/perf/cpu_env.py", f"--child={name}", *settings, env=ENV[name], check=False)
    if result.returncode != 0:
        if os.environ.get("NOISY_TRACEBACK"):
            sys.stderr.write(result.stderr)  # the child's traceback, as asked
        said = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        how = (f"exit {result.returncode}" if result.returncode > 0 else f"killed by signal {-result.returncode}")
        require(False, f"the {name} child failed ({how}): "
                + (said[-1].removeprefix("error: ") if said else "it wrote no error line"))
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    names = [name.strip() for name in ENVIRONMENTS.split(",") if name.strip()]
    require(names and all(name in ENV for name in names) and len(set(names)) == len(names),
            f"--environments={ENVIRONMENTS!r}: expected distinct names from {', '.join(ENV)}")
    require(STEPS > WARMUP >= 1 and REPEATS >= 1, "--steps must exceed --warmup >= 1, and --repeats >= 1")
    require(BATCH_SIZE >= 1 and WORKERS >= 1, "--batch_size and --workers must be at least 1")
    require(MODEL in MODELS, f"--model={MODEL!r}: expected one of {', '.join(MODELS)}")
    try:
        RandAugment(NUM_OPS, MAGNITUDE)  # its settings checked here, before any child loads TensorFlow
    except ValueError as e:
        require(False, f"--num_ops={NUM_OPS} --magnitude={MAGNITUDE}: {e}")
    settings = [f"--{name.lower()}={globals()[name]}" for name in ("MODEL", "BATCH_SIZE", "WORKERS", "NUM_OPS",
                                                                    "MAGNITUDE", "STEPS", "WARMUP")]
    for key in MALLOC:  # set in this shell, they would reach every child
        os.environ.pop(key, None)
    runs = {name: [] for name in names}
    for round_ in range(REPEATS):
        for name in names:
            runs[name].append(child_result(name, settings))
            print(f"round {round_ + 1}, {name}: {runs[name][-1]['seconds_per_step']:.3f} s/step", flush=True)
    base = np.mean([r["seconds_per_step"] for r in runs[names[0]]])
    print(f"\n{MODEL}, batch {BATCH_SIZE}, {WORKERS} worker threads, RandAugment {NUM_OPS} ops at {MAGNITUDE}; "
          f"{STEPS - WARMUP} timed steps per child, {REPEATS} rounds; {os.cpu_count()} CPUs; TensorFlow's "
          f"own oneDNN default on this CPU: {tensorflow_default()}")
    print(f"| environment | oneDNN | s/step (mean of rounds) | speed vs {names[0]} | page faults/step |")
    print("|---|---|---|---|---|")
    for name in names:
        mean = np.mean([r["seconds_per_step"] for r in runs[name]])
        faults = np.mean([r["faults_per_step"] for r in runs[name]])
        onednn = {r["onednn"] for r in runs[name]}
        require(onednn == {ENV[name]["TF_ENABLE_ONEDNN_OPTS"] == "1"},
                f"{name}: TensorFlow did not take TF_ENABLE_ONEDNN_OPTS={ENV[name]['TF_ENABLE_ONEDNN_OPTS']}")
        print(f"| {name} | {'on' if onednn.pop() else 'off'} | {mean:.3f} | {base / mean:.2f}x | {faults:,.0f} |")


if __name__ == "__main__":
    install_error_hook()
    configure(globals())
    if CHILD:
        measure()
    else:
        main()
