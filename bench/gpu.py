"""One prepared GPU benchmark (a recipe for one machine, built from bench/throughput.py's
parts) that ends within 8 minutes (issue #19, item 4): (a) training
images/s of the article's noised ResNet50 (dropout 0.5, survival 0.8) in bfloat16 with
XLA, input noise on the device or in CPU workers, with the fraction of the bf16 peak and
the GPU's busy fraction; (c) labeling images/s; (b) the `cpu` configuration's six arms of
bench/effect.py for one seed with the noise on the device, its wall time and its table.

On the device machine (JAX, no TensorFlow, no internet), from the repository root, with
`carry: [".whl", ".data"]` (about 23 MB: keras 3.15.1, namex, optree wheels, 2.9 MB, and
the shared CIFAR-10 JPEG tarball, 19.6 MB; an .npz of CIFAR-10 would not fit in the
64 MiB working tree):

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; KERAS_BACKEND=jax PYTHONUNBUFFERED=1 python3 bench/gpu.py --data=.data/cifar10-jpg.tar.gz --out=$OUT/gpu.txt

Prepared here once (both folders ignored by git, never committed):

    echo /.whl/ >> "$(git rev-parse --git-path info/exclude)"; echo /.data/ >> "$(git rev-parse --git-path info/exclude)"
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \\
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl keras==3.15.1 namex optree
    mkdir -p .data && cp ../shared/data/cifar10-jpg.tar.gz .data/

A check of every part end to end on a CPU with tiny settings (a few minutes; a synthetic
dataset and effect.py's `smoke` configuration; the numbers mean nothing):

    python bench/gpu.py --dry_run=True --out=/tmp/gpu-dry.txt
    KERAS_BACKEND=jax python bench/gpu.py --dry_run=True --out=/tmp/gpu-dry-jax.txt

The clock: this process starts each part as a child process with a time budget and kills
it when the budget is spent, so the whole ends before TOTAL_SECONDS (7 min 40 s: the wheel
install before it takes seconds). Budgets: setup (unpack the data) as long as it takes,
about 10 s; (a) TRAIN_SECONDS, split evenly over its batch sizes and input paths, each
stopping its timed steps early at its share; (c) LABEL_SECONDS; (b) the rest, less
FINISH_SECONDS to write the table of what finished. Every line is printed as it comes
(flushed) and appended to --out at once, so a killed run still leaves its output. Next to
--out go effect.md, effect.json, effect.png and effect-logs.txt (every stage's log).

(a) FLOPs are counted from the layers (2 x multiply-adds of every Conv2D and Dense at their
output size; BN, ReLU and pooling left out); a training step is 3x the forward pass. The
peak is the vendor's dense bf16 figure for the device found (H100/H200 SXM: 989 TFLOP/s),
or --peak_tflops. Images/s are timed from the end of the first timed step to the end of
the epoch (compile and worker start-up excluded), on random uint8 32x32 images fed by the
training scripts' NoisyStream: 'device' ships uint8 batches and runs RandAugment, flip and
crop in the train step (`with_device_noise`); 'cpu' builds them with PIL in
STREAM_WORKERS worker processes. GPU busy: the mean of `nvidia-smi
--query-gpu=utilization.gpu` sampled every 200 ms over the timed steps (every second over
part b): the share of time a kernel was running, not of the chip's arithmetic.

(b) If effect.py cannot finish in its budget, the table covers the phases that finished
(arms 2 and 4 first) and the stage times show what each stage cost; a smaller student
budget finishes more: add --effect_args='("--student_images=300000",)'.
"""
import glob
import os
import shutil
import sys
import tarfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
import noisy  # noqa: E402  (lazy: the parent process never imports Keras)
from bench.throughput import PEAKS, GpuBusy, device_name, forward_flops, run_child, step_clock  # noqa: E402

