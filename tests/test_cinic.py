"""CINIC-10 as the unlabeled pool: download through keras.utils.get_file from file://
tarballs (no network), its addresses tried in order with the hash checked for each, errors
as one line, only ImageNet files, per-class sampling."""
import hashlib
import os
import tarfile

import numpy as np
import pytest
from PIL import Image

from noisy import cinic
from noisy.errors import UserError

CLASSES = ("airplane", "bird", "truck")
IMAGENET_PER_SPLIT = {"airplane": 4, "bird": 3, "truck": 5}  # per split: 12, 9, 15 in all
SYNSET = {"airplane": "n02690373", "bird": "n01530575", "truck": "n03417042"}


def make_cinic_tree(root):
    """A CINIC-shaped folder: train/ valid/ test/, 3 classes, ImageNet files
    (<synset>_<number>.png) and CIFAR-10 files (cifar10-<origin>-<index>.png); every
    image's colour encodes its class, so decoded rows can be matched to their class."""
    for split in cinic.SPLITS:
        for c, name in enumerate(CLASSES):
            folder = os.path.join(root, split, name)
            os.makedirs(folder)
            colour = (40 + 80 * c, 200 - 60 * c, 90)
            for i in range(IMAGENET_PER_SPLIT[name]):
                number = 1000 * cinic.SPLITS.index(split) + i
                Image.new("RGB", (32, 32), colour).save(os.path.join(folder, f"{SYNSET[name]}_{number}.png"))
            for origin in ("train", "test"):
                Image.new("RGB", (32, 32), (0, 0, 0)).save(os.path.join(folder, f"cifar10-{origin}-{c}7.png"))
    return str(root)


@pytest.fixture
def cinic_tarball(tmp_path):
    """CINIC-10.tar.gz with train/ valid/ test/ at its top, as a file:// URL, and its sha256."""
    tree = make_cinic_tree(tmp_path / "tree")
    archive = tmp_path / "served" / "CINIC-10.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        for split in cinic.SPLITS:
            tar.add(os.path.join(tree, split), arcname=split)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    return archive, archive.as_uri(), digest


def assert_one_line_with_alternatives(error, url):
    text = str(error.value)
    assert "\n" not in text
    assert url in text
    assert "--unlabeled=<your folder of images>" in text
    assert "--num_labeled=4000" in text


def test_download_verifies_extracts_and_reuses_the_cache(cinic_tarball, tmp_path):
    archive, url, digest = cinic_tarball
    cache = str(tmp_path / "keras")
    root = cinic.download_cinic10(cache, urls=url, file_hash=digest)
    assert root == os.path.join(cache, "datasets", "CINIC-10_extracted")  # where get_file extracts
    assert os.path.isfile(os.path.join(cache, "datasets", "CINIC-10.tar.gz"))  # the download is kept
    assert sorted(os.listdir(os.path.join(root, "valid"))) == sorted(CLASSES)
    files, _ = cinic.imagenet_files(root)
    assert len(files) == 3 * sum(IMAGENET_PER_SPLIT.values())

    os.remove(archive)  # the source is gone: a second call must not need it, nor extract again
    os.remove(os.path.join(cache, "datasets", "CINIC-10.tar.gz"))
    assert cinic.download_cinic10(cache, urls=url, file_hash=digest) == root


def test_md5_is_accepted_as_the_hash(cinic_tarball, tmp_path):
    archive, url, _ = cinic_tarball
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    root = cinic.download_cinic10(str(tmp_path / "keras"), urls=url, file_hash=md5)
    assert os.path.isdir(os.path.join(root, "train", "bird"))


def test_a_tarball_with_a_top_folder_is_found(tmp_path):
    tree = make_cinic_tree(tmp_path / "tree")
    archive = tmp_path / "CINIC-10.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname="CINIC-10")
    root = cinic.download_cinic10(str(tmp_path / "keras"), urls=archive.as_uri(), file_hash=None)
    assert root.endswith(os.path.join("CINIC-10_extracted", "CINIC-10"))


