"""A multi-process job (KERAS_DISTRIBUTION_*; docs/GPU.md#several-hosts) as the run folder
sees it: only process 0 writes RUN_DIR, the others make the same decisions in a private
copy. Keras-free, like noisy/rundir.py: a script answers before TensorFlow loads."""
import atexit
import os
import shutil
import tempfile

from noisy.errors import UserError, require


def job_process():
    """(this process's index, processes) in a multi-process job, (0, 1) outside one."""
    try:
        count = int(os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES") or 1)
        index = int(os.environ.get("KERAS_DISTRIBUTION_PROCESS_ID") or 0)
    except ValueError:
        raise UserError("KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID must be integers") from None
    require(count >= 1 and 0 <= index < count, f"KERAS_DISTRIBUTION_PROCESS_ID={index} with "
            f"KERAS_DISTRIBUTION_NUM_PROCESSES={count}: expected an index in 0..{count - 1}")
    return index, count


def process_run_dir(run_dir, folder):
    """The run folder this process writes: `run_dir` in process 0; in process k > 0 a private
    folder (NOISY_PROCESS_DIR, or a temporary one) of links to `run_dir`'s entries (its lock
    files aside) and a copy of the stage folder `folder`."""
    index, count = job_process()
    if index == 0:
        return run_dir
    shadow = os.environ.get("NOISY_PROCESS_DIR") or tempfile.mkdtemp(prefix=f"noisy-process-{index}-")
    if not os.environ.get("NOISY_PROCESS_DIR"):
        atexit.register(shutil.rmtree, shadow, True)
    os.makedirs(shadow, exist_ok=True)
    require(not os.listdir(shadow), f"NOISY_PROCESS_DIR={shadow} is not empty: name a new folder")
    for name in os.listdir(run_dir) if os.path.isdir(run_dir) else ():
        source = os.path.join(os.path.abspath(run_dir), name)
        if name == folder and os.path.isdir(source):
            shutil.copytree(source, os.path.join(shadow, name), symlinks=True)
        elif not name.startswith(".lock"):
            os.symlink(source, os.path.join(shadow, name))
    print(f"process {index} of {count}: process 0 writes {run_dir}; this one trains in {shadow}", flush=True)
    return shadow


def only_process_0(what):
    """Exit 0 in process k > 0 of a job: `what` says why (one device, one writer)."""
    index = job_process()[0]
    if index:
        print(f"process {index}: {what}, nothing to do here", flush=True)
        raise SystemExit(0)
