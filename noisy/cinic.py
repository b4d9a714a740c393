"""CINIC-10 (Darlow et al. 2018) as the unlabeled pool: the article's recipe of ImageNet
images of the CIFAR-10 classes, downsampled to 32x32.

CINIC-10 holds 270,000 PNGs in `train/ valid/ test/`, each `<class>/<file>.png` with the
ten CIFAR-10 class names. 210,000 of them (21,000 per class) are ImageNet images, named
`<synset>_<number>.png` (`n02690373_1234.png`); the other 60,000 are CIFAR-10's own
images (`cifar10-train-1234.png`, `cifar10-test-1234.png`), and its test split holds the
whole CIFAR-10 test set. Only the ImageNet files ever enter the pool, so no CIFAR-10
image, and above all no test image, is pseudo-labeled and trained on.

    pool_file, count, identity, classes = cinic_pool("cinic10", per_class=800, seed=0,
                                                    cache_root="runs/x/pool", size=32)

`source` is 'cinic10' (downloaded once with `keras.utils.get_file` into the Keras cache)
or a CINIC-10 folder already on disk. The `classes` returned name the CINIC folder of
each pool row: ImageNet-derived labels (synset -> class, by CINIC's mapping, not checked
by hand), good for reporting how often the teacher's pseudo-labels agree with them, never
used for training.
"""
import os
import re
import shutil
import warnings

import keras
import numpy as np

from noisy.files import save_json
from noisy.images import cache_image_folder
from noisy.errors import UserError
from noisy.locks import locked

# Where the tarball is fetched from, in this order; the record is doi:10.7488/ds/2448
# (datashare.ed.ac.uk/handle/10283/3192). The data repository moved to new software: the
# first address is the new one, which a maintained public downloader fetches (it records
# the same md5 and size as below); the second is the URL the dataset's README gives
# (github.com/BayesWatch/cinic-10, "Download"), the old software's, tried when the first
# fails. Either must give the same tarball: the md5 is checked whichever serves it. The new
# address ends in `/content`, so the file is saved under ARCHIVE_NAME, not its URL's name.
CINIC10_URLS = (
    "https://datashare.ed.ac.uk/server/api/core/bitstreams/e8e186cc-2688-48f1-aa5a-3fda1a43f8b6/content",
    "https://datashare.is.ed.ac.uk/bitstream/handle/10283/3192/CINIC-10.tar.gz",
)
# Neither the README nor the paper publishes a checksum. This md5 is the one that many
# public CINIC-10 loaders (torchvision-style classes, `tgz_md5`) check the same tarball
# against; no sha256 is published anywhere we found. None skips the check.
CINIC10_MD5 = "6ee4d0c996905fe93221de577967a372"
CINIC10_BYTES = 687_544_992  # the tarball's size as that downloader records it (656 MiB)
ARCHIVE_NAME = "CINIC-10.tar.gz"  # get_file extracts it to <cache>/datasets/CINIC-10_extracted/
SPLITS = ("train", "valid", "test")
IMAGENET_NAME = re.compile(r"n\d{8}_\d+\.png")  # <synset>_<number>.png; CIFAR-10 files never match


def _keras_cache(cache_dir):
    """The folder get_file keeps datasets in: `cache_dir` or Keras' home, then `datasets`."""
    home = cache_dir or os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(os.path.abspath(os.path.expanduser(home)), "datasets")


def _split_root(folder):
    """`folder` or its one subfolder that holds train/ valid/ test/, or None."""
    if not os.path.isdir(folder):
        return None
    candidates = [folder] + sorted(os.path.join(folder, d) for d in os.listdir(folder))
    return next((c for c in candidates if all(os.path.isdir(os.path.join(c, s)) for s in SPLITS)), None)


def _fetch(url, datadir, file_hash):
    """get_file's download from `url` (or the tarball it cached), checked against `file_hash`
    and extracted; the folder in it that holds the splits."""
    with warnings.catch_warnings():  # a file that is no archive: reported below instead
        warnings.filterwarnings("ignore", message="Could not extract archive")
        # fname keeps the name ARCHIVE_NAME whatever the URL ends in. An absolute cache_subdir
        # pins the folder (get_file would fall back to /tmp for a cache_dir it cannot write to).
        returned = keras.utils.get_file(ARCHIVE_NAME, origin=url, file_hash=file_hash, extract=True,
                                        cache_dir=datadir, cache_subdir=datadir)
    root = _split_root(returned)
    if not os.path.isdir(returned):
        raise ValueError("the download is not a tar or zip archive")
    if root is None:
        raise ValueError(f"the archive holds no folder with {', '.join(s + '/' for s in SPLITS)}")
    return root


def _failure(where, error):
    """One brief phrase for what failed at `where` (a URL, a folder): the error's type and first line."""
    text = str(error).strip().splitlines()
    text = text[0] if text else ""
    text = text.replace(f"URL fetch failure on {where}: ", "URL fetch failure: ")  # the URL is named already
    return f"{where} ({type(error).__name__}: {text})"


