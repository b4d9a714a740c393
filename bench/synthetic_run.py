"""Shared set-up for the benchmarks: a RUN_DIR with a trained (1-epoch) teacher on
synthetic 32x32 images, and synthetic image pools as .npy files. No download needed."""
import os

import numpy as np

from bench.scripts import run_script


def synthetic_images(n, seed=0, chunk=50_000, path=None):
    """n uint8 images (32x32x3) of 10 colour-tinted classes; written chunk by chunk to
    `path` (.npy) when given, so pools larger than RAM can be made."""
    palette = np.random.default_rng(12345).integers(30, 225, size=(10, 3))
    out = np.lib.format.open_memmap(path, "w+", np.uint8, (n, 32, 32, 3)) if path else \
        np.empty((n, 32, 32, 3), np.uint8)
    labels = np.arange(n) % 10
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        rng = np.random.default_rng([seed, start])
        noise = rng.integers(-40, 40, size=(stop - start, 32, 32, 3), dtype=np.int16)
        out[start:stop] = np.clip(palette[labels[start:stop]][:, None, None, :] + noise, 0, 255)
    if path:
        out.flush()
    return out, labels


def teacher_run(run_dir, model="tiny"):
    """A RUN_DIR whose teacher was trained for one epoch on 2,000 synthetic images."""
    if os.path.isfile(os.path.join(run_dir, "teacher", "config.json")):
        return run_dir
    os.makedirs(run_dir, exist_ok=True)
    x, y = synthetic_images(2000, seed=1)
    xt, yt = synthetic_images(500, seed=2)
    npz = os.path.join(run_dir, "synthetic.npz")
    np.savez(npz, x_train=x, y_train=y, x_test=xt, y_test=yt)
    run_script("train_teacher.py", f"--data={npz}", f"--run_dir={run_dir}", f"--model={model}", "--epochs=1",
           "--num_labeled=1000", "--num_val=0", "--batch_size=128")
    return run_dir
