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


def save_model(path, model):
    with atomic_path(path) as tmp:
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


def read_config(folder, stage, needs=()):
    """Read `folder/config.json` written by `stage`, checking that it and the files in
    `needs` (names inside `folder`) exist. Raises UserError naming what is missing."""
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        raise UserError(f"{path} not found: run {stage} first (or check --run_dir)")
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e}); rerun {stage}") from None
    if config.get("complete") is not True:
        raise UserError(f"{path} belongs to an unfinished {stage}; run {stage} again to finish it")
    for name in needs:
        if not os.path.exists(os.path.join(folder, name)):
            raise UserError(f"{os.path.join(folder, name)} is missing; rerun {stage}")
    return config


def load_model(path, stage):
    """keras.models.load_model with a clear error for a missing or damaged file."""
    import keras  # here, so that the settings module and its helpers stay importable without it
    if not os.path.isfile(path):
        raise UserError(f"{path} not found: run {stage} first (or check --run_dir)")
    try:
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
