"""The run folder's files: written atomically (a kill leaves the old file or the new one), read with one-line errors,
recorded by sha256, size and time, and hashed again only where size or time differ (DVC's way)."""
import contextlib
import hashlib
import json
import os

import numpy as np

from noisy.errors import UserError, require


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
        if os.path.exists(tmp):
            os.remove(tmp)


def save_text(path, text):
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def save_json(path, obj):
    save_text(path, json.dumps(obj, indent=2, sort_keys=True, default=lambda value: value.tolist()) + "\n")  # numpy


def save_npy(path, array):
    with atomic_path(path) as tmp:
        np.save(tmp, array)


def save_model(path, model):
    with atomic_path(path) as tmp:
        model.save(tmp)


def read_json(path, what):
    """The JSON object in `path`; a missing or damaged file is a UserError naming `what` to do."""
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is not readable JSON ({type(e).__name__}: {e}); {what}") from None
    require(isinstance(value, dict), f"{path} holds a JSON {type(value).__name__}, not an object; {what}")
    return value


def file_stat(path):
    """os.stat of `path`, or of the link itself where it leads nowhere (the readers skip it)."""
    return os.stat(path) if os.path.exists(path) else os.lstat(path)


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def file_record(path, known=None):
    """{sha256, size, mtime_ns} of `path`; the sha256 from `known` where its size and time fit."""
    stat = os.stat(path)
    same = known and (known.get("size"), known.get("mtime_ns")) == (stat.st_size, stat.st_mtime_ns)
    return {"sha256": known["sha256"] if same else sha256(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def unchanged(path, record):
    """Whether `path` is the file `record` describes: same size, and same time or sha256 (a copy)."""
    return bool(record) and os.path.isfile(path) and os.path.getsize(path) == record.get("size") \
        and file_record(path, record)["sha256"] == record.get("sha256")
