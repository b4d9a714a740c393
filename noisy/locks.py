"""One process per stage: an advisory `flock` on a lock file in the stage's folder.

The kernel releases an flock when its process ends, however it ends (a kill included),
so a lock left behind by a dead process is no lock at all: there is no stale holder to
take over, no race between two processes taking one over, and no pid that another
process may have reused. The file holds who has it (pid, host, start time), for the
message a second process gets. `wait=True` queues instead of refusing (the CINIC-10
download: shard runs that start together download once).
"""
import atexit
import contextlib
import fcntl
import json
import os
import socket
import time

from noisy.errors import UserError

_held = {}  # path -> open file: an flock lasts as long as its file is open


def lock(folder, name=".lock", wait=False):
    """Hold `folder/name` until this process exits. Held by another process: without
    `wait`, a one-line UserError naming the holder; with `wait`, block until it is free."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    if path in _held:
        return
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        holder = _holder(path)
        f.close()
        raise UserError(f"{folder} is in use by process {holder.get('pid', '?')} on host {holder.get('host', '?')} "
                        f"since {holder.get('started', '?')}; wait for it to finish or stop it") from None
    f.seek(0)
    f.truncate()
    json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}, f)
    f.flush()
    _held[path] = f
    atexit.register(unlock, path)


def unlock(path):
    """Release a lock this process holds (also done at exit). The file stays: removing it
    would let a process that opened it a moment earlier lock a file nobody else sees."""
    f = _held.pop(path, None)
    if f is not None:
        f.close()


def _holder(path):
    try:
        with open(path) as f:
            holder = json.load(f)
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}  # being written at this instant, or damaged: the message says '?'


@contextlib.contextmanager
def locked(folder, name=".lock"):
    """Hold `folder/name` for a block, waiting for another holder to finish first."""
    lock(folder, name, wait=True)
    try:
        yield
    finally:
        unlock(os.path.join(folder, name))
