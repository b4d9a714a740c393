"""Labeled data: the sources (`DATA`), the class-balanced labeled / validation / unlabeled
split, and its cache in `RUN_DIR/data/`.

Labeled sources:
- 'cifar10'             the `keras.datasets.cifar10` download;
- a folder              `train/<class>/*` and `test/<class>/*` image files, classes in
                        alphabetical order (the layout of the shared CIFAR-10 copy);
- a `.npz` file         arrays `x_train`, `y_train`, `x_test`, `y_test` (uint8 images
                        (n, h, w, 3), integer labels).

The teacher stage caches the source as `.npy` files in `RUN_DIR/data/` together with the
split (index arrays), so every later stage reads the same images.
"""
import atexit
import hashlib
import json
import os
import shutil

import numpy as np

from noisy.arrays import NpyRows, load_npy
from noisy.files import file_record, file_stat, read_json, save_json, save_npy, unchanged
from noisy.images import decode_images, list_images, warn_skipped
from noisy.errors import UserError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"  # what keras.datasets.cifar10 downloads

def _class_folder_split(folder, split, size):
    root = os.path.join(folder, split)  # there: require_source checked
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if len(classes) < 2:
        raise UserError(f"{root} holds {len(classes)} class folder(s); expected at least 2")
    paths, labels = [], []
    for label, name in enumerate(classes):
        files = list_images(os.path.join(root, name))
        if not files:
            raise UserError(f"{os.path.join(root, name)} holds no image files")
        paths += files
        labels += [label] * len(files)
    images = np.empty((len(paths), size, size, 3), np.uint8)
    ok, bad = np.zeros(len(paths), bool), []
    for i, (path, result) in enumerate(decode_images(paths, size)):
        if isinstance(result, Exception):
            bad.append(f"{path} ({type(result).__name__})")
        else:
            images[i], ok[i] = result, True
    warn_skipped(bad, f" in {root}")
    return images[ok], np.asarray(labels, np.int64)[ok], classes


def require_source(source):
    """Refuse a --data value that names nothing ('cifar10', a .npz file or a folder with
    train/ and test/; what they hold is checked when they are read), before anything is
    written."""
    if source.endswith(".npz") and not os.path.isfile(source):
        raise UserError(f"--data: {source} not found")
    if not (source == "cifar10" or source.endswith(".npz") or os.path.isdir(source)):
        raise UserError(f"--data: {source!r} is neither 'cifar10', a .npz file nor an existing folder")
    for split in ("train", "test") if os.path.isdir(source) else ():
        if not os.path.isdir(os.path.join(source, split)):
            raise UserError(f"{os.path.join(source, split)} not found: a data folder needs train/<class>/ and "
                            "test/<class>/")


def load_source(source, image_size=32):
    """Return (train_images, train_labels, test_images, test_labels, class_names)."""
    require_source(source)
    if source == "cifar10":
        from noisy.backend import import_keras
        keras = import_keras()  # here: reading a cached split needs no Keras
        try:
            (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
        except Exception as e:  # urllib, tarfile and OS errors, wrapped by get_file in several types
            raise UserError(f"--data=cifar10: could not download or unpack {CIFAR10_URL} "
                            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); without internet, "
                            "use --data=<folder with train/<class>/ and test/<class>/ image files> or "
                            "--data=<file.npz with x_train, y_train, x_test, y_test>") from None
        names = ["airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck"]
        return x_train, y_train.ravel(), x_test, y_test.ravel(), names
    if source.endswith(".npz"):
        try:
            with np.load(source) as f:
                missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in f.files]
                if missing:
                    raise UserError(f"--data: {source} lacks array(s) {', '.join(missing)}; "
                                    "expected x_train, y_train, x_test, y_test")
                arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
        except (ValueError, OSError) as e:
            raise UserError(f"--data: {source} is not a readable .npz ({e})") from None
        for x, y in (("x_train", "y_train"), ("x_test", "y_test")):
            images, labels = arrays[x], arrays[y]
            if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
                raise UserError(f"--data: {source}:{x} has shape {images.shape} dtype {images.dtype}; "
                                "expected uint8 images (n, h, w, 3)")
            if labels.size != len(images) or labels.ndim > 2:
                raise UserError(f"--data: {source}:{y} holds {labels.size} labels for the {len(images)} "
                                f"images of {x}; expected one integer label per image")
            if labels.size and (labels.dtype.kind not in "iu" or labels.min() < 0):
                raise UserError(f"--data: {source}:{y} has labels of dtype {labels.dtype} from {labels.min()} "
                                f"to {labels.max()}; expected integers 0, 1, ..., classes - 1")
        num_classes = int(max(arrays["y_train"].max(), arrays["y_test"].max())) + 1
        return (arrays["x_train"], arrays["y_train"].ravel().astype(np.int64), arrays["x_test"],
                arrays["y_test"].ravel().astype(np.int64), [str(i) for i in range(num_classes)])
    x_train, y_train, names = _class_folder_split(source, "train", image_size)  # a folder
    x_test, y_test, test_names = _class_folder_split(source, "test", image_size)
    if names != test_names:
        raise UserError(f"--data: class folders differ between {source}/train and {source}/test")
    return x_train, y_train, x_test, y_test, names


