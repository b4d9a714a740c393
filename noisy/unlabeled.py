"""The unlabeled pool stage 2 labels: the split's unlabeled part, CINIC-10's ImageNet
images, a folder of images (decoded once into RUN_DIR/pool) or an .npy file, never the
test images."""
import os

import numpy as np

from noisy.arrays import NpyRows
from noisy.errors import UserError, require


class Pool:
    """The unlabeled images to label: an image file (uint8, n x h x w x 3), the rows of it
    to label, what identifies it and, where known, the true labels (for reporting how
    many pseudo-labels are right, never for training)."""

    def __init__(self, file, rows, identity, hidden_labels=None, labels_from=None):
        self.file, self.rows, self.identity = os.path.abspath(file), np.asarray(rows), identity
        self.hidden_labels, self.labels_from = hidden_labels, labels_from


def unlabeled_pool(unlabeled, split, cinic_per_class, seed, run_dir):
    """The unlabeled pool `unlabeled` names ('auto', 'split', 'cinic10', a folder of
    images or an .npy), as a `Pool`; a folder's images cached once in RUN_DIR/pool."""
    from noisy.backend import import_keras
    import_keras()  # noisy.cinic loads Keras (get_file): without TensorFlow's start-up notices
    from noisy.cinic import cinic_pool, is_cinic_folder
    from noisy.images import cache_image_folder
    cache, size = os.path.join(run_dir, "pool"), split.image_shape[0]
    left = split.config["num_unlabeled"]
    source = ("split" if left else "cinic10") if unlabeled == "auto" else unlabeled
    data = split.config.get("source", "")
    if os.path.isdir(source) and os.path.isdir(data):  # a folder pool is read recursively
        pool_dir, test = os.path.realpath(source), os.path.realpath(os.path.join(data, "test"))
        require(os.path.commonpath([pool_dir, test]) not in (pool_dir, test),
                f"--unlabeled={unlabeled!r} holds or lies in the test folder of the teacher's --data ({test}): "
                "only evaluate.py reads the test images; label another folder")
    if source == "split":
        require(left > 0, f"--unlabeled=split: {run_dir}/data has no unlabeled images (train_teacher.py's "
                "--num_labeled and --num_val took the whole training set); use --unlabeled=cinic10 or a folder")
        arrays = split.arrays()
        rows = arrays["unlabeled"]
        pool = Pool(os.path.join(split.folder, "train_images.npy"), rows, {"split": split.id},
                    arrays["train_labels"][rows], "the split's hidden labels")
    elif source == "cinic10" or (os.path.isdir(source) and is_cinic_folder(source)):
        # CINIC-10's ImageNet images only: its other files are CIFAR-10's, test images included.
        file, count, key, folders = cinic_pool(source, cinic_per_class, seed, cache, size)
        names = split.class_names
        hidden = np.array([names.index(f) for f in folders]) if set(folders) <= set(names) else None
        pool = Pool(file, np.arange(count), {"cinic10": key}, hidden, "CINIC-10's class folders")
    elif os.path.isdir(source):
        file, count, key = cache_image_folder(source, cache, size)
        pool = Pool(file, np.arange(count), {"folder": key})
    elif source.endswith(".npy") and os.path.isfile(source):
        pool = Pool(source, np.arange(len(NpyRows(source))), {"npy": os.path.abspath(source)})
    else:
        raise UserError(f"--unlabeled={unlabeled!r}: expected 'auto', 'split', 'cinic10', an existing folder "
                        "or an existing .npy file")
    images = NpyRows(pool.file)  # read by rows on demand: a pool may exceed RAM
    require(images.dtype == np.uint8 and images.shape[1:] == split.image_shape,
            f"{pool.file}: images of shape {images.shape[1:]} dtype {images.dtype}; expected uint8 "
            f"{split.image_shape}")
    require(len(pool.rows) > 0, f"the unlabeled pool is empty (--unlabeled={source!r}, run_dir {run_dir})")
    require(pool.rows.max() < len(images) and (source == "split" or len(pool.rows) == len(images)),
            f"{pool.file} holds {len(images)} images, its record {len(pool.rows)}: the cache is damaged; delete "
            f"{os.path.dirname(pool.file)} to make it again")
    pool.images, pool.source = images, source
    return pool
