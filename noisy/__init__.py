"""Noisy Student self-training (Xie et al. 2020) for CIFAR-style data in Keras 3.

The four scripts at the top of the repository use these names; each module has its own
docstring. A name is imported from its module when first used (PEP 562), so that a script
reads its settings, and answers `--help`, before TensorFlow loads."""
import importlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's C++ log: errors only (a user's choice wins)
_LIGHT = {"noisy.settings", "noisy.stages", "noisy.pseudo", "noisy.images"}  # no Keras in them

_EXPORTS = {
    "noisy.artifacts": ("load_model", "load_npy", "read_config", "read_json", "relative_to_run", "save_json",
                        "save_npy", "save_text", "source_hashes"),
    "noisy.cinic": ("cinic_pool", "is_cinic_folder"),
    "noisy.data": ("load_split", "prepare_data", "split_id"),
    "noisy.device_augment": ("with_device_noise", "without_device_noise"),
    "noisy.devices": ("configure_devices", "resolve_augment"),
    "noisy.images": ("cache_image_folder",),
    "noisy.pseudo": ("balance_classes", "merge_shards", "save_shard", "soften"),
    "noisy.randaugment": ("RandAugment",),
    "noisy.resnet": ("build_resnet",),
    "noisy.settings": ("UserError", "configure", "install_error_hook", "require"),
    "noisy.stages": ("begin_stage", "check_model_file", "check_stage", "finish_stage", "identity", "lock",
                     "model_path", "npy_identity"),
    "noisy.streams": ("ImageBatches", "NoisyStream", "NpyRows"),
    "noisy.training": ("check_training_settings", "compile_model", "fit", "make_optimizer", "one_hot"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def _import_keras_quietly():
    """Import Keras without TensorFlow's start-up notices. TensorFlow is imported here too
    where it is installed (the JAX backend loads it later for some utilities, and would
    print them then). A Ctrl-C in the middle is held until the import is done: raised
    inside TensorFlow's C++ start-up it can abort the process instead of stopping it."""
    if "keras" in sys.modules:
        return
    import importlib.util
    import signal
    from noisy.quiet import startup_notices_hidden
    held = []
    previous = signal.signal(signal.SIGINT, lambda *_: held.append(True))
    try:
        with startup_notices_hidden():
            if importlib.util.find_spec("tensorflow"):
                import tensorflow  # noqa: F401
            import keras  # noqa: F401
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        raise KeyboardInterrupt


def __getattr__(name):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'noisy' has no attribute {name!r}")
    if _MODULE_OF[name] not in _LIGHT:
        _import_keras_quietly()
    return getattr(importlib.import_module(_MODULE_OF[name]), name)
