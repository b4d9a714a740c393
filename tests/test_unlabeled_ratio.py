"""NoisyStream's first_part_per_batch (train_student.py's UNLABELED_RATIO): every batch
holds k labeled and batch - k pseudo-labeled images, the pseudo-labeled part sets the
epoch, the labeled images are cycled evenly, and the order depends on (seed, epoch) only."""
import os
import re

import numpy as np
import pytest

from noisy.streams import NoisyStream

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABELED, PSEUDO = 7, 150  # 7 labeled images (values 0-6), 150 pseudo-labeled (values 100-249)


def two_part_stream(batch_size, k, seed=5, epoch=0, labeled=LABELED, pseudo=PSEUDO):
    """Every image is one constant value (its id): labeled 0.., pseudo-labeled 100..; the
    target row is one-hot on the same id, so images and targets can be matched up."""
    labeled_images = np.broadcast_to(np.arange(labeled, dtype=np.uint8)[:, None, None, None], (labeled, 2, 2, 3)).copy()
    pseudo_images = np.broadcast_to((100 + np.arange(pseudo)).astype(np.uint8)[:, None, None, None],
                                    (pseudo, 2, 2, 3)).copy()
    # The pseudo-labeled rows are taken in reverse (by index, as train_student.py takes its
    # rows of the pool); the targets follow the stream's order: labeled, then the indices.
    pseudo_rows = np.arange(pseudo)[::-1]
    targets = np.eye(256, dtype=np.float32)[np.concatenate([np.arange(labeled), 100 + pseudo_rows])]
    return NoisyStream([(labeled_images, np.arange(labeled)), (pseudo_images, pseudo_rows)], targets,
                       batch_size, seed=seed, epoch=epoch, first_part_per_batch=k)


def batch_ids(stream, i):
    images, targets = stream[i]
    ids = images[:, 0, 0, 0].astype(int)
    assert (images == ids[:, None, None, None]).all()
    assert np.array_equal(targets.argmax(axis=1), ids), "targets must follow their images"
    return ids


def epoch_ids(stream):
    return [batch_ids(stream, i) for i in range(len(stream))]


def test_every_batch_holds_exactly_k_labeled_images():
    stream = two_part_stream(batch_size=20, k=6)
    for i, ids in enumerate(epoch_ids(stream)):
        assert len(ids) == 20, f"batch {i}"
        assert (ids < 100).sum() == 6 and (ids >= 100).sum() == 14, f"batch {i}"


def test_the_pseudo_labeled_part_sets_the_epoch_length():
    # 150 pseudo-labeled images, 14 per batch: 150 // 14 = 10 batches (not ceil 11, and not
    # the 157 // 20 = 7 of one shuffled stream)
    assert len(two_part_stream(batch_size=20, k=6)) == 10
    assert len(two_part_stream(batch_size=64, k=16)) == 3  # 150 // 48


def test_each_pseudo_labeled_image_appears_at_most_once_per_epoch():
    ids = np.concatenate(epoch_ids(two_part_stream(batch_size=20, k=6)))
    pseudo = ids[ids >= 100]
    assert len(pseudo) == 140 and len(np.unique(pseudo)) == 140  # 10 of the 150 wait for another epoch


def test_labeled_images_are_cycled_evenly():
    # 10 batches * 6 = 60 labeled draws of 7 images: each 60 / 7 = 8.57 times -> 8 or 9
    ids = np.concatenate(epoch_ids(two_part_stream(batch_size=20, k=6)))
    counts = np.bincount(ids[ids < 100], minlength=LABELED)
    assert counts.sum() == 60 and set(counts) <= {8, 9}
    assert (counts == 9).sum() == 4  # 60 = 7 * 8 + 4


def test_labeled_images_are_cycled_also_when_they_outnumber_one_epochs_draws():
    # 40 labeled images, 10 batches * 3 = 30 draws: each at most once (floor 0, ceil 1)
    ids = np.concatenate(epoch_ids(two_part_stream(batch_size=17, k=3, labeled=40)))
    counts = np.bincount(ids[ids < 100], minlength=40)
    assert len(two_part_stream(batch_size=17, k=3, labeled=40)) == 10  # 150 // 14
    assert counts.sum() == 30 and set(counts) <= {0, 1}


def test_the_same_seed_and_epoch_give_the_same_batches():
    a, b = two_part_stream(20, 6, seed=5, epoch=3), two_part_stream(20, 6, seed=5, epoch=0)
    b.set_epoch(3)
    assert all(np.array_equal(x, y) for x, y in zip(epoch_ids(a), epoch_ids(b)))


def test_another_epoch_or_seed_gives_other_batches():
    base = np.concatenate(epoch_ids(two_part_stream(20, 6, seed=5, epoch=0)))
    stream = two_part_stream(20, 6, seed=5, epoch=0)
    stream.on_epoch_end()  # what fit calls: the next epoch's shuffle
    assert stream.epoch == 1
    assert not np.array_equal(np.concatenate(epoch_ids(stream)), base)
    assert not np.array_equal(np.concatenate(epoch_ids(two_part_stream(20, 6, seed=6, epoch=0))), base)
    # and every epoch keeps the split of 6 + 14
    assert all((ids < 100).sum() == 6 for ids in epoch_ids(stream))


def test_k_outside_the_batch_is_refused_by_text():
    with pytest.raises(ValueError, match=r"first_part_per_batch=20 needs a batch larger than it"):
        two_part_stream(batch_size=20, k=20)
    with pytest.raises(ValueError, match=r"at least 190 samples in the other parts"):
        two_part_stream(batch_size=200, k=10, labeled=100)


def labeled_per_batch(batch_size, ratio):
    """What train_student.py takes for UNLABELED_RATIO (it calls labeled_per_batch with
    its batch and ratio; running the script takes too long), for a large pool."""
    from noisy.training import labeled_per_batch as per_batch
    with open(os.path.join(REPO, "train_student.py")) as f:
        assert re.search(r"first_part_per_batch=labeled_per_batch\(batch_size, UNLABELED_RATIO, ", f.read())
    return per_batch(batch_size, ratio, 10**6)


def test_unlabeled_ratio_3_with_batch_64_gives_16_labeled_per_batch():
    k = labeled_per_batch(64, 3)
    assert k == 16  # round(64 / (3 + 1))
    for ids in epoch_ids(two_part_stream(batch_size=64, k=k)):
        assert (ids < 100).sum() == 16 and (ids >= 100).sum() == 48  # 3 pseudo-labeled per labeled image


def test_unlabeled_ratio_mapping_rounds_and_0_means_one_stream():
    assert labeled_per_batch(64, 0) == 0  # one shuffled stream
    assert labeled_per_batch(64, 2) == 21  # 64 / 3 = 21.33
    assert labeled_per_batch(64, 5) == 11  # 64 / 6 = 10.67
    assert labeled_per_batch(32, 1) == 16