def test_wrong_hash_is_one_line_naming_url_and_alternatives(cinic_tarball, tmp_path):
    _, url, digest = cinic_tarball
    cache = str(tmp_path / "keras")
    with pytest.raises(UserError) as error:
        cinic.download_cinic10(cache, urls=url, file_hash="0" * 64)
    assert_one_line_with_alternatives(error, url)
    assert "hash" in str(error.value)
    assert not os.path.exists(os.path.join(cache, "datasets", "CINIC-10.tar.gz"))  # the wrong file is not kept
    assert not os.path.exists(os.path.join(cache, "datasets", "CINIC-10_extracted"))
    assert os.path.isdir(os.path.join(cinic.download_cinic10(cache, urls=url, file_hash=digest), "test"))


def test_missing_file_is_one_line_naming_url_and_alternatives(tmp_path):
    url = (tmp_path / "nowhere" / "CINIC-10.tar.gz").as_uri()
    with pytest.raises(UserError) as error:
        cinic.download_cinic10(str(tmp_path / "keras"), urls=url, file_hash=None)
    assert_one_line_with_alternatives(error, url)


def test_a_file_that_is_no_archive_is_refused_and_not_kept(tmp_path):
    served = tmp_path / "CINIC-10.tar.gz"
    served.write_bytes(b"<html>the repository is down for maintenance</html>")
    cache = str(tmp_path / "keras")
    with pytest.raises(UserError) as error:
        cinic.download_cinic10(cache, urls=served.as_uri(), file_hash=None)
    assert_one_line_with_alternatives(error, served.as_uri())
    assert "not a tar or zip archive" in str(error.value)
    assert not os.path.exists(os.path.join(cache, "datasets", "CINIC-10.tar.gz"))


@pytest.fixture
def get_file_calls(monkeypatch):
    """The URL of each keras.utils.get_file call, in order, and whether CINIC-10.tar.gz was in
    the cache when it was made (a wrong download left there would meet the next URL)."""
    calls, real = [], cinic.keras.utils.get_file

    def recording(fname, origin, cache_subdir, **kwargs):
        calls.append((origin, os.path.exists(os.path.join(cache_subdir, fname))))
        return real(fname, origin=origin, cache_subdir=cache_subdir, **kwargs)

    monkeypatch.setattr(cinic.keras.utils, "get_file", recording)
    return calls


def other_tarball(tmp_path):
    """A CINIC-shaped tarball unlike cinic_tarball's (other bytes, a marker file): a wrong one."""
    tree = make_cinic_tree(tmp_path / "other_tree")
    open(os.path.join(tree, "train", "WRONG"), "w").close()
    archive = tmp_path / "elsewhere" / "content"  # named like the new address's last part
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        for split in cinic.SPLITS:
            tar.add(os.path.join(tree, split), arcname=split)
    return archive


def test_the_urls_are_the_new_address_then_the_old():
    assert cinic.CINIC10_URLS == (
        "https://datashare.ed.ac.uk/server/api/core/bitstreams/e8e186cc-2688-48f1-aa5a-3fda1a43f8b6/content",
        "https://datashare.is.ed.ac.uk/bitstream/handle/10283/3192/CINIC-10.tar.gz")
    assert cinic.CINIC10_MD5 == "6ee4d0c996905fe93221de577967a372"
    assert cinic.download_cinic10.__defaults__ == (None, cinic.CINIC10_URLS, cinic.CINIC10_MD5)


def test_a_missing_first_url_falls_back_to_the_second(cinic_tarball, tmp_path, get_file_calls):
    archive, second, _ = cinic_tarball
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    first = (tmp_path / "moved" / "content").as_uri()
    cache = str(tmp_path / "keras")
    root = cinic.download_cinic10(cache, urls=(first, second), file_hash=md5)
    assert [url for url, _ in get_file_calls] == [first, second]
    assert os.path.isdir(os.path.join(root, "test", "truck"))
    saved = os.path.join(cache, "datasets", "CINIC-10.tar.gz")
    assert hashlib.md5(open(saved, "rb").read()).hexdigest() == md5


