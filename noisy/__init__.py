"""Noisy Student self-training (Xie et al. 2020) for CIFAR-style data in Keras 3.

The four scripts at the top of the repository use these names; each module has its own
docstring. A name is imported from its module when first used (PEP 562), so that a script
reads its settings, and answers `--help`, before TensorFlow loads."""
import importlib
import os
import re
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ log: errors only (a user's choice wins)
# What TensorFlow prints to stderr when it loads, whatever TF_CPP_MIN_LOG_LEVEL says (absl
# writes it before its log is set up): oneDNN and CUDA notices, CPU instruction hints.
_STARTUP_NOISE = re.compile(r"WARNING: All log messages before absl::InitializeLog|[IW]\d{4} \d\d:\d\d:\d\d|"
                            r"To enable the following instructions|rebuild TensorFlow with the appropriate")
_LIGHT = {"noisy.settings", "noisy.stages", "noisy.pseudo", "noisy.images"}  # no Keras in them

_EXPORTS = {
    "noisy.artifacts": ("load_model", "load_npy", "read_config", "relative_to_run", "save_json", "save_npy",
                        "save_text", "source_hashes"),
    "noisy.cinic": ("cinic_pool",),
    "noisy.data": ("load_split", "prepare_data", "split_id"),
    "noisy.devices": ("configure_devices",),
    "noisy.images": ("cache_image_folder",),
    "noisy.pseudo": ("balance_classes", "merge_shards", "save_shard"),
    "noisy.randaugment": ("RandAugment",),
    "noisy.resnet": ("build_resnet",),
    "noisy.settings": ("UserError", "configure", "install_error_hook", "require"),
    "noisy.stages": ("begin_stage", "check_model_file", "check_stage", "finish_stage", "identity", "lock",
                     "npy_identity"),
    "noisy.streams": ("ImageBatches", "NoisyStream", "NpyRows"),
    "noisy.training": ("check_training_settings", "compile_model", "fit", "make_optimizer", "one_hot"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def _import_keras_quietly():
    """Import Keras (and the TensorFlow it loads) with stderr caught at the file-descriptor
    level, then pass on every line of it but TensorFlow's start-up notices."""
    if "keras" in sys.modules:
        return
    with tempfile.TemporaryFile() as caught:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(caught.fileno(), 2)
        try:
            import keras  # noqa: F401
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            for line in caught.read().decode(errors="replace").splitlines():
                if not _STARTUP_NOISE.match(line):
                    print(line, file=sys.stderr)


def __getattr__(name):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'noisy' has no attribute {name!r}")
    if _MODULE_OF[name] not in _LIGHT:
        _import_keras_quietly()
    return getattr(importlib.import_module(_MODULE_OF[name]), name)