# ------------------------------------------------------------------------------ settings
MODEL = "resnet50"          # preset to measure in parts a and c
BATCH_SIZES = (128, 256, 512)  # part a: training batch sizes
AUGMENTS = ("device", "cpu")  # part a: where the input noise runs ('device' in the train step, 'cpu' PIL workers)
STEPS = 60                  # part a: timed training steps per batch size and path, at most (fewer at its time share)
NUM_OPS = 2                 # RandAugment operations per image
MAGNITUDE = 10              # RandAugment magnitude on the 0..30 scale
PRECISION = "bfloat16"      # '', 'bfloat16' or 'float16'
JIT_COMPILE = "true"        # XLA: 'auto', 'true' or 'false'
STREAM_WORKERS = 16         # part a: workers building batches
MULTIPROCESSING = True      # part a: workers as processes (True) or threads (False)
LABEL_IMAGES = 100_000      # part c: images to label with predict
LABEL_BATCH = 2048          # part c: prediction batch
PEAK_TFLOPS = 0.0           # 0 = look up the device's dense bf16 peak
DATA = ""                   # part b: CIFAR-10 as a .tar.gz of train/<class>/ test/<class>/ (unpacked here), a folder or an .npz; '' = skip b
EFFECT_CONFIG = "cpu"       # part b: effect.py's configuration
EFFECT_TRAIN_ARGS = ("--augment=device", "--jit_compile=true")  # part b: effect.py --train_args
EFFECT_ARGS = ()            # part b: more effect.py arguments, e.g. '("--student_images=300000",)'
TOTAL_SECONDS = 460         # the whole run, all parts
TRAIN_SECONDS = 180         # part a's budget
LABEL_SECONDS = 35          # part c's budget
FINISH_SECONDS = 15         # kept after part b for its table and the files
WORK = "/tmp/gpu-bench"     # scratch folder (emptied first): the unpacked data, effect.py's runs
OUT = ""                    # also write the report to this file (and effect.* beside it)
DRY_RUN = False             # True = tiny settings on a CPU: model 'tiny', synthetic data, effect.py's 'smoke'
PART = ""                   # internal: '' runs everything; 'train' / 'label' is one part in a child process
PART_SECONDS = 0.0          # internal: the child's budget
# ------------------------------------------------------------------------------

DRY = dict(MODEL="tiny", BATCH_SIZES=(32, 64), STEPS=4, STREAM_WORKERS=2, LABEL_IMAGES=1024, LABEL_BATCH=256,
           EFFECT_CONFIG="smoke", WORK="/tmp/gpu-bench-dry", TOTAL_SECONDS=240, TRAIN_SECONDS=90, LABEL_SECONDS=30)


def report(text):
    """Print a line at once and append it to OUT at once: a killed run keeps its output."""
    print(text, flush=True)
    if OUT:
        with open(OUT, "a") as f:
            f.write(text + "\n")


# ------------------------------------------------------------------------------ child parts
def train_part(deadline):
    """(a) Training images/s per batch size and noise path, each within its share."""
    import keras
    noisy.configure_devices(PRECISION)
    device = device_name()
    peak = PEAK_TFLOPS or next((v for k, v in PEAKS.items() if k in device), 0.0)
    model = noisy.build_resnet(MODEL, 10, (32, 32, 3), dropout=0.5, survival_last=0.8)
    flops = forward_flops(model)
    report(f"device {device}; keras {keras.__version__}, backend {keras.backend.backend()}; model {MODEL} "
           f"({model.count_params():,} parameters, {flops / 1e9:.3f} GFLOP forward per 32x32 image); precision "
           f"{PRECISION or 'float32'}, jit_compile {JIT_COMPILE}; peak {peak or 'unknown'} TFLOP/s; "
           f"{STREAM_WORKERS} stream workers ({'processes' if MULTIPROCESSING else 'threads'})")
    rng = np.random.default_rng(0)
    runs = [(batch, augment) for batch in BATCH_SIZES for augment in AUGMENTS]
    setup = 5.0  # seconds one run needs before its timed steps (build, compile): the last one's
    for k, (batch, augment) in enumerate(runs):
        left = deadline - time.time()
        if left < setup + 5:
            report(f"train batch {batch:5d}, noise on {augment:6s}: skipped, {left:.0f} s left of part a's budget")
            continue
        keras.backend.clear_session()
        setup = train_one(batch, augment, time.time() + left / (len(runs) - k), rng, flops, peak)


