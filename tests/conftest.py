import os
import shutil
import sys

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from bench.perf.common import run_script  # noqa: E402,F401  (the tests' way to run a stage)
import noisy  # noqa: E402,F401  (its environment defaults, before a test module loads TensorFlow)


def synthetic_images(n, num_classes, size=16, seed=0):
    """Images whose class shows as a colour tint plus noise: learnable in a few steps."""
    labels = np.arange(n) % num_classes
    palette = np.random.default_rng(12345).integers(30, 225, size=(num_classes, 3))  # same for every split
    rng = np.random.default_rng(seed)
    images = palette[labels][:, None, None, :] + rng.normal(0, 25, size=(n, size, size, 3))
    return np.clip(images, 0, 255).astype(np.uint8), labels


@pytest.fixture
def synthetic_npz(tmp_path):
    """A 4-class .npz data set of 16x16 images: 400 train, 80 test."""
    x_train, y_train = synthetic_images(400, 4, seed=1)
    x_test, y_test = synthetic_images(80, 4, seed=2)
    path = tmp_path / "synthetic.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return str(path)


TEACHER = ["--num_labeled=80", "--num_val=40", "--model=tiny", "--batch_size=32"]  # a tiny teacher on synthetic_npz


@pytest.fixture(scope="session")
def finished_run_template(tmp_path_factory, worker_id):
    """(data .npz, run folder) with a finished 1-epoch teacher, pseudo-labels and student
    on the synthetic data, made once per test session and shared by the xdist workers
    (the first makes it under a lock, the others wait for it): copy it, never change it."""
    import fcntl
    root = tmp_path_factory.getbasetemp()
    root = root.parent if worker_id != "master" else root
    folder = root / "finished"
    npz, run = str(folder / "synthetic.npz"), str(folder / "run")
    with open(root / "finished.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "done").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            x_train, y_train = synthetic_images(400, 4, seed=1)
            x_test, y_test = synthetic_images(80, 4, seed=2)
            np.savez(npz, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
            run_script("train_teacher.py", f"--data={npz}", f"--run_dir={run}", "--epochs=1", *TEACHER)
            run_script("pseudo_label.py", f"--run_dir={run}", "--threshold=0.0")
            run_script("train_student.py", f"--run_dir={run}", "--epochs=1", "--batch_size=32")
            (folder / "done").write_text("")
    return npz, run


@pytest.fixture
def finished_run(finished_run_template, tmp_path):
    """A copy of the finished run folder for one test (its paths are relative to it)."""
    run = str(tmp_path / "run")
    shutil.copytree(finished_run_template[1], run)
    return run