def split_indices(labels, num_classes, num_labeled, num_val, seed):
    """Class-balanced split of the training labels into (labeled, val, unlabeled) index
    arrays. `num_val` images are held out first; `num_labeled` (0 = all the rest) are then
    drawn per class; the rest form the unlabeled pool. Deterministic for a seed."""
    counts = np.bincount(labels, minlength=num_classes)
    for name, n in (("num_val", num_val), ("num_labeled", num_labeled)):
        if n % num_classes:
            raise UserError(f"--{name}={n} cannot be split evenly over {num_classes} classes; "
                            f"use a multiple of {num_classes}")
    per_val, per_lab = num_val // num_classes, num_labeled // num_classes
    if per_val + per_lab > counts.min():
        raise UserError(f"--num_labeled={num_labeled} plus --num_val={num_val} exceeds the data: "
                        f"the smallest class has {counts.min()} training images, "
                        f"so at most {counts.min() * num_classes} in all")
    rng = np.random.default_rng(seed)
    labeled, val, unlabeled = [], [], []
    for c in range(num_classes):
        idx = rng.permutation(np.flatnonzero(labels == c))
        val.append(idx[:per_val])
        if per_lab:
            labeled.append(idx[per_val:per_val + per_lab])
            unlabeled.append(idx[per_val + per_lab:])
        else:
            labeled.append(idx[per_val:])
    def join(parts):
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
    return join(labeled), join(val), join(unlabeled)


DATA_FILES = ("train_images.npy", "train_labels.npy", "test_images.npy", "test_labels.npy",
              "labeled.npy", "val.npy", "unlabeled.npy")


def prepare_data(source, data_dir, num_labeled, num_val, seed, image_size=32):
    """The `Split` of `source` for `data_dir`: the one there when it holds this split whole;
    else one made now in a new folder beside it, which `Split.commit` moves into place once
    the stage that asked for it has passed its checks, so a refused command leaves
    `data_dir` as it was. A `data_dir` made with other settings is refused."""
    from noisy.stages import differences
    wanted = {"source": source if source == "cifar10" else os.path.abspath(source),
              "num_labeled": num_labeled, "num_val": num_val, "seed": seed}
    config_path = os.path.join(data_dir, "config.json")
    if os.path.isfile(config_path):
        config = read_json(config_path, f"delete {data_dir} to make the split again, or use another --run_dir")
        differ = differences({k: config.get(k) for k in wanted}, wanted)
        if differ and config.get("complete"):
            raise UserError(f"{data_dir} holds a split made with other data settings: {'; '.join(differ)}; "
                            "use a new --run_dir for other data settings")
        records = config.get("files", {})
        if config.get("complete") and all(unchanged(os.path.join(data_dir, f), records.get(f)) for f in DATA_FILES) \
                and config.get("fingerprint") == source_fingerprint(source):
            return Split(data_dir, config, data_dir)  # else a file or the source changed: read again, beside
    print(f"reading {wanted['source']} ...", flush=True)
    x_train, y_train, x_test, y_test, names = load_source(source, image_size)
    labeled, val, unlabeled = split_indices(y_train, len(names), num_labeled, num_val, seed)
    folder = f"{data_dir.rstrip(os.sep)}.new-{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    atexit.register(shutil.rmtree, folder, True)  # gone unless committed
    for name, array in zip(DATA_FILES, (x_train, y_train, x_test, y_test, labeled, val, unlabeled)):
        save_npy(os.path.join(folder, name), array)
    config = dict(wanted, fingerprint=source_fingerprint(source), class_names=names, num_classes=len(names),
                  image_shape=list(x_train.shape[1:]), num_train=len(y_train), num_test=len(y_test),
                  num_unlabeled=len(unlabeled), complete=True,
                  files={name: file_record(os.path.join(folder, name)) for name in DATA_FILES})
    save_json(os.path.join(folder, "config.json"), config)
    return Split(folder, config, data_dir)


