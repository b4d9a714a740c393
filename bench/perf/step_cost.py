"""What the training scripts' callbacks and the weight average cost per training step
(issue #35): the ResNet50 preset with the article's Adam (lr 1e-3), trained by

    bare     model.fit(stream), no callbacks
    default  noisy.training.fit(..., average=0.0): the scripts' callbacks (StopOnNaN, the epoch
             checkpoint, the plateau schedule's ReduceLROnPlateau and EarlyStopping)
    average  noisy.training.fit(..., average=0.999): the same plus the weight average

at the article's batch (64) and at a small one (8), where a step's compute is small, as
on a GPU, so a fixed per-step cost shows. One command measures every backend of BACKENDS,
each in a fresh child process (a backend is chosen before Keras loads), and writes one
file:

    python bench/perf/step_cost.py --out=docs/step-cost-cpu.txt

How a step is timed. Every variant trains the same compiled model (one per backend) on
the same random uint8 images (a NoisyStream without noise) for one epoch of WARMUP +
STEPS batches; a callback takes the wall clock and the process's CPU time at the end of
every batch, once Keras has read the batch's loss (so the step has run). A fit's step is
the time from the end of its last warm-up step (compilation, worker start-up) to the end
of its last step, over the steps between: one gap between two batch ends jitters (under
JAX Keras runs batch-end callbacks in a thread, and the clock with them), a span of many
does not. The callback is `async_safe`, so under JAX the bare fit still dispatches its
batch-end work asynchronously, as without callbacks (TensorFlow runs them in the loop).
Work at the epoch's end (the checkpoint's write, validation) is not a step and is not
counted here: bench/perf/gpu.py measures the checkpoint's write per epoch.

The variants are interleaved (their order rotated every round) and repeated ROUNDS times.
Each cell is a variant's least time per step over the rounds (on each clock), and its
ratio that over bare's least: on a shared machine other tenants only ever add time, so the fastest of the
rounds is the figure they disturb least (timeit's reasoning), while a cost a variant adds
to every step is in all its rounds. Both clocks are printed: wall time is what a user
waits, the process's CPU time (all its threads) the work done. On the shared 2-core CPU
they moved together (docs/BENCHMARKS.md), so CPU time checks wall time there rather than
being quieter; on a GPU, where the step's work is not on the CPU, read wall time. Each
round's wall time per step is in brackets. TensorFlow's rounds of the same work spread
by up to 40% on that CPU: three rounds could not resolve it, seven did (--rounds=7).

Cost on the 2-core CPU: a ResNet50 step takes seconds at batch 8 on 32x32 images,
a batch of 64 eight times the compute, and each backend compiles for a minute or more, so
the default run takes about an hour there; `--batch_sizes="(8,)" --steps="(8,)"`
measures the small batch alone. On a GPU it takes minutes.
"""
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
import noisy  # noqa: E402  (light: the parent process never imports Keras)

# ------------------------------------------------------------------------------ settings
MODEL = "resnet50"          # model preset (the article's)
BATCH_SIZES = (64, 8)       # the article's batch, and a small one where a step's compute is small
IMAGE_SIZE = 32             # CIFAR's; 8 keeps every variable of the model at 1/16 of the compute (a GPU-like step on a CPU)
VARIANTS = ("bare", "default", "average")  # see the docstring
AVERAGE = 0.999             # the weight average's decay in the 'average' variant
BACKENDS = ("tensorflow", "jax")  # one child process each
ROUNDS = 3                  # repeats of every (batch, variant), interleaved
WARMUP = 1                  # steps left out at the start of each fit (the first step's end starts the clock)
STEPS = (2, 8)              # timed steps per fit, one number per batch size of BATCH_SIZES
JIT_COMPILE = "auto"        # as the scripts' default
OUT = ""                    # the report, also printed; '' = print only
QUICK = False               # True = a check that the script runs: model 'tiny', batch 8, 1 round, 2 steps
CHILD = ""                  # internal: the child's result file (JSON)
# ------------------------------------------------------------------------------

