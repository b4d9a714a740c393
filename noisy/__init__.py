"""Noisy Student self-training (Xie et al. 2020) for CIFAR-style data in Keras 3.

The four scripts at the top of the repository use these names; each module has its own
docstring."""
from noisy.artifacts import (load_model, load_npy, read_config, relative_to_run, save_json, save_npy, save_text,
                             source_hashes)
from noisy.data import load_split, prepare_data, split_id
from noisy.devices import configure_devices
from noisy.images import cache_image_folder
from noisy.pseudo import balance_classes, merge_shards, save_shard
from noisy.randaugment import RandAugment
from noisy.resnet import build_resnet
from noisy.settings import UserError, configure, install_error_hook, require
from noisy.stages import begin_stage, check_model_file, check_stage, finish_stage, identity, lock, npy_identity
from noisy.streams import ImageBatches, NoisyStream, NpyRows
from noisy.training import check_training_settings, compile_model, fit, make_optimizer, one_hot
