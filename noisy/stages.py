"""A stage's life: one process at a time, and outputs that always match what made them.

Each stage folder (`teacher/`, `pseudo/`, `student/`) records in its `config.json` an
*identity*: the settings that define its result and the identity of every input it
consumed (the split, the teacher's run id and file hash, the pseudo-labels' run id, the
pool). A finished stage asked for again is skipped when the identity is the same and
refused, naming what differs, when it is not (`--retrain=True` replaces it); a resume
checkpoint is used only under the identity it was made with. Settings that do not change
the result (`RUNTIME_SETTINGS`) do not count.

Nothing finished is touched before every check has passed: scripts read and check their
inputs first, then call `begin_stage`, which drops only old checkpoints; a finished stage
is replaced by `finish_stage`, its files one by one and config.json last.
A lock file per stage keeps a second process out; a lock whose process is gone (killed)
is taken over. Build systems (Make, Bazel, DVC's lock file) do the same on a larger scale.
"""
import atexit
import json
import os
import shutil
import socket
import time

from noisy.artifacts import file_sha256, read_json, save_json, save_model
from noisy.settings import UserError, interrupted

# Settings that change how fast or where a stage runs, not what it produces.
RUNTIME_SETTINGS = ("run_dir", "workers", "multiprocessing", "retrain", "jit_compile", "num_shards", "shard",
                    "model_file")
MODEL_FILES = ("model.keras", "model.h5")  # Keras 3's format, and the legacy H5 the article saved


def npy_identity(path):
    """An .npy file by its content: path and sha256 (about a second per GB)."""
    return {"npy": os.path.abspath(path), "sha256": file_sha256(path)}


def identity(settings, inputs, runtime=()):
    """What defines a stage's result: its settings less the runtime ones, and its inputs,
    as JSON stores them (tuples become lists), so that a stored identity compares equal."""
    skip = set(RUNTIME_SETTINGS) | set(runtime)
    return json.loads(json.dumps({"settings": {k: v for k, v in settings.items() if k not in skip},
                                  "inputs": inputs}))


def differences(old, new, prefix=""):
    """'name old (now new)' for every leaf that differs between two identities."""
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new)):
            found += differences(old.get(key), new.get(key), f"{prefix}{key}" if not prefix else f"{prefix}.{key}")
        return found
    return [] if old == new else [f"{prefix or 'identity'} {_short(old)} (now {_short(new)})"]


def _short(value):
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ----------------------------------------------------------------------------- lock
def _process_start(pid):
    """The start time of process `pid` in clock ticks since boot (Linux), so that a pid
    reused by another process is not mistaken for the lock's holder; None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(holder):
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    started = _process_start(holder["pid"])
    return started is None or holder.get("process_start") in (None, started)


def lock(folder, name=".lock"):
    """Hold `folder/name` until this process exits: a second process refuses in one line
    naming the holder; a lock left by a process that is gone (killed) is taken over."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "process_start": _process_start(os.getpid()),
          "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(30):  # a damaged lock younger than 5 s may be half written: wait for it to settle
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                with open(path) as f:
                    holder = json.load(f)
                if not (isinstance(holder, dict) and isinstance(holder.get("pid"), int)):
                    raise ValueError("not a lock written by this code")
            except (OSError, ValueError):
                holder = None  # half written by a process killed at that instant, removed meanwhile, or damaged
            if holder is None and os.path.exists(path) and time.time() - os.path.getmtime(path) < 5:
                time.sleep(0.2)  # its holder may be writing it right now
                continue
            if holder and holder.get("host") != me["host"]:
                raise UserError(f"{folder} is in use by process {holder.get('pid')} on host {holder.get('host')} "
                                f"since {holder.get('started')}; if that process is gone, delete {path}")
            if holder and _alive(holder):
                raise UserError(f"{folder} is in use by process {holder['pid']} on host {holder['host']} since "
                                f"{holder['started']}; wait for it to finish or stop it")
            try:
                os.remove(path)  # its process is gone
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        atexit.register(_unlock, path, me["pid"])
        return
    raise UserError(f"could not take the lock {path}: it is damaged or another process keeps taking it; "
                    "if no other process works on this stage, delete it")


def _unlock(path, pid):
    try:
        with open(path) as f:
            if json.load(f).get("pid") == pid:
                os.remove(path)
    except (OSError, ValueError, AttributeError):  # gone, or damaged by someone else: not ours to remove
        pass


