"""One process per stage: an `flock` on a hidden file in the run folder (`RUN_DIR/.lock-<stage
folder>`), which the kernel releases however its process ends, so a dead holder's lock is
simply taken. The file names its holder (pid, host, start) for the refusal; it is never
removed, and means nothing once its process has ended."""
import atexit
import contextlib
import fcntl
import json
import os
import socket
import time

from noisy.errors import UserError

_held = {}  # path -> open file: an flock lasts while its file is open


def lock(path, what=None, wait=False):
    """Hold the lock file `path` until this process exits. Held by another process: refuse,
    naming `what` (by default `path`) and the holder, or with `wait` wait for it."""
    if path in _held:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        f.seek(0)
        try:
            holder = dict(json.loads(f.read()))
        except (ValueError, TypeError):  # being written this instant, or damaged: '?'
            holder = {}
        f.close()
        raise UserError(f"{what or path} is in use by process {holder.get('pid', '?')} on host "
                        f"{holder.get('host', '?')} since {holder.get('started', '?')}; wait for it to finish "
                        "or stop it") from None
    f.seek(0)
    f.truncate()
    json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}, f)
    f.flush()
    _held[path] = f
    atexit.register(unlock, path)


def unlock(path):
    """Release a lock this process holds (done at exit too)."""
    f = _held.pop(path, None)
    if f is not None:
        f.close()


@contextlib.contextmanager
def locked(path):
    """Hold the lock file `path` for a block, waiting for another holder first."""
    lock(path, wait=True)
    try:
        yield
    finally:
        unlock(path)
