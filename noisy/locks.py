"""One process per stage: an advisory `flock` on a lock file in the stage's folder.

The kernel releases an flock when its process ends, however it ends (a kill included),
so a lock left behind by a dead process is no lock at all: there is no stale holder to
take over, no race between two processes taking one over, and no pid that another
process may have reused. The file holds who has it (pid, host, start time), for the
message a second process gets. `wait=True` queues instead of refusing (the CINIC-10
download: shard runs that start together download once).

With `tidy=True` (a stage's lock), a process that leaves nothing but its lock file in a
folder (a stage refused before it began) removes the file and the folder, and the
folders above it that it made, as it exits, while it still holds the lock; a
process that opened the file a moment earlier finds, once it has the lock, that the
file it holds is no longer the one at the path, and takes the lock again on a new one.
"""
import atexit
import contextlib
import fcntl
import json
import os
import socket
import time

from noisy.errors import UserError

_held = {}  # path -> (open file, the folders lock() made for it): an flock lasts as long as its file is open


def lock(folder, name=".lock", wait=False, tidy=False):
    """Hold `folder/name` until this process exits. Held by another process: without
    `wait`, a one-line UserError naming the holder; with `wait`, block until it is free.
    `tidy`: where the lock file is all its folder holds at unlock, remove it (above)."""
    path = os.path.join(folder, name)
    if path in _held:
        return
    while True:
        made = _missing(folder) if tidy else None  # the folders this call makes, for unlock to take away
        try:
            os.makedirs(folder, exist_ok=True)
            f = open(path, "a+")
        except (FileExistsError, FileNotFoundError):
            in_the_way = (os.path.lexists(folder) and not os.path.isdir(folder)  # a file where the folder goes
                          or os.path.islink(path) and not os.path.exists(path))  # a link to nowhere as the lock
            if in_the_way:
                raise
            continue  # its folder was removed this instant by a holder that left it empty
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = _holder(path)
            f.close()
            raise UserError(f"{folder} is in use by process {holder.get('pid', '?')} on host "
                            f"{holder.get('host', '?')} since {holder.get('started', '?')}; wait for it to finish "
                            "or stop it") from None
        if _is_at(f, path):
            break
        f.close()  # the holder before removed this file: lock the one at the path now
    f.seek(0)
    f.truncate()
    json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}, f)
    f.flush()
    _held[path] = f, made
    atexit.register(unlock, path)


def unlock(path):
    """Release a lock this process holds (also done at exit). The file stays, unless the
    lock is tidy and the file all its folder holds: then file and folder go, before the
    lock is released (see the module docstring for why a process that opened it meanwhile
    is not misled), and so do the folders above it that `lock` made, where empty now."""
    f, made = _held.pop(path, (None, None))
    if f is None:
        return
    folder = os.path.dirname(path)
    try:
        if made is not None and os.listdir(folder) == [os.path.basename(path)]:
            os.remove(path)
            os.rmdir(folder)
            for parent in made[1:]:  # made[0] is `folder`
                os.rmdir(parent)
    except OSError:
        pass  # a file appeared this instant, or the folder is not ours to remove: it stays
    f.close()


def _missing(folder):
    """`folder` and those above it that do not exist yet, deepest first."""
    missing, folder = [], os.path.abspath(folder)
    while not os.path.lexists(folder) and folder != os.path.dirname(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    return missing


def _is_at(f, path):
    """Whether the open file `f` is still the file at `path`."""
    try:
        return os.path.samestat(os.fstat(f.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


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