def train_one(batch, augment, deadline, rng, flops, peak):
    import keras

    start = time.time()
    model = noisy.build_resnet(MODEL, 10, (32, 32, 3), dropout=0.5, survival_last=0.8)
    trainer = noisy.with_device_noise(model, NUM_OPS, MAGNITUDE, False, 0) if augment == "device" else model
    noisy.compile_model(trainer, keras.optimizers.SGD(0.1, momentum=0.9), JIT_COMPILE)
    n = batch * (STEPS + 1)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    targets = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]

    def stream(count):
        return noisy.NoisyStream([(images[:count], np.arange(count))], targets[:count], batch,
                                 randaugment=noisy.RandAugment(NUM_OPS, MAGNITUDE) if augment == "cpu" else None,
                                 flip_crop=augment == "cpu", workers=STREAM_WORKERS,
                                 use_multiprocessing=MULTIPROCESSING)

    trainer.fit(stream(2 * batch), epochs=1, verbose=0)  # compile
    compile_s = time.time() - start
    clock = step_clock(deadline, min_steps=4)
    trainer.fit(stream(n), epochs=1, verbose=0, callbacks=[clock])
    seconds = time.time() - clock.first
    busy = clock.busy.stop()
    rate = (clock.steps - 1) * batch / seconds
    tflops = rate * 3 * flops / 1e12
    report(f"train batch {batch:5d}, noise on {augment:6s}: {rate:9.0f} images/s, {tflops:7.1f} TFLOP/s"
           + (f" = {tflops / peak:6.1%} of peak" if peak else "")
           + f"; {busy}; {clock.steps - 1} steps timed in {seconds:.1f} s (build + compile {compile_s:.0f} s)")
    return compile_s


