"""Files that stages hand to each other, written atomically and checked on reading.

Every file is written under a temporary name in the same folder and renamed into place
(`os.replace` is atomic on POSIX), so a killed stage leaves either the old file or the new
one, never half of one. Each stage folder holds a `config.json` that records what made
its files (settings, source hashes, data source, classes, image shape); the next stage
reads it with `read_config` and refuses a missing or mismatched input by name.
"""
import contextlib
import hashlib
import json
import os
import shutil
import sys

import numpy as np

from noisy.settings import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to `path`; rename it to `path` if the block succeeds."""
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    stem, ext = os.path.splitext(name)
    tmp = os.path.join(folder, f".{stem}.tmp{os.getpid()}{ext}")  # keep the extension: Keras checks it
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)


def save_json(path, obj):
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=_jsonable)
        f.write("\n")


def save_text(path, text):
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def save_npy(path, array):
    with atomic_path(path) as tmp:
        np.save(tmp, array)


@contextlib.contextmanager
def _h5_notices_hidden():
    """Keras logs through absl that H5 is a legacy format (when saving) and that a loaded
    H5 model's metrics are not built yet: the user chose the format, so these say nothing."""
    import logging
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def save_model(path, model):
    with atomic_path(path) as tmp, _h5_notices_hidden():
        model.save(tmp)


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def relative_to_run(path, run_dir):
    """`path` relative to `run_dir` when it lies inside it (so a run folder can be moved),
    else absolute."""
    path, run_dir = os.path.abspath(path), os.path.abspath(run_dir)
    return os.path.relpath(path, run_dir) if path.startswith(run_dir + os.sep) else path


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


def read_json(path, what):
    """json.load of `path`, which must hold a JSON object; a damaged file is a UserError
    naming it and `what` to do."""
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is not readable JSON ({type(e).__name__}: {e}); {what}") from None
    if not isinstance(value, dict):
        raise UserError(f"{path} holds a JSON {type(value).__name__}, not an object; {what}")
    return value


def file_sha256(path):
    """sha256 of a file's bytes (a ResNet50 model.keras, ~100 MB, in well under a second)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_config(folder, stage, needs=()):
    """Read `folder/config.json` written by `stage`, checking that it and the files in
    `needs` (names inside `folder`) exist and, where config.json records their sha256,
    are the files the stage wrote. Raises UserError naming what is missing or changed."""
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        raise UserError(f"{path} not found: run {stage} first (or check --run_dir)")
    config = read_json(path, f"rerun {stage}")
    if config.get("complete") is not True:
        raise UserError(f"{path} belongs to an unfinished {stage}; run {stage} again to finish it")
    recorded = config.get("files_sha256", {})
    for name in needs:
        file = os.path.join(folder, name)
        if not os.path.exists(file):
            raise UserError(f"{file} is missing; rerun {stage}")
        if name in recorded and file_sha256(file) != recorded[name]:
            raise UserError(f"{file} is not the file {stage} wrote with {path} (its sha256 differs); "
                            f"rerun {stage} --retrain=True")
    return config


def load_model(path, stage):
    """keras.models.load_model with a clear error for a missing or damaged file."""
    import keras  # here, so that the settings module and its helpers stay importable without it
    if not os.path.isfile(path):
        raise UserError(f"{path} not found: run {stage} first (or check --run_dir)")
    try:
        with _h5_notices_hidden():
            return keras.models.load_model(path)
    except Exception as e:  # zip, h5 and deserialisation errors come in many types
        raise UserError(f"{path} cannot be loaded as a Keras model ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}); rerun {stage}") from None


def load_npy(path, mmap=True):
    """np.load with a clear error; large arrays are memory-mapped, not read into RAM."""
    try:
        return np.load(path, mmap_mode="r" if mmap else None)
    except FileNotFoundError:
        raise UserError(f"{path} not found") from None
    except (ValueError, OSError) as e:
        raise UserError(f"{path} is not a readable .npy file ({e})") from None
