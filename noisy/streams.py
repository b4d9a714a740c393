"""What `fit` and `predict` read: the two `keras.utils.PyDataset`s built on image arrays
or `NpyRows`: un-augmented batches for prediction (`ImageBatches`) and the shuffled,
noised training stream (`NoisyStream`); and the padded validation batches of data-parallel
training (`ValidationBatches`). In a multi-process job each process's batches are its
own part of every global batch (noisy.devices.process_part)."""
import keras
import numpy as np

from noisy.devices import process_part
from noisy.randaugment import augment_batch
from noisy.errors import UserError


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
        return process_part(batch), process_part(self.targets[pos])

    def on_epoch_end(self):
        self.set_epoch(self.epoch + 1)


class ValidationBatches(keras.utils.PyDataset):
    """(images, targets, weights) for `fit`'s validation in batches of `per_replica` (Keras'
    default 32) per replica, the whole set padded to a multiple of `replicas` (JAX's data
    parallelism splits every batch evenly over the devices, its last one too). Padding rows
    weigh 0 and real ones P / N (P rows padded, N real): Keras' validation loss sums
    weighted losses over P rows and divides by P, its weighted accuracy divides by the sum
    of weights, so both come out as the means over the N real images, unaffected by the
    padding. On one device: Keras' own validation batches, weights 1."""

    def __init__(self, images, targets, replicas=1, per_replica=32, **kwargs):
        super().__init__(**kwargs)
        n = len(images)
        padded = -(-n // replicas) * replicas
        self.batch_size = per_replica * replicas
        self.rows = np.concatenate([np.arange(n), np.zeros(padded - n, np.int64)])  # padding: copies of row 0
        self.weights = np.concatenate([np.full(n, padded / n, np.float32), np.zeros(padded - n, np.float32)])
        self.images, self.targets = images, np.asarray(targets, np.float32)

    def __len__(self):
        return -(-len(self.rows) // self.batch_size)

    def __getitem__(self, i):
        rows = self.rows[i * self.batch_size:(i + 1) * self.batch_size]
        weights = self.weights[i * self.batch_size:(i + 1) * self.batch_size]
        return process_part(self.images[rows]), process_part(self.targets[rows]), process_part(weights)
