"""Data: labeled sources, the labeled / validation / unlabeled split, unlabeled image
folders, class balancing of pseudo-labels, and the noisy training stream.

Labeled sources (`DATA`):
- 'cifar10'             the `keras.datasets.cifar10` download;
- a folder              `train/<class>/*` and `test/<class>/*` image files, classes in
                        alphabetical order (the layout of the shared CIFAR-10 copy);
- a `.npz` file         arrays `x_train`, `y_train`, `x_test`, `y_test` (uint8 images
                        (n, h, w, 3), integer labels).

The teacher stage caches the source as `.npy` files in `RUN_DIR/data/` together with the
split (index arrays), so every later stage reads the same images through a memory map.
"""
import concurrent.futures
import hashlib
import json
import os
import warnings

import keras
import numpy as np
from PIL import Image, ImageOps

from noisy.artifacts import load_npy, save_json, save_npy, save_text
from noisy.randaugment import augment_batch
from noisy.settings import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
Image.MAX_IMAGE_PIXELS = 20_000 ** 2  # allow large photos, still refuse decompression bombs


# ----------------------------------------------------------------------------- images
def to_rgb_array(image, size):
    """Any PIL image (grey, RGBA, palette, 16-bit, CMYK, any size) -> uint8 (size, size, 3).
    Non-square images are centre-cropped to a square first, as a resize would squash them."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16/32-bit grey: rescale to 8 bit
        a = np.asarray(image, dtype=np.float64)
        span = a.max() - a.min()
        a = (a - a.min()) * (255.0 / span) if span > 0 else np.zeros_like(a)
        image = Image.fromarray(a.astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    image = image.convert("RGB")
    if image.size != (size, size):
        image = ImageOps.fit(image, (size, size), Image.BICUBIC)
    return np.asarray(image, dtype=np.uint8)


def read_image(path, size):
    """Decode one file to uint8 (size, size, 3); raises OSError/ValueError if unreadable."""
    with Image.open(path) as image:
        image.draft("RGB", (size, size))  # JPEG: decode large photos at reduced size
        image.load()
        return to_rgb_array(image, size)


def list_images(folder):
    """All image files below `folder`, sorted, by extension."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found += [os.path.join(root, f) for f in sorted(files)
                  if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")]
    return found


def decode_images(paths, size, workers=8):
    """Yield (path, uint8 image) for each path, in order, decoded by `workers` threads;
    (path, exception) for a file that cannot be read as an image."""
    def decode(path):
        try:
            return path, read_image(path, size)
        except Exception as e:  # PIL raises many kinds for broken files
            return path, e

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        yield from pool.map(decode, paths, chunksize=64)


def warn_skipped(bad, where=""):
    """One warning that counts and names (the first five) unreadable files."""
    if bad:
        shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        warnings.warn(f"skipped {len(bad)} unreadable image file(s){where}: {shown}", stacklevel=3)


def images_to_npy(paths, out_path, size, workers=8):
    """Decode `paths` into a uint8 .npy at `out_path`, streamed through a memory map so a
    pool larger than RAM never sits in memory. Unreadable files are skipped, counted and
    named in a warning. Returns the list of paths that were kept."""
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    tmp = out_path + ".partial.npy"
    images = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                       shape=(max(len(paths), 1), size, size, 3))
    kept, bad = [], []
    for path, result in decode_images(paths, size, workers):
        if isinstance(result, Exception):
            bad.append(f"{path} ({type(result).__name__})")
        else:
            images[len(kept)] = result
            kept.append(path)
    images.flush()
    del images
    warn_skipped(bad)
    if not kept:
        os.remove(tmp)
        return kept
    # Rename when every file was read; otherwise copy the rows kept into a shorter array.
    if len(kept) == len(paths):
        os.replace(tmp, out_path)
    else:
        src = np.load(tmp, mmap_mode="r")
        dst = np.lib.format.open_memmap(out_path + ".trim.npy", mode="w+", dtype=np.uint8,
                                        shape=(len(kept), size, size, 3))
        for start in range(0, len(kept), 65536):
            stop = min(start + 65536, len(kept))
            dst[start:stop] = src[start:stop]
        dst.flush()
        del dst, src
        os.replace(out_path + ".trim.npy", out_path)
        os.remove(tmp)
    return kept