QUICK_SETTINGS = dict(MODEL="tiny", BATCH_SIZES=(8,), ROUNDS=1, WARMUP=1, STEPS=(2,))


def steps_for(batch):
    return STEPS[BATCH_SIZES.index(batch)]


# ------------------------------------------------------------------------------ the child
def measure():
    """One backend: {batch: {variant: [per round: (wall, CPU) seconds per step]}}, and the compile times."""
    import keras
    import numpy as np
    from noisy.resnet import build_resnet
    from noisy.streams import NoisyStream
    from noisy.training import compile_model, fit, make_optimizer

    class StepClock(keras.callbacks.Callback):
        async_safe = True  # see the docstring

        def __init__(self):
            super().__init__()
            self.ends = {}

        def on_train_batch_end(self, batch, logs=None):
            self.ends[batch] = (time.perf_counter(), time.process_time())

        def step_seconds(self):
            """(wall, CPU) seconds per step after the warm-up (see the docstring)."""
            ends = [self.ends[k] for k in sorted(self.ends)]
            first, last, n = ends[WARMUP - 1], ends[-1], len(ends) - WARMUP
            return (last[0] - first[0]) / n, (last[1] - first[1]) / n

    keras.utils.set_random_seed(0)
    model = build_resnet(MODEL, 10, (IMAGE_SIZE, IMAGE_SIZE, 3))
    compile_model(model, make_optimizer("adam", 1e-3, "plateau", 0, 0), JIT_COMPILE)
    rng = np.random.default_rng(0)
    streams, compile_s = {}, {}
    for batch in BATCH_SIZES:
        n = batch * (WARMUP + steps_for(batch))
        images = rng.integers(0, 256, (n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        targets = noisy.one_hot(rng.integers(0, 10, n), 10)
        streams[batch] = NoisyStream([(images, np.arange(n))], targets, batch)
        start = time.perf_counter()  # compile at this batch's shape (two steps)
        model.fit(NoisyStream([(images[:2 * batch], np.arange(2 * batch))], targets[:2 * batch], batch),
                  epochs=1, verbose=0)
        compile_s[batch] = time.perf_counter() - start

    def timed(variant, batch):
        clock, stream = StepClock(), streams[batch]
        if variant == "bare":
            model.fit(stream, epochs=1, verbose=0, callbacks=[clock], shuffle=False)
        else:
            with tempfile.TemporaryDirectory() as stage_dir:  # its resume checkpoint goes here
                # The training scripts' call (train_teacher.py): plateau schedule, FLAT_EPOCHS 250, PATIENCE 10,
                # no validation split here (validation runs at the epoch's end, not in a step).
                stream.set_epoch(0)
                fit(model, stream, None, stage_dir, 1, "plateau", 250, 10,
                    AVERAGE if variant == "average" else 0.0, verbose=2, callbacks=[clock])
        return clock.step_seconds()

    seconds = {batch: {v: [] for v in VARIANTS} for batch in BATCH_SIZES}
    for r in range(ROUNDS):
        for batch in BATCH_SIZES:
            for variant in VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]:
                seconds[batch][variant].append(timed(variant, batch))
                wall, cpu = seconds[batch][variant][-1]
                print(f"round {r + 1}, batch {batch}, {variant}: {wall * 1e3:.1f} ms/step, CPU {cpu * 1e3:.1f} ms/step",
                      file=sys.stderr, flush=True)
    versions = {"keras": keras.__version__, "backend": keras.backend.backend()}
    if keras.backend.backend() == "jax":
        import jax
        versions["jax"] = jax.__version__
    else:
        import tensorflow as tf
        versions["tensorflow"] = tf.__version__
    return {"seconds": seconds, "compile_s": compile_s, "parameters": model.count_params(), "versions": versions}


# ------------------------------------------------------------------------------ the parent
def machine():
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.processor() or "unknown CPU") if os.path.exists("/proc/cpuinfo") else platform.processor()
    return f"{model}, {len(os.sched_getaffinity(0))} cores usable ({os.cpu_count()} online), {platform.platform()}"


