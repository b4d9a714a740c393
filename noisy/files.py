"""Files written atomically, and read with one-line errors.

Every file is written under a temporary name in the same folder and renamed into place
(`os.replace` is atomic on POSIX), so a killed stage leaves either the old file or the new
one, never half of one. Whether a file is the one its stage wrote is noisy/verify.py's.
"""
import contextlib
import json
import os
import shutil
import zipfile

import numpy as np

from noisy.errors import UserError

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


def save_arrays(path, values):
    """Save a list of arrays as an .npz (arr_0, arr_1, ...), atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, *values)


def load_arrays(path):
    """The list of arrays `save_arrays` saved, in its order (ValueError: not such a file)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return [f[f"arr_{i}"] for i in range(len(f.files))]
    except (ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path} is not an .npz of arrays as save_arrays writes ({type(e).__name__})") from None


def fits(arrays, variables):
    """Whether saved `arrays` (load_arrays) are one per variable, shape for shape: what a
    checkpoint's weight average or random-number states must be to be put back."""
    return len(arrays) == len(variables) and all(tuple(a.shape) == tuple(v.shape) for a, v in zip(arrays, variables))


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


def file_stat(path):
    """os.stat of `path`; of the link itself where `path` is a link to nothing (or a loop
    of links), which the image readers skip as an unreadable file (with a warning), so
    that a source's identity is defined, and changes once the link leads somewhere."""
    try:
        return os.stat(path)
    except OSError:
        if not os.path.islink(path):
            raise
        return os.lstat(path)


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


def load_model(path, stage):
    """keras.models.load_model with a clear error for a missing or damaged file."""
    from noisy.quiet import import_keras
    import_keras()  # here, without TensorFlow's start-up notices: a stage reads its inputs before Keras loads
    import keras
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
    with npy_errors(path):
        return np.load(path, mmap_mode="r" if mmap else None)


@contextlib.contextmanager
def npy_errors(path):
    """A missing or unreadable .npy file as one line naming it."""
    try:
        yield
    except FileNotFoundError:
        raise UserError(f"{path} not found") from None
    except (ValueError, OSError) as e:
        raise UserError(f"{path} is not a readable .npy file ({e})") from None


class NpyRows:
    """Rows of a .npy image file read on demand with `os.pread`: `rows[indices]` returns a
    fresh array, and nothing else stays in memory. Unlike `np.load(mmap_mode='r')`, the
    pages read are not mapped into the process, so a pool larger than RAM is read in one
    pass without the process's resident memory growing with it. Pickles by path, so
    PyDataset worker processes each open their own file."""

    def __init__(self, path):
        self.path = path
        with npy_errors(path), open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            self.shape, fortran, self.dtype = read_header(f)
            self.offset = f.tell()
        if fortran or self.dtype.hasobject or not self.shape:
            raise UserError(f"{path} is not a plain C-ordered array; save it with np.save")
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        if os.path.getsize(path) < self.offset + self.shape[0] * self.row_bytes:
            raise UserError(f"{path} is truncated: {os.path.getsize(path)} bytes, its header promises "
                            f"{self.offset + self.shape[0] * self.row_bytes}; write it again")
        self._fd = None

    def __len__(self):
        return self.shape[0]

    def __getstate__(self):
        return dict(self.__dict__, _fd=None)

    def __getitem__(self, index):
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        if isinstance(index, slice):
            index = np.arange(*index.indices(len(self)))
        index = np.asarray(index, np.int64)
        if index.ndim != 1:
            raise IndexError("NpyRows takes a slice or a 1-d array of row numbers")
        if len(index) and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"row out of range for {self.path} with {len(self)} rows")
        out = np.empty((len(index),) + tuple(self.shape[1:]), self.dtype)
        order = np.argsort(index, kind="stable")
        sorted_rows = index[order]
        # Read each run of consecutive rows with one call.
        breaks = np.flatnonzero(np.diff(sorted_rows) != 1) + 1
        for run in np.split(np.arange(len(index)), breaks):
            if not len(run):
                continue
            first, count = sorted_rows[run[0]], len(run)
            data = os.pread(self._fd, count * self.row_bytes, self.offset + first * self.row_bytes)
            out[order[run]] = np.frombuffer(data, self.dtype).reshape((count,) + tuple(self.shape[1:]))
        return out

    def __del__(self):
        if getattr(self, "_fd", None) is not None:
            try:
                os.close(self._fd)
            except (OSError, TypeError, AttributeError):  # at interpreter exit `os` may be gone already
                pass