def source_files(source):
    """Every file of `source` (its file, or every file below its folder, links followed;
    'cifar10': Keras' cached copy), sorted, as (root, paths); None where nothing is there."""
    if source == "cifar10":
        home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
        source = os.path.join(home, "datasets", "cifar-10-batches-py")
    if os.path.isfile(source):
        return source, [source]
    if not os.path.isdir(source):
        return None
    paths, seen = [], set()
    for root, dirs, names in os.walk(source, followlinks=True):  # class folders linked in are read, so looked at
        real = os.path.realpath(root)
        if real in seen:  # a link back up (a loop), or a folder linked in twice
            dirs[:] = []
            continue
        seen.add(real)
        paths += [os.path.join(root, name) for name in names]
    return source, sorted(paths)


def source_fingerprint(source):
    """What `source` looks like on disk: sha256 (16 hex digits) of the path, size and
    modification time of each of its files (`source_files`); None where nothing is there
    yet. A source changed in place after its split was cached is read again, so the
    split's identity follows its content."""
    found = source_files(source)
    if found is None:
        return None
    source, paths = found
    stats = [(os.path.relpath(p, source) if p != source else p, stat.st_size, stat.st_mtime_ns)
             for p, stat in ((p, file_stat(p)) for p in paths)]
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:16]


def split_id(config):
    """sha256 (16 hex digits) of what a split is: its source and settings and the recorded
    content of every file of it (images, labels, the labeled / validation / unlabeled
    indices), so a file changed or re-cached from a changed source changes it, and so does
    any field of its config.json (classes, shapes, counts). Its caller checks the files."""
    described = {k: v for k, v in config.items() if k not in ("complete", "fingerprint", "files")}
    digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode())
    for name in DATA_FILES:
        digest.update(config["files"][name]["sha256"].encode())
    return digest.hexdigest()[:16]


class Split:
    """A cached split in `folder`: `data_dir` (RUN_DIR/data), or beside it until `commit`;
    `id` is what later stages record."""

    def __init__(self, folder, config, data_dir):
        self.folder, self.config, self.dir, self.id = folder, config, data_dir, split_id(config)
        self.num_classes, self.class_names = config["num_classes"], config["class_names"]
        self.image_shape = tuple(config["image_shape"])

    def commit(self):
        """Move a split made beside `data_dir` into it (an incomplete one there is replaced)."""
        if self.folder != self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            os.replace(self.folder, self.dir)
            self.folder = self.dir

    def arrays(self):
        return load_split(self.folder)


def load_split(data_dir):
    """A prepared data_dir as a dict keyed by file stem: images as NpyRows (read on
    demand), labels and index arrays in memory."""
    return {f[:-4]: NpyRows(os.path.join(data_dir, f)) if f.endswith("images.npy")
            else load_npy(os.path.join(data_dir, f), mmap=False) for f in DATA_FILES}


def one_hot(labels, num_classes):
    """Class labels as one-hot float32 rows: the labeled images' targets, and hard pseudo-labels."""
    return np.eye(num_classes, dtype=np.float32)[np.asarray(labels)]


def describe_split(split, data):
    """Print the split's sizes and what stage 2 will label."""
    print(f"labeled {len(data['labeled'])}, validation {len(data['val'])}, unlabeled pool {len(data['unlabeled'])}, "
          f"test {len(data['test_labels'])} images of {split.num_classes} classes")
    print("stage 2 (pseudo_label.py) will label " + (
        f"this split's {len(data['unlabeled'])} unlabeled images" if len(data["unlabeled"]) else
        "CINIC-10's ImageNet images, 800 per class (a 656 MiB download, once), as no training image is left "
        "unlabeled; or give it --unlabeled=<folder of images>"), flush=True)
