import os
import warnings

import numpy as np
import pytest
from PIL import Image

from conftest import synthetic_images
from noisy.data import load_source, prepare_data, split_indices
from noisy.images import images_to_npy
from noisy.pseudo_labels import balance_classes
from noisy.streams import ImageBatches, NoisyStream
from noisy.arrays import NpyRows
from noisy.randaugment import RandAugment
from noisy.errors import UserError


def test_split_is_balanced_disjoint_complete_and_seeded():
    labels = np.repeat(np.arange(10), 50)
    labeled, val, unlabeled = split_indices(labels, 10, num_labeled=40, num_val=100, seed=7)
    assert np.bincount(labels[labeled]).tolist() == [4] * 10
    assert np.bincount(labels[val]).tolist() == [10] * 10
    assert len(labeled) + len(val) + len(unlabeled) == 500
    assert len(np.unique(np.concatenate([labeled, val, unlabeled]))) == 500
    again = split_indices(labels, 10, 40, 100, seed=7)
    other = split_indices(labels, 10, 40, 100, seed=8)
    assert all(np.array_equal(a, b) for a, b in zip((labeled, val, unlabeled), again))
    assert not np.array_equal(labeled, other[0])


def test_num_labeled_zero_takes_everything_but_validation():
    labels = np.repeat(np.arange(4), 25)
    labeled, val, unlabeled = split_indices(labels, 4, 0, 20, seed=0)
    assert len(labeled) == 80 and len(val) == 20 and len(unlabeled) == 0


@pytest.mark.parametrize("num_labeled, num_val, message", [
    (45, 0, r"--num_labeled=45 cannot be split evenly over 10 classes"),
    (0, 15, r"--num_val=15 cannot be split evenly"),
    (400, 200, r"exceeds the data: the smallest class has 50 training images"),
])
def test_impossible_splits_are_refused(num_labeled, num_val, message):
    with pytest.raises(UserError, match=message):
        split_indices(np.repeat(np.arange(10), 50), 10, num_labeled, num_val, seed=0)


def test_balance_duplicates_small_classes_up_to_the_largest_by_index():
    classes = np.array([0] * 7 + [1] * 3 + [2] * 1)
    confidence = np.linspace(0.8, 0.99, len(classes))
    picked = balance_classes(classes, confidence, 4, 0, np.random.default_rng(0))
    assert picked.dtype.kind == "i"  # indices, not images
    assert np.bincount(classes[picked], minlength=4).tolist() == [7, 7, 7, 0]
    counts = np.bincount(picked, minlength=len(classes))
    assert counts[classes == 1].max() - counts[classes == 1].min() <= 1  # 7 = 2 x 3 + 1
    assert (counts[classes == 0] == 1).all()


def test_balance_per_class_takes_the_most_confident():
    classes = np.array([0, 0, 0, 1])
    confidence = np.array([0.9, 0.99, 0.8, 0.95])
    picked = balance_classes(classes, confidence, 2, 2, np.random.default_rng(0))
    assert sorted(picked[classes[picked] == 0].tolist()) == [0, 1]
    assert picked[classes[picked] == 1].tolist() == [3, 3]


def test_noisy_stream_gathers_both_parts_with_aligned_targets(tmp_path):
    labeled_images = np.zeros((20, 8, 8, 3), np.uint8) + np.arange(20, dtype=np.uint8)[:, None, None, None]
    np.save(tmp_path / "pool.npy", 100 + labeled_images)
    pool = np.load(tmp_path / "pool.npy", mmap_mode="r")  # a memory map works as a part
    parts = [(labeled_images, np.array([1, 3, 5])), (pool, np.array([2, 2, 9]))]
    targets = np.array([1, 3, 5, 102, 102, 109], np.float32)[:, None]
    stream = NoisyStream(parts, targets, batch_size=3, seed=0)
    assert len(stream) == 2
    seen = []
    for i in range(len(stream)):
        x, y = stream[i]
        assert x.shape == (3, 8, 8, 3) and x.dtype == np.uint8
        assert (x[:, 0, 0, 0] == y[:, 0]).all()  # every image carries its own target
        seen += y[:, 0].tolist()
    assert sorted(seen) == [1, 3, 5, 102, 102, 109]


