"""One process per stage: an `flock` on a hidden file of the run folder (`RUN_DIR/.lock-<stage
folder>`), released by the kernel however its process ends. The file names its last holder."""
import contextlib
import fcntl
import os
import socket
import time

from noisy.errors import UserError

_held = {}  # path -> open file: an flock lasts while its file is open


def lock(path, what=None, wait=False):
    """Hold the lock file `path` until this process ends (or `unlock`). Held by another process:
    refuse, naming `what` (by default `path`) and the holder, or with `wait` wait for it."""
    if path in _held:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"  # empty only in the instant it is written
        f.close()
        raise UserError(f"{what or path} is in use by {holder}; wait for it to finish or stop it") from None
    f.truncate(0)
    f.write(f"process {os.getpid()} on host {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    f.flush()
    _held[path] = f


def unlock(path):
    """Release a lock this process holds."""
    _held.pop(path).close()


@contextlib.contextmanager
def locked(path):
    """Hold the lock file `path` for a block, waiting for another holder first."""
    lock(path, wait=True)
    try:
        yield
    finally:
        unlock(path)