def download_cinic10(cache_dir=None, urls=CINIC10_URLS, file_hash=CINIC10_MD5):
    """Download and unpack CINIC-10 once; return the folder that holds train/ valid/ test/.

    `urls` (one URL or several) are tried in order until one gives the tarball.
    `keras.utils.get_file` keeps it as `<cache>/datasets/CINIC-10.tar.gz`, checks `file_hash`
    (md5 or sha256; None = no check) and extracts it into `<cache>/datasets/CINIC-10_extracted/`;
    a tarball already there that passes the check is used without a download. A download that
    fails the check is never extracted; it, and whatever a failed address left, is removed
    before the next address is tried, and a later run fetches it again. get_file extracts again
    on every call, so a `.complete` file written after a whole extraction makes later calls
    return at once. If every address fails, one UserError names each with its failure, and
    what to use instead."""
    urls = (urls,) if isinstance(urls, str) else tuple(urls)
    datadir = _keras_cache(cache_dir)
    archive = os.path.join(datadir, ARCHIVE_NAME)
    extracted = os.path.join(datadir, ARCHIVE_NAME.split(".")[0] + "_extracted")
    done = os.path.join(extracted, ".complete")
    root = _split_root(extracted) if os.path.isfile(done) else None
    if root:
        return root
    failures = []
    try:
        os.makedirs(datadir, exist_ok=True)
        with locked(archive + ".lock"):  # shard runs that start together download once
            root = _split_root(extracted) if os.path.isfile(done) else None  # another process finished it
            if root:
                return root
            for url in urls:
                try:
                    root = _fetch(url, datadir, file_hash)
                except Exception as e:  # urllib, tarfile, hash and OS errors, wrapped by get_file in several types
                    failures.append(_failure(url, e))
                    if os.path.isfile(archive):
                        os.remove(archive)  # a broken or wrong download: not kept, nor found by the next URL
                    shutil.rmtree(extracted, ignore_errors=True)  # nor any part of it unpacked
                    continue
                save_json(done, {"url": url, "file_hash": file_hash, "root": root})
                return root
    except OSError as e:  # the cache folder or its lock
        failures.append(_failure(f"the cache folder {datadir}", e))
    raise UserError(f"CINIC-10: could not download or unpack it: {'; then '.join(failures) or 'no URL given'}; "
                    "use --unlabeled=<your folder of images> (a CINIC-10 folder already on disk works the same "
                    "way), or train the teacher with train_teacher.py --num_labeled=4000 in a new --run_dir (the "
                    "standard semi-supervised split of CIFAR-10, whose unlabeled rest becomes the pool)")


def imagenet_files(folder):
    """The ImageNet images below `folder` (`<synset>_<number>.png`, in any split), sorted,
    and the class of each (its parent folder's name). CIFAR-10's files are left out."""
    files = []
    for parent, dirs, names in os.walk(folder):
        dirs.sort()
        files += [os.path.join(parent, n) for n in names if IMAGENET_NAME.fullmatch(n)]
    if not files:
        raise UserError(f"--unlabeled: {folder} is not a CINIC-10 folder: no <synset>_<number>.png files "
                        "(like n02690373_1234.png)")
    files.sort()
    return files, [os.path.basename(os.path.dirname(f)) for f in files]


def is_cinic_folder(folder):
    """Whether `folder` is laid out as CINIC-10 (train/ valid/ test/ of class folders)
    with ImageNet-named images in it: then only those are taken, as for the download."""
    root = _split_root(folder)
    if root is None:
        return False
    for parent, dirs, names in os.walk(root):
        if any(IMAGENET_NAME.fullmatch(n) for n in names):
            return True
    return False


def sample_per_class(files, classes, per_class, seed):
    """`per_class` files of each class (0 = all of them), drawn with numpy's
    default_rng(seed): the same files for the same inputs and seed. Returns (files,
    classes), sorted by file."""
    if not isinstance(per_class, int) or per_class < 0:
        raise UserError(f"images per class must be an integer >= 0 (0 = all); got {per_class!r}")
    if len(files) != len(classes):
        raise ValueError(f"{len(files)} files but {len(classes)} classes")
    classes = np.asarray(classes)
    rng = np.random.default_rng(seed)
    chosen = []
    for name in sorted(set(classes.tolist())):
        members = np.flatnonzero(classes == name)
        if per_class > len(members):
            raise UserError(f"--cinic_per_class={per_class}: class {name!r} has only "
                            f"{len(members)} ImageNet images")
        chosen += members[rng.permutation(len(members))[:per_class or None]].tolist()
    order = sorted(chosen, key=lambda i: files[i])
    return [files[i] for i in order], [str(classes[i]) for i in order]


def cinic_pool(source, per_class, seed, cache_root, size, download_dir=None, file_hash=CINIC10_MD5):
    """The unlabeled pool from CINIC-10's ImageNet images: `per_class` per class (0 = all
    21,000), sampled with `seed`, decoded once into `cache_root/<identity>/images.npy` by
    `cache_image_folder`. `source` is 'cinic10' (downloaded into `download_dir`, default
    the Keras cache) or a CINIC-10 folder on disk.

    Returns (images.npy path, images, identity, classes): `classes` holds, for each row of
    images.npy, the CINIC folder (CIFAR-10 class name) the image was filed under, an
    ImageNet-derived label for diagnostics only."""
    if source == "cinic10":
        folder = download_cinic10(download_dir, file_hash=file_hash)
    elif os.path.isdir(source):
        folder = source
    else:
        raise UserError(f"--unlabeled={source!r}: expected 'cinic10' or an existing CINIC-10 folder")
    files, classes = imagenet_files(folder)
    chosen, _ = sample_per_class(files, classes, per_class, seed)
    pool_file, count, key = cache_image_folder(folder, cache_root, size, paths=chosen)
    with open(os.path.join(os.path.dirname(pool_file), "files.txt")) as f:  # the files kept, row by row
        kept = f.read().splitlines()
    return pool_file, count, key, [os.path.basename(os.path.dirname(p)) for p in kept]
