"""Noisy Student self-training (Xie et al. 2020) for CIFAR-style data in Keras 3.

The four scripts at the top of the repository use these names; each module has its own
docstring. A name is imported from its module when first used (PEP 562), so that a script
reads its settings, and answers `--help`, before TensorFlow loads."""
import importlib
import os

from noisy.backend import import_keras

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ log: errors only (a user's choice wins)
# oneDNN's CPU kernels. TensorFlow turns them on by itself only on CPUs with AVX-512 VNNI or
# BF16, AVX-VNNI or AMX; elsewhere (AVX2 servers and laptops) its Eigen kernels train our
# CPU student 3x slower, most of the time in page faults (bench/perf/cpu_env.py,
# docs/cpu-env.txt). Set before TensorFlow loads; TF_ENABLE_ONEDNN_OPTS=0 in the shell wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
_LIGHT = {"noisy.errors", "noisy.settings", "noisy.stages", "noisy.pseudo", "noisy.images", "noisy.rundir",
          "noisy.files", "noisy.arrays", "noisy.unlabeled", "noisy.data", "noisy.locks", "noisy.report", "noisy.plots",
          "noisy.metrics", "noisy.presets", "noisy.randaugment", "noisy.training_checks"}  # no Keras in them

_EXPORTS = {
    "noisy.data": ("describe_split", "load_split"),
    "noisy.device_augment": ("with_device_noise", "without_device_noise"),
    "noisy.devices": ("barrier", "configure_devices", "global_batch_and_rate", "job_size", "noise_placement",
                      "resolve_augment", "resolve_jit", "where_it_runs"),
    "noisy.errors": ("UserError", "install_error_hook", "require"),
    "noisy.arrays": ("NpyRows",),
    "noisy.files": ("load_model", "read_json", "save_json", "save_text"),
    "noisy.pseudo": ("balance_classes", "check_labeling_settings", "labeling_summary", "print_summary",
                     "require_some_kept", "soften", "teacher_probabilities"),
    "noisy.randaugment": ("RandAugment",),
    "noisy.plots": ("plots_to_draw", "remove_stale_plots"),
    "noisy.report": ("check_evaluation_settings", "corruption_subset"),
    "noisy.resnet": ("build_resnet",),
    "noisy.rundir": ("RunDir",),
    "noisy.settings": ("configure",),
    "noisy.streams": ("ImageBatches", "NoisyStream", "ValidationBatches"),
    "noisy.training": ("check_student_size", "compile_model", "fit", "labeled_per_batch",
                       "make_optimizer", "one_hot"),
    "noisy.training_checks": ("check_training_settings",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'noisy' has no attribute {name!r}")
    if _MODULE_OF[name] not in _LIGHT:
        import_keras()
    return getattr(importlib.import_module(_MODULE_OF[name]), name)
