import os
import sys

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from bench.scripts import run_script  # noqa: E402,F401  (the tests' way to run a stage)


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