def test_a_wrong_md5_from_the_first_url_is_refused_and_the_second_used(cinic_tarball, tmp_path, get_file_calls):
    archive, second, _ = cinic_tarball
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    first = other_tarball(tmp_path).as_uri()  # a whole CINIC-shaped tarball, but not the one the md5 names
    cache = str(tmp_path / "keras")
    root = cinic.download_cinic10(cache, urls=(first, second), file_hash=md5)
    assert get_file_calls == [(first, False), (second, False)]  # the wrong file was gone before the second URL
    saved = os.path.join(cache, "datasets", "CINIC-10.tar.gz")
    assert hashlib.md5(open(saved, "rb").read()).hexdigest() == md5  # the cache holds the right tarball
    assert not os.path.exists(os.path.join(root, "train", "WRONG"))  # and only it was unpacked
    assert sorted(os.listdir(os.path.join(cache, "datasets"))) == ["CINIC-10.tar.gz", "CINIC-10.tar.gz.lock",
                                                                   "CINIC-10_extracted"]


def test_when_both_urls_fail_one_line_names_both(cinic_tarball, tmp_path, get_file_calls):
    _, second, _ = cinic_tarball
    first = (tmp_path / "moved" / "content").as_uri()
    cache = str(tmp_path / "keras")
    with pytest.raises(UserError) as error:
        cinic.download_cinic10(cache, urls=(first, second), file_hash="0" * 32)  # the second: a wrong md5
    text = str(error.value)
    assert_one_line_with_alternatives(error, first)
    assert second in text and text.index(first) < text.index(second)
    assert "No such file" in text[text.index(first):text.index(second)]  # each URL with its own failure
    assert "hash" in text[text.index(second):]
    assert [url for url, _ in get_file_calls] == [first, second]
    assert not os.path.exists(os.path.join(cache, "datasets", "CINIC-10.tar.gz"))  # nothing wrong kept
    assert not os.path.exists(os.path.join(cache, "datasets", "CINIC-10_extracted"))


def test_a_good_first_url_leaves_the_second_alone_and_the_cache_is_reused(cinic_tarball, tmp_path,
                                                                          get_file_calls):
    tarball, _, _ = cinic_tarball
    md5 = hashlib.md5(tarball.read_bytes()).hexdigest()
    archive = tmp_path / "new" / "content"  # served as the new address serves it, with no file name
    archive.parent.mkdir()
    archive.write_bytes(tarball.read_bytes())
    first = archive.as_uri()
    other = other_tarball(tmp_path)
    second = other.as_uri()
    cache = str(tmp_path / "keras")
    root = cinic.download_cinic10(cache, urls=(first, second), file_hash=md5)
    assert [url for url, _ in get_file_calls] == [first]  # the second is never contacted
    assert not os.path.exists(os.path.join(root, "train", "WRONG"))
    assert os.path.isfile(os.path.join(cache, "datasets", "CINIC-10.tar.gz"))  # saved by its name, not "content"
    assert not os.path.exists(os.path.join(cache, "datasets", "content"))

    # Unpacking interrupted (no .complete), both sources gone: the cached tarball, whose md5
    # is right, is unpacked again without a download (one would fail: nothing is served).
    os.remove(os.path.join(root, ".complete"))
    os.remove(archive)
    os.remove(other)
    assert cinic.download_cinic10(cache, urls=(first, second), file_hash=md5) == root
    assert get_file_calls == [(first, False), (first, True)]
    assert os.path.isfile(os.path.join(root, ".complete"))


def test_only_imagenet_files_are_taken(tmp_path):
    root = make_cinic_tree(tmp_path / "cinic")
    files, classes = cinic.imagenet_files(root)
    assert files == sorted(files)
    assert not any("cifar" in os.path.basename(f) for f in files)
    assert all(cinic.IMAGENET_NAME.fullmatch(os.path.basename(f)) for f in files)
    test_split = [f for f in files if os.sep + "test" + os.sep in f]
    assert len(test_split) == sum(IMAGENET_PER_SPLIT.values())  # the test split's ImageNet files, not its CIFAR ones
    assert [classes.count(c) for c in CLASSES] == [3 * IMAGENET_PER_SPLIT[c] for c in CLASSES]
    assert all(os.path.basename(os.path.dirname(f)) == c for f, c in zip(files, classes))


@pytest.mark.parametrize("name", ["n0269037_1.png", "n026903731_1.png", "n02690373_1.jpg", "n02690373_.png",
                                  "N02690373_1.png", "cifar10-test-17.png", "n02690373_1.png.bak"])
