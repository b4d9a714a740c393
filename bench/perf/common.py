"""What the speed and memory scripts (and the tests) share: running one of the
repository's scripts in a fresh Python process, as a user runs it (the backend and the
dtype policy start afresh), seeded synthetic 32x32 images (pools larger than RAM
included), and a RUN_DIR with a 1-epoch teacher on them. No download needed."""
import os
import subprocess
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_script(script, *args, log=None, check=True, timeout=None, env=None):
    """`python REPO/script args...` from the repository root with TensorFlow's C++ log
    silenced. Output is captured in the returned CompletedProcess, or appended to the open
    file `log`. With `check`, a non-zero exit raises RuntimeError carrying the output."""
    output = dict(stdout=log, stderr=subprocess.STDOUT) if log else dict(capture_output=True)
    result = subprocess.run([sys.executable, os.path.join(REPO, script), *args], cwd=REPO, text=True,
                            timeout=timeout, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {})),
                            **output)
    if check and result.returncode != 0:
        where = f"see {log.name}" if log else f"\n{result.stdout}\n{result.stderr}"
        raise RuntimeError(f"{script} {' '.join(args)} failed with exit code {result.returncode}: {where}")
    return result


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