def test_noisy_stream_reshuffles_each_epoch_and_is_reproducible():
    images, labels = synthetic_images(64, 4, size=8)
    targets = np.eye(4, dtype=np.float32)[labels]
    stream = NoisyStream([(images, np.arange(64))], targets, 16, RandAugment(2, 10), flip_crop=True, seed=1)
    first = stream[0][1]
    stream.on_epoch_end()
    second = stream[0][1]
    assert not np.array_equal(first, second)
    replay = NoisyStream([(images, np.arange(64))], targets, 16, RandAugment(2, 10), flip_crop=True, seed=1)
    replay.set_epoch(1)
    assert np.array_equal(replay[0][0], stream[0][0])


def test_image_batches_cover_all_indices_in_order():
    images = np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)
    batches = ImageBatches(images, np.array([9, 0, 4, 5, 6]), 2)
    assert len(batches) == 3
    assert np.concatenate([batches[i][:, 0, 0, 0] for i in range(3)]).tolist() == [9, 0, 4, 5, 6]


def write_odd_images(folder):
    """Images of every mode and size, plus broken files, in nested folders."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
    os.makedirs(folder / "sub")
    Image.fromarray(rgb).save(folder / "a_rgb.jpg")
    Image.fromarray(rgb[..., 0]).save(folder / "b_grey.png")
    Image.fromarray(np.dstack([rgb, rgb[..., :1]])).save(folder / "c_rgba.png")
    Image.fromarray(rgb).convert("P").save(folder / "d_palette.gif")
    Image.fromarray((rng.integers(0, 65535, (20, 20))).astype(np.uint16)).save(folder / "e_16bit.png")
    Image.fromarray(rgb).convert("CMYK").save(folder / "sub" / "f_cmyk.jpg")
    Image.fromarray(rgb[:1, :1]).save(folder / "sub" / "g_1x1.png")
    Image.fromarray(np.zeros((3000, 2000, 3), np.uint8)).save(folder / "sub" / "h_large.jpg")
    (folder / "x_zero.jpg").write_bytes(b"")
    (folder / "y_text.png").write_text("not an image")
    good = (folder / "a_rgb.jpg").read_bytes()
    (folder / "z_truncated.jpg").write_bytes(good[: len(good) // 3])
    (folder / "notes.txt").write_text("ignored: not an image extension")


def test_unlabeled_folder_of_odd_files_is_converted_and_bad_files_skipped(tmp_path):
    folder = tmp_path / "unlabeled"
    write_odd_images(folder)
    from noisy.images import list_images
    paths = list_images(folder)
    assert len(paths) == 11  # notes.txt is not listed
    out = str(tmp_path / "pool.npy")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept = images_to_npy(paths, out, 32)
    message = " ".join(str(w.message) for w in caught)
    assert "skipped" in message and "x_zero.jpg" in message and "y_text.png" in message
    assert len(kept) == 8 and not any(k.endswith(("x_zero.jpg", "y_text.png")) for k in kept)
    pool = np.load(out)
    assert pool.shape == (len(kept), 32, 32, 3) and pool.dtype == np.uint8
    assert not os.path.exists(out + ".partial.npy")


def write_class_folders(root, n):
    """(root, images): root/train/class<k>/ and root/test/class<k>/ holding the same `n`
    synthetic PNGs of 3 classes."""
    images, labels = synthetic_images(n, 3, size=32)
    for split in ("train", "test"):
        for i, (image, label) in enumerate(zip(images, labels)):
            os.makedirs(root / split / f"class{label}", exist_ok=True)
            Image.fromarray(image).save(root / split / f"class{label}" / f"{i:03d}.png")
    return root, images


def test_class_folder_source_and_data_cache(tmp_path):
    root, images = write_class_folders(tmp_path / "data", 24)
    x_train, y_train, x_test, y_test, names = load_source(str(root))
    assert names == ["class0", "class1", "class2"]
    assert x_train.shape == (24, 32, 32, 3) and np.bincount(y_train).tolist() == [8, 8, 8]
    order = np.argsort(y_train, kind="stable")
    assert np.array_equal(x_train[order][0], images[0])  # lossless PNG round trip
    split = prepare_data(str(root), str(tmp_path / "run" / "data"), 6, 3, seed=0)
    assert split.config["num_unlabeled"] == 15 and split.config["image_shape"] == [32, 32, 3]
    assert not os.path.exists(tmp_path / "run" / "data")  # not before its stage's checks pass
    split.commit()
    again = prepare_data(str(root), str(tmp_path / "run" / "data"), 6, 3, seed=0)
    assert (again.config, again.folder) == (split.config, str(tmp_path / "run" / "data"))
    with pytest.raises(UserError, match=r"holds a split made with other data settings: num_labeled 6 \(now 9\)"):
        prepare_data(str(root), str(tmp_path / "run" / "data"), 9, 3, seed=0)


@pytest.mark.parametrize("make, message", [
    (lambda p: None, r"neither 'cifar10', a .npz file nor an existing folder"),
    (lambda p: os.makedirs(p / "train" / "a"), r"src/test not found: a data folder needs train/<class>/ and test/"),
    (lambda p: [os.makedirs(p / s / "only") for s in ("train", "test")], r"expected at least 2"),
    (lambda p: [os.makedirs(p / s / c) for s in ("train", "test") for c in "ab"], r"holds no image files"),
])
def test_bad_sources_get_clear_errors(tmp_path, make, message):
    make(tmp_path / "src")
    with pytest.raises(UserError, match=message):
        load_source(str(tmp_path / "src"))


def test_npz_with_wrong_arrays(tmp_path):
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(UserError, match=r"bad.npz lacks array\(s\) y_train, x_test, y_test"):
        load_source(str(tmp_path / "bad.npz"))
    np.savez(tmp_path / "float.npz", x_train=np.zeros((2, 4, 4, 3)), y_train=[0, 1],
             x_test=np.zeros((2, 4, 4, 3)), y_test=[0, 1])
    with pytest.raises(UserError, match=r"float.npz:x_train has shape \(2, 4, 4, 3\) dtype float64"):
        load_source(str(tmp_path / "float.npz"))


def test_npy_rows_reads_any_rows_like_the_array(tmp_path):
    import pickle
    array = np.random.default_rng(0).integers(0, 255, (50, 4, 4, 3)).astype(np.uint8)
    np.save(tmp_path / "a.npy", array)
    rows = NpyRows(str(tmp_path / "a.npy"))
    assert rows.shape == array.shape and rows.dtype == np.uint8 and len(rows) == 50
    for index in (np.array([7, 3, 4, 49, 0, 0, 8]), slice(10, 20), np.arange(50), np.array([], int)):
        assert np.array_equal(rows[index], array[index])
    assert np.array_equal(pickle.loads(pickle.dumps(rows))[[1, 2]], array[[1, 2]])  # for worker processes
    with pytest.raises(IndexError, match="row out of range"):
        rows[[50]]
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(UserError, match=r"bad.npy is not a readable .npy file"):
        NpyRows(str(tmp_path / "bad.npy"))


def test_the_fingerprint_of_a_data_folder_sees_into_class_folders_linked_in(tmp_path):
    """The reader follows a linked class folder, so the fingerprint does too: a file
    removed there makes a new split (a fresh-eyes tester, #24)."""
    from noisy.data import source_fingerprint
    (tmp_path / "elsewhere" / "cat").mkdir(parents=True)
    (tmp_path / "elsewhere" / "cat" / "0.png").write_bytes(b"0")
    (tmp_path / "elsewhere" / "cat" / "1.png").write_bytes(b"1")
    (tmp_path / "src" / "train").mkdir(parents=True)
    os.symlink(tmp_path / "elsewhere" / "cat", tmp_path / "src" / "train" / "cat")
    before = source_fingerprint(str(tmp_path / "src"))
    os.remove(tmp_path / "elsewhere" / "cat" / "1.png")
    assert source_fingerprint(str(tmp_path / "src")) != before


def test_a_link_to_nothing_in_a_source_is_skipped_as_unreadable_not_a_crash(tmp_path):
    """A dangling link among the images is skipped with the warning of any unreadable file,
    and the identities of the source and of an unlabeled folder are still defined; they
    change once the link leads to a file (a fresh-eyes tester, #24: 'No such file')."""
    from noisy.data import source_fingerprint
    from noisy.images import folder_identity
    root, images = write_class_folders(tmp_path / "data", 12)
    os.symlink(tmp_path / "gone.png", root / "train" / "class0" / "zzz.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x_train, *_ = load_source(str(root))
    assert x_train.shape[0] == 12 and any("zzz.png" in str(w.message) for w in caught)
    link = str(root / "train" / "class0" / "zzz.png")
    before, identity = source_fingerprint(str(root)), folder_identity([link], 32)
    Image.fromarray(images[0]).save(tmp_path / "gone.png")
    assert source_fingerprint(str(root)) != before and folder_identity([link], 32) != identity
    os.symlink("self.png", root / "train" / "class1" / "self.png")  # a link to itself
    os.symlink("..", root / "train" / "class1" / "up")  # a folder loop
    assert source_fingerprint(str(root)) and folder_identity([str(root / "train" / "class1" / "self.png")], 32)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert load_source(str(root))[0].shape[0] == 13  # the twelve and gone.png, now there
