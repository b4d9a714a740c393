"""Pools larger than RAM: peak resident memory of pseudo_label.py and of one student
epoch on a pool of 500,000 synthetic images (1.5 GB), against the pool's size (issue #4,
item 3).

    python bench/perf/memory.py                    # 500,000 images
    python bench/perf/memory.py --images=2000000   # 6 GB

Images are read by rows with os.pread (noisy.streams.NpyRows), balancing works on indices,
and the student's stream gathers each batch on demand, so neither stage holds the pool.
What is measured is the data path, so the teacher and student here are a minimal conv
net (one strided conv, pooling, softmax) that labels and trains fast on 2 CPU cores; the
ResNets would add only their own fixed memory. Each stage runs in a fresh process and its
peak RSS is its VmHWM; a process that only imports Keras and builds the model gives the
fixed baseline.
"""
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from bench.perf.common import REPO, synthetic_images, teacher_run  # noqa: E402
from noisy.settings import configure  # noqa: E402
from noisy.errors import install_error_hook  # noqa: E402

# ------------------------------------------------------------------------------ settings
IMAGES = 500_000      # pool size
BATCH_SIZE = 256      # student batch
WORKERS = 2           # student PyDataset workers
WORK_DIR = ""         # '' = a temporary folder (1.5 GB per 500,000 images)
PART = ""             # internal: 'baseline' or 'student' runs one measured part
# ------------------------------------------------------------------------------


def micro_model():
    import keras
    return keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Rescaling(1 / 255),
                             keras.layers.Conv2D(8, 3, strides=4, activation="relu"),
                             keras.layers.GlobalAveragePooling2D(),
                             keras.layers.Dense(10, activation="softmax")])


def student_epoch(run_dir):
    """One epoch of the student's stream (labeled + IMAGES pseudo-labels, with RandAugment),
    built as train_student.py builds it."""
    import noisy
    from noisy.streams import NoisyStream
    from noisy.training import compile_model
    data = noisy.load_split(os.path.join(run_dir, "data"))
    pool = noisy.NpyRows(os.path.join(run_dir, "pool.npy"))
    rows = np.load(os.path.join(run_dir, "pseudo", "indices.npy"))
    targets = np.concatenate([noisy.one_hot(data["train_labels"][data["labeled"]], 10),
                              np.load(os.path.join(run_dir, "pseudo", "targets.npy"))])
    stream = NoisyStream([(data["train_images"], data["labeled"]), (pool, rows)], targets, BATCH_SIZE,
                         randaugment=noisy.RandAugment(2, 10), flip_crop=True, workers=WORKERS)
    model = micro_model()
    compile_model(model, "adam")
    model.fit(stream, epochs=1, verbose=0)
    print(f"student epoch: {len(stream)} steps over {len(targets)} images")


def peak_rss(pid):
    """VmHWM of a live process in bytes (its own high-water mark: reset at exec, unlike
    ru_maxrss, which a child inherits from a large parent across fork and exec)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def measure(args):
    """Run `python args...` in a fresh process; return (seconds, peak RSS in bytes, output).
    The peak is read from /proc every 0.1 s while it runs; VmHWM is a high-water mark, so
    only growth in the last 0.1 s could be missed."""
    start = time.time()
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen([sys.executable, *args], stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
                                   env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        peak = 0
        while process.poll() is None:
            peak = max(peak, peak_rss(process.pid))
            time.sleep(0.1)
        log.seek(0)
        out = log.read()
    if process.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{out}")
    return time.time() - start, peak, out


if __name__ == "__main__":
    install_error_hook()
    configure(globals())
    if PART == "baseline":
        import keras  # noqa: F401  (the fixed cost being measured)
        micro_model()
        raise SystemExit(0)
    if PART == "student":
        student_epoch(WORK_DIR)
        raise SystemExit(0)

    work = WORK_DIR or tempfile.mkdtemp(prefix="bench-memory-")
    run_dir = teacher_run(os.path.join(work, "run"))
    # The minimal teacher, trained a little on the synthetic labels so that its labels
    # spread over all classes and the student's epoch covers the whole pool.
    import noisy
    from noisy.training import compile_model
    data = noisy.load_split(os.path.join(run_dir, "data"))
    model = micro_model()
    compile_model(model, "adam")
    model.fit(data["train_images"][:], noisy.one_hot(data["train_labels"], 10), epochs=20, verbose=0)
    model.save(os.path.join(run_dir, "teacher", "model.keras"))
    pool_file = os.path.join(run_dir, "pool.npy")
    synthetic_images(IMAGES, seed=5, path=pool_file)
    pool_bytes = os.path.getsize(pool_file)

    gib = 2 ** 30
    results = {
        "baseline (import Keras, build the model)": measure([__file__, "--part=baseline"]),
        "pseudo_label.py on the whole pool": measure(["pseudo_label.py", f"--run_dir={run_dir}",
                                                      f"--unlabeled={pool_file}", "--threshold=0.0",
                                                      f"--per_class={IMAGES // 10}"]),
        "one student epoch (labeled + all pseudo-labels)": measure([__file__, "--part=student",
                                                                    f"--work_dir={run_dir}"]),
    }
    print(f"pool: {IMAGES} synthetic 32x32x3 uint8 images, {pool_bytes / gib:.2f} GiB; "
          f"{os.cpu_count()} cores; peak RSS of each stage in a fresh process")
    for name, (seconds, rss, out) in results.items():
        print(f"{name:50s} peak RSS {rss / gib:5.2f} GiB = {rss / pool_bytes:5.1%} of the pool  ({seconds:.0f} s)")
    print(results["one student epoch (labeled + all pseudo-labels)"][2].strip().splitlines()[-1])