def label_part(deadline):
    """(c) Labeling images/s: predict at LABEL_BATCH, un-noised, stopping at the deadline."""
    noisy.configure_devices(PRECISION)
    model = noisy.build_resnet(MODEL, 10, (32, 32, 3), dropout=0.5, survival_last=0.8)
    flops = forward_flops(model)
    peak = PEAK_TFLOPS or next((v for k, v in PEAKS.items() if k in device_name()), 0.0)
    pool = np.random.default_rng(1).integers(0, 256, (LABEL_IMAGES, 32, 32, 3), dtype=np.uint8)
    start = time.time()
    model.predict(noisy.ImageBatches(pool[:LABEL_BATCH * 2], np.arange(LABEL_BATCH * 2), LABEL_BATCH), verbose=0)
    compile_s = time.time() - start
    clock = step_clock(deadline, min_steps=3)
    model.predict(noisy.ImageBatches(pool, np.arange(LABEL_IMAGES // LABEL_BATCH * LABEL_BATCH), LABEL_BATCH),
                  verbose=0, callbacks=[clock])
    seconds = time.time() - clock.first
    rate = (clock.steps - 1) * LABEL_BATCH / seconds
    report(f"label batch {LABEL_BATCH}: {rate:9.0f} images/s, {rate * flops / 1e12:7.1f} TFLOP/s"
           + (f" = {rate * flops / 1e12 / peak:6.1%} of peak" if peak else "")
           + f"; {clock.busy.stop()}; {clock.steps - 1} batches timed in {seconds:.1f} s (compile {compile_s:.0f} s)")


# ------------------------------------------------------------------------------ the parent
def prepare_data():
    """The labeled source for effect.py: DATA unpacked into WORK if a tarball; a tiny
    synthetic .npz for a dry run without DATA."""
    if DATA.endswith((".tar.gz", ".tgz", ".tar")):
        target = os.path.join(WORK, "data")
        with tarfile.open(DATA) as tar:
            tar.extractall(target, filter="data")
        found = [os.path.dirname(p) for p in glob.glob(os.path.join(target, "**", "train"), recursive=True)
                 if os.path.isdir(os.path.join(os.path.dirname(p), "test"))]
        noisy.require(found, f"--data={DATA}: no folder with train/ and test/ inside")
        return found[0]
    if DATA:
        noisy.require(os.path.exists(DATA), f"--data={DATA} not found")
        return os.path.abspath(DATA)
    if DRY_RUN:  # 30 training and 10 test images per class: enough for the smoke configuration
        rng = np.random.default_rng(0)
        path = os.path.join(WORK, "synthetic.npz")
        np.savez(path, x_train=rng.integers(0, 256, (300, 32, 32, 3), dtype=np.uint8), y_train=np.arange(300) % 10,
                 x_test=rng.integers(0, 256, (100, 32, 32, 3), dtype=np.uint8), y_test=np.arange(100) % 10)
        return path
    return ""


def effect_part(data, seconds):
    """(b) effect.py, one seed, noise on the device; then its table, stage times and files."""
    out = os.path.join(WORK, "effect")
    command = [sys.executable, os.path.join(REPO, "bench", "effect.py"), f"--config={EFFECT_CONFIG}", "--seeds=(0,)",
               f"--data={data}", f"--out={out}", f"--train_args={tuple(EFFECT_TRAIN_ARGS)!r}", *EFFECT_ARGS]
    report(f"$ {' '.join(command[1:])}")
    busy = GpuBusy(interval_ms=1000)
    busy.start()
    code, elapsed = run_child(command, seconds, report)
    report(f"effect.py: {'finished' if code == 0 else 'stopped'} after {elapsed:.0f} s wall; {busy.stop()}")
    if code != 0 and os.path.isdir(out):  # the table of what finished, phases killed mid-way included
        run_child([sys.executable, os.path.join(REPO, "bench", "effect.py"), f"--config={EFFECT_CONFIG}",
                   "--seeds=(0,)", f"--out={out}", "--table_only=True"], 20, report, quiet=True)
    logs = sorted(glob.glob(os.path.join(out, "seed0", "*", "log-*.txt")))
    report("stage times (from the logs):")
    total = 0
    for log in logs:
        with open(log) as f:
            times = [int(line.split(" after ")[1].split(" s,")[0]) for line in f if line.startswith("# exit code")]
        total += sum(times)
        report(f"  {os.path.relpath(log, out)}: {', '.join(f'{t} s' for t in times) or 'unfinished'}")
    report(f"  finished stages together: {total} s")
    if code != 0 and os.path.isfile(os.path.join(out, "effect.md")):  # a finished run printed it last
        with open(os.path.join(out, "effect.md")) as f:
            report(f.read())
    if OUT:
        where = os.path.dirname(os.path.abspath(OUT))
        for name in ("effect.md", "effect.json", "effect.png"):
            if os.path.isfile(os.path.join(out, name)):
                shutil.copy(os.path.join(out, name), where)
        with open(os.path.join(where, "effect-logs.txt"), "w") as f:
            for log in logs:
                with open(log) as g:
                    f.write(f"==== {os.path.relpath(log, out)}\n{g.read()}\n")


def main():
    start = time.time()

    def left():
        return TOTAL_SECONDS - (time.time() - start)

    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    if OUT:
        os.makedirs(os.path.dirname(os.path.abspath(OUT)), exist_ok=True)
        open(OUT, "w").close()
    report(f"$ python bench/gpu.py {' '.join(sys.argv[1:])}")
    report(f"{time.strftime('%Y-%m-%d %H:%M:%S')}; KERAS_BACKEND={os.environ.get('KERAS_BACKEND', '(default)')}; "
           f"{os.cpu_count()} CPU cores; budgets: all {TOTAL_SECONDS} s, a {TRAIN_SECONDS} s, c {LABEL_SECONDS} s, "
           f"b the rest less {FINISH_SECONDS} s" + ("; DRY RUN, tiny settings" if DRY_RUN else ""))
    data = prepare_data()
    report(f"setup: data {data or '(none: part b skipped)'} ready after {time.time() - start:.0f} s")
    this = [sys.executable, os.path.abspath(__file__), *sys.argv[1:]]
    for part, name, budget in (("train", "a: training images/s", TRAIN_SECONDS),
                               ("label", "c: labeling images/s", LABEL_SECONDS)):
        seconds = min(budget, left() - FINISH_SECONDS)
        report(f"== part {name} (budget {seconds:.0f} s)")
        run_child([*this, f"--part={part}", f"--part_seconds={seconds}"], seconds, report)
    if data:
        seconds = left() - FINISH_SECONDS
        report(f"== part b: effect.py's '{EFFECT_CONFIG}' arms, seed 0 (budget {seconds:.0f} s)")
        effect_part(data, seconds)
    report(f"done in {time.time() - start:.0f} s")


if __name__ == "__main__":
    noisy.install_error_hook()
    settings = noisy.configure(globals())
    if DRY_RUN:  # tiny settings, except those given on the command line
        given = {arg[2:].split("=", 1)[0].upper() for arg in sys.argv[1:]}
        globals().update({k: v for k, v in DRY.items() if k not in given})
    if PART:  # a child: the parent relays its output to OUT
        OUT, begun = "", time.time()
        # The parent kills at PART_SECONDS; stop measuring a little before, to report.
        {"train": train_part, "label": label_part}[PART](begun + 0.9 * PART_SECONDS - 5)
    else:
        main()