# ----------------------------------------------------------------------------- life cycle
def check_stage(stage_dir, name, wanted, retrain):
    """Without `retrain`: resume checkpoints made with the identity `wanted` are resumed
    (returns True); else a finished `name` with that identity exits 0 (checkpoints of an
    abandoned retrain left beside it do not matter), and a finished stage or checkpoints
    made otherwise are refused, naming the differences. Touches nothing."""
    config_path = os.path.join(stage_dir, "config.json")
    resume_dir = os.path.join(stage_dir, "resume")
    marker = os.path.join(resume_dir, "identity.json")
    if retrain:
        return False
    resume_differ = None
    if os.path.isdir(resume_dir) and os.path.isfile(os.path.join(resume_dir, "latest.json")):
        made_with = read_json(marker, f"delete {resume_dir} or pass --retrain=True to start afresh") \
            if os.path.isfile(marker) else None
        resume_differ = differences(made_with, wanted)
        if not resume_differ:
            return True
    if os.path.isfile(config_path):
        config = read_json(config_path, "pass --retrain=True to replace the stage, or use another --run_dir")
        if config.get("complete") is True:
            differ = differences(config.get("identity"), wanted)
            changed = [file for file, sha in _recorded_files(config).items()
                       if not os.path.isfile(os.path.join(stage_dir, file))
                       or file_sha256(os.path.join(stage_dir, file)) != sha]
            if not differ and changed:
                raise UserError(f"{stage_dir} holds a finished {name} whose {', '.join(changed)} changed or went "
                                "missing since it was written; pass --retrain=True to make it again")
            if not differ:
                print(f"{stage_dir} already holds a finished {name} made with these settings and inputs; "
                      "nothing to do (--retrain=True makes it again)")
                raise SystemExit(0)
            raise UserError(f"{stage_dir} holds a {name} made with other settings or inputs: "
                            f"{'; '.join(differ)}; pass --retrain=True to replace it, or use another --run_dir")
    if resume_differ:  # checkpoints of another run (an interrupted retrain, say), and nothing finished asked for
        raise UserError(f"cannot resume {stage_dir}: its checkpoints were made with other settings or inputs: "
                        f"{'; '.join(resume_differ)}; rerun with those settings to resume, or pass --retrain=True "
                        "to start afresh")
    return False


def _recorded_files(config):
    """{file name: sha256} of what a finished stage wrote, as its config.json records."""
    files = dict(config.get("files_sha256", {}))
    if config.get("model_sha256"):
        files[config.get("model_file", "model.keras")] = config["model_sha256"]
    return files


def begin_stage(stage_dir, name, wanted, retrain):
    """Call after every input and setting has been checked: `check_stage`, then record
    `wanted` beside the checkpoints (with `retrain`, old checkpoints are dropped first).
    A finished stage is not deleted: `finish_stage` replaces its files, config.json last,
    so a run that fails leaves it whole."""
    resumes = check_stage(stage_dir, name, wanted, retrain)
    resume_dir = os.path.join(stage_dir, "resume")
    if not resumes:
        shutil.rmtree(resume_dir, ignore_errors=True)
    os.makedirs(resume_dir, exist_ok=True)
    save_json(os.path.join(resume_dir, "identity.json"), wanted)
    if retrain:  # a rerun of this command would start over: say how to resume instead
        interrupted.retrain = True


def finish_stage(stage_dir, config, wanted, model=None, model_file="model.keras", files=()):
    """Write the stage's model (if any, as `model_file`: see MODEL_FILES) and its
    config.json, last, marked complete, with its identity, the sha256 of the model and of
    `files` (the stage's other outputs, already written) and a fresh run id that later
    stages record and check; then drop the resume checkpoints and a model file of the
    other format."""
    live_history = os.path.join(stage_dir, "resume", "history.csv")
    if os.path.isfile(live_history):  # a training stage's: the epochs of the model it keeps
        os.replace(live_history, os.path.join(stage_dir, "history.csv"))
    extra = {"files_sha256": {name: file_sha256(os.path.join(stage_dir, name)) for name in files}}
    if model is not None:
        path = os.path.join(stage_dir, model_file)
        save_model(path, model)
        extra.update(model_file=model_file, model_sha256=file_sha256(path))
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.urandom(4).hex()}"
    save_json(os.path.join(stage_dir, "config.json"),
              dict(config, **extra, identity=wanted, run_id=run_id, complete=True))
    for other in set(MODEL_FILES) - {model_file} if model is not None else ():  # a former stage's, now unnamed
        if os.path.isfile(os.path.join(stage_dir, other)):
            os.remove(os.path.join(stage_dir, other))
    shutil.rmtree(os.path.join(stage_dir, "resume"), ignore_errors=True)
    return run_id


def model_path(stage_dir, config):
    """The stage's model file: the one its config.json names (model.keras or model.h5)."""
    return os.path.join(stage_dir, config.get("model_file", "model.keras"))


def check_model_file(stage_dir, config, script):
    """The model file is the one the stage wrote (its sha256 in config.json): a model
    copied over it is refused. Returns the sha256."""
    path = model_path(stage_dir, config)
    if not os.path.isfile(path):
        raise UserError(f"{path} not found: run {script} first (or check --run_dir)")
    sha = file_sha256(path)
    if config.get("model_sha256") not in (None, sha):
        raise UserError(f"{path} is not the model {script} wrote for this stage (its sha256 differs from "
                        f"{os.path.join(stage_dir, 'config.json')}); rerun {script} with --retrain=True")
    return sha
