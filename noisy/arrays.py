"""Arrays on disk: an .npy read whole or memory-mapped (`load_npy`) or by rows on demand
(`NpyRows`, for pools larger than RAM), and a list of arrays in one .npz (`save_arrays`,
a checkpoint's random-number states), each with one-line errors."""
import contextlib
import os
import zipfile

import numpy as np

from noisy.errors import UserError
from noisy.files import atomic_path


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