def cache_image_folder(folder, out_dir, size):
    """Decode every image below `folder` into `out_dir/pool_images.npy` once, listing the
    files kept in `out_dir/pool_files.txt`; a later call with the same file listing and
    size reuses the cache. Returns (path of the .npy, number of images)."""
    paths = list_images(folder)
    if not paths:
        raise UserError(f"--unlabeled: {folder} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
    pool_file = os.path.join(out_dir, "pool_images.npy")
    listing = hashlib.sha256("\n".join(paths + [str(size)]).encode()).hexdigest()
    source_file = os.path.join(out_dir, "pool_source.json")
    if os.path.isfile(source_file) and os.path.isfile(pool_file):
        with open(source_file) as f:
            cached = json.load(f)
        if cached.get("listing") == listing:
            print(f"reusing {pool_file} ({cached['kept']} images from {folder})", flush=True)
            return pool_file, cached["kept"]
    print(f"reading {len(paths)} images from {folder} into {pool_file} ...", flush=True)
    kept = images_to_npy(paths, pool_file, size)
    if not kept:
        raise UserError(f"--unlabeled: none of the {len(paths)} files in {folder} could be read as an image")
    save_text(os.path.join(out_dir, "pool_files.txt"), "\n".join(kept) + "\n")
    save_json(source_file, {"folder": os.path.abspath(folder), "listing": listing, "kept": len(kept)})
    return pool_file, len(kept)


# ----------------------------------------------------------------------------- labeled sources
def _class_folder_split(folder, split, size):
    root = os.path.join(folder, split)
    if not os.path.isdir(root):
        raise UserError(f"{root} not found: a data folder needs train/<class>/ and test/<class>/")
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


def load_source(source, image_size=32):
    """Return (train_images, train_labels, test_images, test_labels, class_names)."""
    if source == "cifar10":
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
        names = ["airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck"]
        return x_train, y_train.ravel(), x_test, y_test.ravel(), names
    if source.endswith(".npz"):
        if not os.path.isfile(source):
            raise UserError(f"--data: {source} not found")
        try:
            with np.load(source) as f:
                missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in f.files]
                if missing:
                    raise UserError(f"--data: {source} lacks array(s) {', '.join(missing)}; "
                                    "expected x_train, y_train, x_test, y_test")
                arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
        except (ValueError, OSError) as e:
            raise UserError(f"--data: {source} is not a readable .npz ({e})") from None
        for k in ("x_train", "x_test"):
            a = arrays[k]
            if a.ndim != 4 or a.shape[-1] != 3 or a.dtype != np.uint8:
                raise UserError(f"--data: {source}:{k} has shape {a.shape} dtype {a.dtype}; "
                                "expected uint8 images (n, h, w, 3)")
        num_classes = int(max(arrays["y_train"].max(), arrays["y_test"].max())) + 1
        return (arrays["x_train"], arrays["y_train"].ravel().astype(np.int64), arrays["x_test"],
                arrays["y_test"].ravel().astype(np.int64), [str(i) for i in range(num_classes)])
    if os.path.isdir(source):
        x_train, y_train, names = _class_folder_split(source, "train", image_size)
        x_test, y_test, test_names = _class_folder_split(source, "test", image_size)
        if names != test_names:
            raise UserError(f"--data: class folders differ between {source}/train and {source}/test")
        return x_train, y_train, x_test, y_test, names
    raise UserError(f"--data: {source!r} is neither 'cifar10', a .npz file nor an existing folder")


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
    """Cache `source` and its split in `data_dir` (once) and return its config dict.
    A data_dir made with other settings is refused rather than silently reused."""
    wanted = {"source": source if source == "cifar10" else os.path.abspath(source),
              "num_labeled": num_labeled, "num_val": num_val, "seed": seed}
    config_path = os.path.join(data_dir, "config.json")
    if os.path.isfile(config_path):
        with open(config_path) as f:
            config = json.load(f)
        differ = {k: (config.get(k), v) for k, v in wanted.items() if config.get(k) != v}
        if differ and config.get("complete"):
            detail = ", ".join(f"{k}={old!r} (now {new!r})" for k, (old, new) in differ.items())
            raise UserError(f"{data_dir} holds a split made with {detail}; "
                            "use a new --run_dir for other data settings")
        if config.get("complete") and all(os.path.isfile(os.path.join(data_dir, f)) for f in DATA_FILES):
            return config
    print(f"reading {wanted['source']} ...", flush=True)
    x_train, y_train, x_test, y_test, names = load_source(source, image_size)
    labeled, val, unlabeled = split_indices(y_train, len(names), num_labeled, num_val, seed)
    for name, array in zip(DATA_FILES, (x_train, y_train, x_test, y_test, labeled, val, unlabeled)):
        save_npy(os.path.join(data_dir, name), array)
    config = dict(wanted, class_names=names, num_classes=len(names),
                  image_shape=list(x_train.shape[1:]), num_train=len(y_train), num_test=len(y_test),
                  num_unlabeled=len(unlabeled), complete=True)
    save_json(config_path, config)
    return config