def commit():
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return (git("rev-parse", "--short", "HEAD") or "unknown") + (" (with uncommitted changes)" if dirty else "")


def table(result):
    lines = []
    for batch in BATCH_SIZES:
        cells = result["seconds"][str(batch)]
        fastest = {v: [min(fit[k] for fit in cells[v]) for k in (0, 1)] for v in VARIANTS}  # [wall, CPU]
        for variant in VARIANTS:
            (wall, cpu), (bare_wall, bare_cpu) = fastest[variant], fastest["bare"]
            ratios = ["", ""] if variant == "bare" else [f"{wall / bare_wall:5.2f}x", f"{cpu / bare_cpu:5.2f}x"]
            rounds = ", ".join(f"{fit[0] * 1e3:.1f}" for fit in cells[variant])
            lines.append(f"  {batch:5d}  {variant:8s} {wall * 1e3:9.1f} ms  {ratios[0]:6s}  {cpu * 1e3:9.1f} ms  "
                         f"{ratios[1]:6s}  [{rounds}]")
    return lines


def main():
    lines = []

    def report(text):
        print(text, flush=True)
        lines.append(text)
        if OUT:
            os.makedirs(os.path.dirname(os.path.abspath(OUT)), exist_ok=True)
            with open(OUT, "w") as f:
                f.write("\n".join(lines) + "\n")

    start = time.time()
    report(f"$ python bench/perf/step_cost.py {' '.join(sys.argv[1:])}")
    report(f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}; commit {commit()}; {machine()}; "
           f"load average at start {os.getloadavg()[0]:.2f}")
    report(f"model {MODEL} on {IMAGE_SIZE}x{IMAGE_SIZE} images, Adam lr 1e-3, jit_compile {JIT_COMPILE}; batch sizes {BATCH_SIZES}; {ROUNDS} rounds of "
           f"every variant, interleaved; per fit {WARMUP} warm-up steps, then "
           + ", ".join(f"{steps_for(b)} timed steps at batch {b}" for b in BATCH_SIZES)
           + f"; average = decay {AVERAGE}; random uint8 images; seed 0")
    report("per step, each clock's least over the rounds: wall time and its ratio to bare's, the process's CPU time "
           "and its ratio to bare's; [each round's wall time]")
    failed = False
    for backend in BACKENDS:
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "result.json")
            # The child's progress goes to stderr as it comes; Keras' epoch lines (stdout) are dropped.
            child = subprocess.run([sys.executable, os.path.abspath(__file__), *sys.argv[1:], f"--child={path}"],
                                   cwd=REPO, env=dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3"),
                                   stdout=subprocess.DEVNULL)
            if child.returncode or not os.path.isfile(path):
                report(f"{backend}: FAILED (exit code {child.returncode}; its error is on stderr above)")
                failed = True
                continue
            with open(path) as f:
                result = json.load(f)
        report(f"{backend}: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items())
               + f"; {result['parameters']:,} parameters; compile "
               + ", ".join(f"{float(s):.0f} s at batch {b}" for b, s in result["compile_s"].items()))
        report("  batch  variant       wall/step  ratio     CPU/step  ratio   [rounds' wall]")
        for line in table(result):
            report(line)
    report(f"done in {time.time() - start:.0f} s; load average at the end {os.getloadavg()[0]:.2f}")
    return 1 if failed else 0


if __name__ == "__main__":
    noisy.install_error_hook()
    noisy.configure(globals())
    if QUICK:  # tiny settings, except those given on the command line
        given = {arg[2:].split("=", 1)[0].upper() for arg in sys.argv[1:]}
        globals().update({k: v for k, v in QUICK_SETTINGS.items() if k not in given})
    if CHILD:
        noisy.import_keras()  # first: without TensorFlow's start-up notices, and under JAX without TensorFlow
        result = measure()
        with open(CHILD, "w") as f:
            json.dump(result, f)
    else:
        sys.exit(main())
