"""Is augmentation ever the bottleneck? One student epoch with per-image RandAugment
(+ flip and crop) built by parallel PyDataset workers, against the same epoch without
augmentation, on the same model and images (issue #4, item 2).

    python bench/augment.py                       # tiny model, 12,800 synthetic images
    python bench/augment.py --model=resnet50 --workers=8   # on a GPU box

Also reports RandAugment throughput on one core (images/s). Target: the augmented epoch
runs at >= 90% of the plain epoch's speed. Both epochs are measured in this one run,
alternating, after a warm-up epoch of each.
"""
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.synthetic_run import synthetic_images  # noqa: E402
from noisy.settings import configure  # noqa: E402
from noisy.errors import install_error_hook  # noqa: E402

# ------------------------------------------------------------------------------ settings
MODEL = "tiny"            # student preset
IMAGES = 12_800           # images per epoch
BATCH_SIZE = 128          # images per step
WORKERS = 2               # PyDataset workers building batches
MULTIPROCESSING = False   # workers as processes instead of threads
NUM_OPS = 2               # RandAugment operations per image
MAGNITUDE = 10            # RandAugment magnitude (0..30)
REPEATS = 2               # timed epochs of each kind, alternating
# ------------------------------------------------------------------------------

def pil_images_per_second(images, num_ops, magnitude, count=2000):
    """RandAugment (PIL, per image) on one core: images/s over the first `count` images."""
    import noisy
    from noisy.randaugment import augment_batch
    sample = images[:count]
    start = time.time()
    augment_batch(sample, np.random.default_rng(0), noisy.RandAugment(num_ops, magnitude))
    return len(sample) / (time.time() - start)


if __name__ == "__main__":
    install_error_hook()
    configure(globals())
    import keras
    import noisy
    images, labels = synthetic_images(IMAGES, seed=4)
    targets = noisy.one_hot(labels, 10)

    per_core = pil_images_per_second(images, NUM_OPS, MAGNITUDE)

    model = noisy.build_resnet(MODEL, 10, (32, 32, 3), dropout=0.5, survival_last=0.8)
    noisy.compile_model(model, keras.optimizers.Adam(1e-3))

    def epoch(augment):
        stream = noisy.NoisyStream([(images, np.arange(IMAGES))], targets, BATCH_SIZE,
                                   randaugment=noisy.RandAugment(NUM_OPS, MAGNITUDE) if augment else None,
                                   flip_crop=augment, seed=0, workers=WORKERS,
                                   use_multiprocessing=MULTIPROCESSING)
        start = time.time()
        model.fit(stream, epochs=1, verbose=0)
        return IMAGES / (time.time() - start)

    epoch(False), epoch(True)  # warm up: trace the train step, start the workers once
    plain, noised = [], []
    for _ in range(REPEATS):
        plain.append(epoch(False))
        noised.append(epoch(True))
    print(f"model {MODEL}, {IMAGES} synthetic 32x32 images, batch {BATCH_SIZE}, {WORKERS} "
          f"{'process' if MULTIPROCESSING else 'thread'} workers, keras backend {keras.backend.backend()}, "
          f"{os.cpu_count()} cores")
    print(f"RandAugment N={NUM_OPS} M={MAGNITUDE} + flip/crop on one core: {per_core:8.0f} images/s")
    print(f"epoch without augmentation: {np.mean(plain):8.0f} images/s  ({', '.join(f'{v:.0f}' for v in plain)})")
    print(f"epoch with augmentation:    {np.mean(noised):8.0f} images/s  ({', '.join(f'{v:.0f}' for v in noised)})")
    print(f"augmented / plain:          {np.mean(noised) / np.mean(plain):8.2f}   (target >= 0.90)")