def load_split(data_dir):
    """A prepared data_dir as a dict keyed by file stem: images as NpyRows (read on
    demand), labels and index arrays in memory."""
    return {f[:-4]: NpyRows(os.path.join(data_dir, f)) if f.endswith("images.npy")
            else load_npy(os.path.join(data_dir, f), mmap=False) for f in DATA_FILES}


# ----------------------------------------------------------------------------- pseudo-labels
def balance_classes(classes, confidence, num_classes, per_class, rng):
    """Positions (into `classes`) giving every class the same count, by index only.

    per_class = 0: duplicate the smaller classes up to the largest (the article);
    per_class = K: K per class, the K most confident where a class has more, duplicates
    where it has fewer (the Noisy Student paper). A class with no image stays empty.
    Duplicates are whole copies plus a random remainder, so no image is repeated more
    than once more than any other image of its class."""
    counts = np.bincount(classes, minlength=num_classes)
    target = per_class or int(counts.max())
    chosen = []
    for c in range(num_classes):
        members = np.flatnonzero(classes == c)
        if len(members) == 0:
            continue
        if len(members) >= target:
            chosen.append(members[np.argsort(-confidence[members], kind="stable")[:target]])
        else:
            copies, extra = divmod(target, len(members))
            chosen.append(np.concatenate([np.tile(members, copies),
                                          rng.choice(members, extra, replace=False)]))
    return np.concatenate(chosen) if chosen else np.zeros(0, np.int64)


# ----------------------------------------------------------------------------- image files
class NpyRows:
    """Rows of a .npy image file read on demand with `os.pread`: `rows[indices]` returns a
    fresh array, and nothing else stays in memory. Unlike `np.load(mmap_mode='r')`, the
    pages read are not mapped into the process, so a pool larger than RAM is read in one
    pass without the process's resident memory growing with it. Pickles by path, so
    PyDataset worker processes each open their own file."""

    def __init__(self, path):
        self.path = path
        try:
            with open(path, "rb") as f:
                version = np.lib.format.read_magic(f)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                self.shape, fortran, self.dtype = read_header(f)
                self.offset = f.tell()
        except FileNotFoundError:
            raise UserError(f"{path} not found") from None
        except (ValueError, OSError) as e:
            raise UserError(f"{path} is not a readable .npy file ({e})") from None
        if fortran or self.dtype.hasobject:
            raise UserError(f"{path} is not a plain C-ordered array; save it with np.save")
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self._fd = None

    def __len__(self):
        return self.shape[0]

    @property
    def ndim(self):
        return len(self.shape)

    def __getstate__(self):
        return dict(self.__dict__, _fd=None)

    def __getitem__(self, index):
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        if isinstance(index, slice):
            index = np.arange(*index.indices(len(self)))
        index = np.asarray(index, np.int64)
        if index.ndim != 1:
            raise IndexError("NpyRows takes a slice or a 1-d array of row numbers")
        if len(index) and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"row out of range for {self.path} with {len(self)} rows")
        out = np.empty((len(index),) + tuple(self.shape[1:]), self.dtype)
        order = np.argsort(index, kind="stable")
        sorted_rows = index[order]
        # Read each run of consecutive rows with one call.
        breaks = np.flatnonzero(np.diff(sorted_rows) != 1) + 1
        for run in np.split(np.arange(len(index)), breaks):
            if not len(run):
                continue
            first, count = sorted_rows[run[0]], len(run)
            data = os.pread(self._fd, count * self.row_bytes, self.offset + first * self.row_bytes)
            out[order[run]] = np.frombuffer(data, self.dtype).reshape((count,) + tuple(self.shape[1:]))
        return out

    def __del__(self):
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)


