"""Is a file the one its stage wrote? Every recorded file is checked by one function,
`verify`, against the sha256 its stage's config.json records, with one form of message.
`source_hashes` records which code made a stage."""
import functools
import hashlib
import os
import sys

from noisy.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def file_sha256(path):
    """sha256 of a file's bytes (a ResNet50 model.keras, ~100 MB, in well under a second).
    A file read again in the same process, unchanged (same inode, size and modification
    time), is not hashed again: a stage checks some files twice (the split's images as the
    split and as the pool; a model before and after loading it)."""
    stat = os.stat(path)
    return _sha256(os.path.abspath(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _sha256(path, inode, size, mtime_ns):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path, sha256, script, record="its config.json"):
    """Raise a one-line UserError unless `path` exists and its sha256 is `sha256` (None:
    nothing recorded, existence only), as `record` holds it. Returns the file's sha256."""
    if not os.path.isfile(path):
        raise UserError(f"{path} is missing: run {script} first (or check --run_dir)")
    actual = file_sha256(path)
    if sha256 is not None and actual != sha256:
        raise UserError(f"{path} is not the file {script} wrote (its sha256 differs from the one "
                        f"{record} records); rerun {script} --retrain=True")
    return actual


def changed_files(folder, recorded):
    """The names in `recorded` ({name: sha256}) whose file in `folder` is missing or differs."""
    return [name for name, sha in recorded.items() if not os.path.isfile(os.path.join(folder, name))
            or file_sha256(os.path.join(folder, name)) != sha]


def source_hashes():
    """sha256 (first 16 hex digits) of the scripts and package that ran this stage."""
    files = [os.path.abspath(sys.argv[0])] + [
        os.path.join(REPO, "noisy", f) for f in sorted(os.listdir(os.path.join(REPO, "noisy")))
        if f.endswith(".py")]
    hashes = {}
    for path in files:
        if os.path.isfile(path):
            with open(path, "rb") as f:
                hashes[os.path.relpath(path, REPO)] = hashlib.sha256(f.read()).hexdigest()[:16]
    return hashes