def test_other_names_are_not_imagenet_files(name):
    assert not cinic.IMAGENET_NAME.fullmatch(name)


def test_a_folder_without_imagenet_files_is_refused(tmp_path):
    folder = tmp_path / "cifar_only" / "train" / "cat"
    folder.mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(folder / "cifar10-train-3.png")
    with pytest.raises(UserError, match=r"is not a CINIC-10 folder: no <synset>_<number>\.png files"):
        cinic.imagenet_files(str(tmp_path / "cifar_only"))


def test_sample_per_class_counts_determinism_and_seeds():
    files = [f"/d/{c}/n0000000{k}_{i}.png" for k, c in enumerate(CLASSES) for i in range(30)]
    classes = [f.split("/")[2] for f in files]
    chosen, chosen_classes = cinic.sample_per_class(files, classes, 7, seed=3)
    assert chosen == sorted(chosen) and len(set(chosen)) == len(chosen) == 21
    assert [chosen_classes.count(c) for c in CLASSES] == [7, 7, 7]
    assert all(f.split("/")[2] == c for f, c in zip(chosen, chosen_classes))
    assert cinic.sample_per_class(files, classes, 7, seed=3) == (chosen, chosen_classes)
    assert cinic.sample_per_class(files, classes, 7, seed=4)[0] != chosen
    assert cinic.sample_per_class(files, classes, 0, seed=3)[0] == sorted(files)  # 0 = all
    with pytest.raises(UserError, match="got -1"):
        cinic.sample_per_class(files, classes, -1, seed=3)
    with pytest.raises(UserError, match="class 'airplane' has only 30"):
        cinic.sample_per_class(files, classes, 31, seed=3)


def test_cinic_pool_from_a_folder(tmp_path):
    root = make_cinic_tree(tmp_path / "cinic")
    pool_file, count, key, classes = cinic.cinic_pool(root, per_class=5, seed=1,
                                                      cache_root=str(tmp_path / "pool"), size=32)
    assert count == 15 and [classes.count(c) for c in CLASSES] == [5, 5, 5]
    images = np.load(pool_file)
    assert images.shape == (15, 32, 32, 3)
    assert images.reshape(15, -1).max(axis=1).min() > 0  # no all-black CIFAR stand-in among the rows
    for row, name in zip(images, classes):  # each row's class is the folder its image came from
        assert tuple(row[0, 0]) == (40 + 80 * CLASSES.index(name), 200 - 60 * CLASSES.index(name), 90)
    again = cinic.cinic_pool(root, per_class=5, seed=1, cache_root=str(tmp_path / "pool"), size=32)
    assert again == (pool_file, count, key, classes)
    other = cinic.cinic_pool(root, per_class=5, seed=2, cache_root=str(tmp_path / "pool"), size=32)
    assert other[2] != key  # another sample is another cache


def test_cinic_pool_downloads(cinic_tarball, tmp_path):
    _, url, digest = cinic_tarball
    cache = str(tmp_path / "keras")
    cinic.download_cinic10(cache, urls=url, file_hash=digest)  # the pool then finds it in the cache
    _, count, _, classes = cinic.cinic_pool("cinic10", per_class=0, seed=0, cache_root=str(tmp_path / "pool"),
                                            size=32, download_dir=cache, file_hash=digest)
    assert count == 36 and [classes.count(c) for c in CLASSES] == [12, 9, 15]


def test_cinic_pool_refuses_an_unknown_source(tmp_path):
    with pytest.raises(UserError, match="expected 'cinic10' or an existing CINIC-10 folder"):
        cinic.cinic_pool(str(tmp_path / "missing"), 5, 0, str(tmp_path / "pool"), 32)


def test_an_archive_without_the_splits_is_refused(tmp_path):
    archive = tmp_path / "CINIC-10.tar.gz"
    (tmp_path / "readme.txt").write_text("not CINIC-10")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "readme.txt", arcname="readme.txt")
    with pytest.raises(UserError, match="holds no folder with train/, valid/, test/"):
        cinic.download_cinic10(str(tmp_path / "keras"), urls=archive.as_uri(), file_hash=None)