# ----------------------------------------------------------------------------- streams
class ImageBatches(keras.utils.PyDataset):
    """Un-augmented batches images[indices[k:k + batch_size]] for `predict`, read lazily
    from an array or memory map, in order."""

    def __init__(self, images, indices, batch_size, **kwargs):
        super().__init__(**kwargs)
        self.images, self.indices, self.batch_size = images, np.asarray(indices), batch_size

    def __len__(self):
        return -(-len(self.indices) // self.batch_size)

    def __getitem__(self, i):
        return self.images[self.indices[i * self.batch_size:(i + 1) * self.batch_size]]



class NoisyStream(keras.utils.PyDataset):
    """Batches of (images, targets) for `fit`, reshuffled every epoch, drawn from one or
    more image arrays by index (memory maps work: nothing is copied up front).

    parts:       list of (images, indices) pairs; sample k of the stream is
                 images[indices[k']] of the part it falls in.
    targets:     float32 (total, num_classes): one-hot labels or soft pseudo-labels.
    randaugment: a RandAugment applied per image, or None.
    flip_crop:   the CIFAR flip and pad-and-crop (after RandAugment).
    Randomness depends only on (seed, epoch, batch), so results do not depend on
    which worker builds which batch. workers / use_multiprocessing go to PyDataset.
    """

    def __init__(self, parts, targets, batch_size, randaugment=None, flip_crop=False,
                 seed=0, epoch=0, **kwargs):
        super().__init__(**kwargs)
        self.images = [images for images, _ in parts]
        self.part = np.concatenate([np.full(len(ix), p, np.int32) for p, (_, ix) in enumerate(parts)])
        self.index = np.concatenate([np.asarray(ix, np.int64) for _, ix in parts])
        self.targets = np.asarray(targets, np.float32)
        if len(self.targets) != len(self.index):
            raise ValueError(f"{len(self.targets)} targets for {len(self.index)} images")
        self.batch_size = min(batch_size, len(self.index))
        self.randaugment, self.flip_crop, self.seed = randaugment, flip_crop, seed
        self.set_epoch(epoch)

    def set_epoch(self, epoch):
        """Set the epoch whose shuffle and noise the next batches use (for resume)."""
        self.epoch = epoch
        self.order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.index))

    def __len__(self):
        return len(self.index) // self.batch_size  # drop the ragged last batch: one shape

    def __getitem__(self, i):
        pos = np.sort(self.order[i * self.batch_size:(i + 1) * self.batch_size])
        first = self.images[0]
        batch = np.empty((len(pos),) + first.shape[1:], np.uint8)
        for p, images in enumerate(self.images):
            mask = self.part[pos] == p
            if mask.any():
                batch[mask] = images[self.index[pos[mask]]]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        batch = augment_batch(batch, rng, self.randaugment, self.flip_crop)
        return batch, self.targets[pos]

    def on_epoch_end(self):
        self.set_epoch(self.epoch + 1)
