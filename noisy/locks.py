"""One process per stage: an `flock` on a file in the stage's folder, released by the kernel
however its process ends. The file names the holder (pid, host, start) for the refusal."""
import atexit
import contextlib
import fcntl
import json
import os
import socket
import time

from noisy.errors import UserError

_held = {}  # path -> (open file, folders lock() made): an flock lasts while its file is open


def lock(folder, name=".lock", wait=False, tidy=False):
    """Hold `folder/name` until this process exits; held by another process, refuse naming
    it (or, with `wait`, wait for it). `tidy`: where the lock is all its folder holds at
    exit, remove it with the folders `lock` made (a stage refused before it began)."""
    path = os.path.join(folder, name)
    if path in _held:
        return
    tries = 0
    while True:
        made, above = [], os.path.abspath(folder)  # the folders this call makes, for unlock to take away
        while not os.path.lexists(above):
            made.append(above)
            above = os.path.dirname(above)
        try:
            os.makedirs(folder, exist_ok=True)
            f = open(path, "a+")
        except FileNotFoundError:  # the folder vanished this instant (tidied), or a link to nowhere
            tries += 1
            if tries == 3:
                raise
            continue
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            f.seek(0)
            try:
                holder = dict(json.loads(f.read()))
            except (ValueError, TypeError):  # being written this instant, or damaged: '?'
                holder = {}
            f.close()
            raise UserError(f"{folder} is in use by process {holder.get('pid', '?')} on host "
                            f"{holder.get('host', '?')} since {holder.get('started', '?')}; wait for it to finish "
                            "or stop it") from None
        if os.path.exists(path) and os.path.samestat(os.fstat(f.fileno()), os.stat(path)):
            break
        f.close()  # the holder before removed this file as it left: lock the one at the path now
    f.seek(0)
    f.truncate()
    json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}, f)
    f.flush()
    _held[path] = f, made if tidy else []
    atexit.register(unlock, path)


def unlock(path):
    """Release a lock this process holds (done at exit too); tidy, see `lock`."""
    f, made = _held.pop(path, (None, []))
    if f is None:
        return
    try:
        if made and os.listdir(os.path.dirname(path)) == [os.path.basename(path)]:
            os.remove(path)  # before the flock goes: a process that opened it meanwhile retries
            for folder in made:
                os.rmdir(folder)
    except OSError:
        pass  # a file appeared this instant: the folder stays
    f.close()


@contextlib.contextmanager
def locked(folder, name=".lock"):
    """Hold `folder/name` for a block, waiting for another holder first."""
    lock(folder, name, wait=True)
    try:
        yield
    finally:
        unlock(os.path.join(folder, name))
