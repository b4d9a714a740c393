"""Noisy Student self-training (Xie et al. 2020) for CIFAR-style data in Keras 3.

The names below are the Keras-free ones the four scripts use: settings and their checks,
errors, the run folder, pseudo-labels, data on disk. A script reads and checks its
settings with them, so that `--help` and a bad setting answer before TensorFlow loads;
then it calls `import_keras()` and imports the Keras-using modules by name (noisy.devices,
noisy.training, noisy.resnet, noisy.streams, noisy.device_augment)."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ log: errors only (a user's choice wins)
# oneDNN's CPU kernels. TensorFlow turns them on by itself only on CPUs with AVX-512 VNNI or
# BF16, AVX-VNNI or AMX; elsewhere (AVX2 servers and laptops) its Eigen kernels train our
# CPU student 3x slower, most of the time in page faults (bench/perf/cpu_env.py,
# docs/cpu-env.txt). Set before TensorFlow loads; TF_ENABLE_ONEDNN_OPTS=0 in the shell wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from noisy.arrays import NpyRows  # noqa: E402
from noisy.backend import import_keras  # noqa: E402
from noisy.corruptions import corruption_subset  # noqa: E402
from noisy.data import describe_split, load_split, one_hot  # noqa: E402
from noisy.errors import UserError, install_error_hook, require  # noqa: E402
from noisy.files import read_json, save_json, save_text  # noqa: E402
from noisy.plots import plots_to_draw, remove_stale_plots  # noqa: E402
from noisy.pseudo_labels import (balance_classes, labeling_summary, print_summary, require_some_kept,  # noqa: E402
                                 soften, teacher_probabilities)
from noisy.randaugment import RandAugment  # noqa: E402
from noisy.rundir import RunDir  # noqa: E402
from noisy.settings import (check_evaluation_settings, check_labeling_settings, check_training_settings,  # noqa: E402
                            configure)

__all__ = ["NpyRows", "RandAugment", "RunDir", "UserError", "balance_classes", "check_evaluation_settings",
           "check_labeling_settings", "check_training_settings", "configure", "corruption_subset", "describe_split",
           "import_keras", "install_error_hook", "labeling_summary", "load_split", "one_hot", "plots_to_draw", "print_summary",
           "read_json", "remove_stale_plots", "require", "require_some_kept", "save_json", "save_text", "soften",
           "teacher_probabilities"]
