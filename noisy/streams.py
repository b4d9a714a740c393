"""What `fit` and `predict` read: rows of `.npy` image files on demand (`NpyRows`), and
the two `keras.utils.PyDataset`s built on them: un-augmented batches for prediction
(`ImageBatches`) and the shuffled, noised training stream (`NoisyStream`)."""
import os

import keras
import numpy as np

from noisy.randaugment import augment_batch
from noisy.settings import UserError


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
        if fortran or self.dtype.hasobject or not self.shape:
            raise UserError(f"{path} is not a plain C-ordered array; save it with np.save")
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        if os.path.getsize(path) < self.offset + self.shape[0] * self.row_bytes:
            raise UserError(f"{path} is truncated: {os.path.getsize(path)} bytes, its header promises "
                            f"{self.offset + self.shape[0] * self.row_bytes}; write it again")
        self._fd = None

    def __len__(self):
        return self.shape[0]

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
    first_part_per_batch: 0 = one shuffled stream of all parts; k = every batch holds k
                 samples of the first part (the labeled images, cycled and reshuffled as
                 needed) and batch_size - k of the others, whose size sets the epoch (the
                 official code's unlabel_ratio).
    Randomness depends only on (seed, epoch, batch), so results do not depend on
    which worker builds which batch. workers / use_multiprocessing go to PyDataset.
    """

    def __init__(self, parts, targets, batch_size, randaugment=None, flip_crop=False,
                 seed=0, epoch=0, first_part_per_batch=0, **kwargs):
        super().__init__(**kwargs)
        self.images = [images for images, _ in parts]
        self.part = np.concatenate([np.full(len(ix), p, np.int32) for p, (_, ix) in enumerate(parts)])
        self.index = np.concatenate([np.asarray(ix, np.int64) for _, ix in parts])
        self.targets = np.asarray(targets, np.float32)
        if len(self.targets) != len(self.index):
            raise ValueError(f"{len(self.targets)} targets for {len(self.index)} images")
        if batch_size > len(self.index):
            raise UserError(f"--batch_size={batch_size} is larger than the {len(self.index)} training images")
        self.batch_size = batch_size
        self.randaugment, self.flip_crop, self.seed = randaugment, flip_crop, seed
        self.first_part_per_batch = first_part_per_batch
        if first_part_per_batch and not (0 < first_part_per_batch < self.batch_size
                                         and (self.part > 0).sum() >= self.batch_size - first_part_per_batch):
            raise ValueError(f"first_part_per_batch={first_part_per_batch} needs a batch larger than it and "
                             f"at least {self.batch_size - first_part_per_batch} samples in the other parts")
        self.set_epoch(epoch)

    def set_epoch(self, epoch):
        """Set the epoch whose shuffle and noise the next batches use (for resume)."""
        self.epoch = epoch
        rng = np.random.default_rng([self.seed, self.epoch])
        if not self.first_part_per_batch:
            self.order = rng.permutation(len(self.index))
            return
        first, rest = np.flatnonzero(self.part == 0), np.flatnonzero(self.part > 0)
        k, m = self.first_part_per_batch, self.batch_size - self.first_part_per_batch
        steps = len(rest) // m
        cycled = np.concatenate([rng.permutation(first) for _ in range(-(-steps * k // len(first)))])
        self.order = np.concatenate([cycled[:steps * k].reshape(steps, k),
                                     rng.permutation(rest)[:steps * m].reshape(steps, m)], axis=1).ravel()

    def __len__(self):
        return len(self.order) // self.batch_size  # drop the ragged last batch: one shape

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
