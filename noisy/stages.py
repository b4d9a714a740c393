"""A stage's life: outputs that always match what made them.

Each stage folder (`teacher/`, `pseudo/`, `student/`) records in its `config.json` an
*identity*: the settings that define its result and the identity of every input it
consumed (the split, the teacher's run id and file hash, the pseudo-labels' run id, the
pool). A finished stage asked for again is skipped when the identity is the same and
refused, naming what differs, when it is not (`--retrain=True` replaces it); a resume
checkpoint is used only under the identity it was made with, and under the same backend
and library versions. Settings that do not change the result (`RUNTIME_SETTINGS`) do not
count. A finished stage made by other code than this is named as such.

Nothing finished is touched before every check has passed: `check_stage` touches
nothing; `begin_stage` drops only old checkpoints; a stage's new outputs are written into
its `resume/` folder and `finish_stage` moves them into place, config.json last, so a
run that fails leaves the finished stage whole. Build systems (Make, Bazel, DVC's lock
file) do the same on a larger scale.
"""
import json
import os
import shutil
import time

from noisy.errors import UserError, interrupted
from noisy.files import read_json, save_json
from noisy.verify import changed_files, file_sha256, source_hashes

# Settings that change how fast or where a stage runs, not what it produces: for every
# stage, and per stage those whose effect its inputs' identity already records.
RUNTIME_SETTINGS = ("run_dir", "workers", "multiprocessing", "retrain", "jit_compile", "num_shards", "shard",
                    "model_file", "checkpoint_every", "steps_per_execution")
STAGE_RUNTIME = {"teacher": ("data", "num_labeled", "num_val"),  # the split's identity stands for them
                 "student": ("student",),                          # the folder's name
                 "pseudo": ("batch_size",)}                        # prediction batches
MODEL_FILES = ("model.keras", "model.h5")  # Keras 3's format, and the legacy H5 the article saved
STAGING = "resume"  # a stage's checkpoints and new outputs, until finish_stage moves them in


def identity(settings, inputs, runtime=()):
    """What defines a stage's result: its settings less the runtime ones, and its inputs,
    as JSON stores them (tuples become lists), so that a stored identity compares equal."""
    skip = set(RUNTIME_SETTINGS) | set(runtime)
    return json.loads(json.dumps({"settings": {k: v for k, v in settings.items() if k not in skip},
                                  "inputs": inputs}))


def environment():
    """What a resumed training must run under as well: the backend, library versions and,
    under TensorFlow, its CPU kernels (oneDNN or Eigen: they round differently, so a run
    resumed under the other would not end as an unbroken one does)."""
    import importlib.metadata
    import keras
    versions = {"backend": keras.backend.backend(), "keras": keras.__version__}
    if versions["backend"] == "tensorflow":
        from tensorflow.python.util import _pywrap_util_port
        versions["cpu_kernels"] = "onednn" if _pywrap_util_port.IsMklEnabled() else "eigen"
    for package in ("tensorflow", "jax", "torch"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


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


def recorded_files(config):
    """{file name: sha256} of what a finished stage wrote, as its config.json records."""
    files = dict(config.get("files_sha256", {}))
    if config.get("model_sha256"):
        files[config.get("model_file", "model.keras")] = config["model_sha256"]
    return files


def other_code(config):
    """The files of the code that made a finished stage which differ from this code's, or []."""
    made_by, now = config.get("sources") or {}, source_hashes()
    return sorted(name for name in made_by if name in now and made_by[name] != now[name])


def has_checkpoints(stage_dir):
    """Whether a stage folder holds resume checkpoints (a training killed or stopped)."""
    return os.path.isfile(os.path.join(stage_dir, STAGING, "latest.json"))


def check_stage(stage_dir, name, wanted, retrain, env=None):
    """Without `retrain`: resume checkpoints made with the identity `wanted` (and the
    environment `env`) are resumed (returns True); else a finished `name` with that
    identity exits 0 (checkpoints of an abandoned retrain left beside it do not matter),
    and a finished stage or checkpoints made otherwise are refused, naming the
    differences. Touches nothing."""
    config_path = os.path.join(stage_dir, "config.json")
    resume_dir = os.path.join(stage_dir, STAGING)
    if retrain:
        return False
    resume_differ = None
    if has_checkpoints(stage_dir):
        marker = os.path.join(resume_dir, "identity.json")
        made_with = read_json(marker, f"delete {resume_dir} or pass --retrain=True to start afresh") \
            if os.path.isfile(marker) else None
        resume_differ = differences(made_with, dict(wanted, environment=env) if env else wanted)
        if not resume_differ:
            return True
    if os.path.isfile(config_path):
        config = read_json(config_path, "pass --retrain=True to replace the stage, or use another --run_dir")
        if config.get("complete") is True:
            differ = differences(config.get("identity"), wanted)
            changed = changed_files(stage_dir, recorded_files(config))
            if not differ and changed:
                raise UserError(f"{stage_dir} holds a finished {name} whose {', '.join(changed)} changed or went "
                                "missing since it was written; pass --retrain=True to make it again")
            if not differ:
                made_by = other_code(config)
                print(f"{stage_dir} already holds a finished {name} made with these settings and inputs"
                      + (f" (by other code: {', '.join(made_by)} differ from this checkout's)" if made_by else "")
                      + "; nothing to do (--retrain=True makes it again)")
                raise SystemExit(0)
            beside = (f" (and its {STAGING}/ holds checkpoints made otherwise than asked too: "
                      f"{'; '.join(resume_differ)}; rerun with those settings{_how_to_resume(made_with, env)} to "
                      "resume them)") if resume_differ else ""
            raise UserError(f"{stage_dir} holds a {name} made with other settings or inputs: "
                            f"{'; '.join(differ)}{beside}; pass --retrain=True to replace it, or use another --run_dir")
    if resume_differ:  # checkpoints of another run (an interrupted retrain, say), and nothing finished asked for
        raise UserError(f"cannot resume {stage_dir}: its checkpoints were made with other settings or inputs: "
                        f"{'; '.join(resume_differ)}; rerun with those settings{_how_to_resume(made_with, env)} to "
                        "resume, or pass --retrain=True to start afresh")
    return False


def _how_to_resume(made_with, env):
    """How to give a resume the environment its checkpoints were made in, where the shell
    sets it: the backend and TensorFlow's CPU kernels."""
    then = (made_with or {}).get("environment") or {}
    if not env or not then:
        return ""
    hints = []
    if then.get("backend") != env.get("backend"):
        hints.append(f"KERAS_BACKEND={then.get('backend')}")
    if then.get("backend") == env.get("backend") == "tensorflow" and then.get("cpu_kernels") != env.get("cpu_kernels"):
        hints.append({"onednn": "TF_ENABLE_ONEDNN_OPTS=1 (oneDNN's CPU kernels)",
                      "eigen": "TF_ENABLE_ONEDNN_OPTS=0 (Eigen's CPU kernels)"}.get(
            then.get("cpu_kernels"), "the CPU kernels it was made with (not recorded: code before 8bdf3ec)"))
    return f" ({', '.join(hints)})" if hints else ""


def begin_stage(stage_dir, name, wanted, retrain, env=None):
    """Call after every input and setting has been checked: `check_stage`, then record
    `wanted` (and `env`) beside the checkpoints (with `retrain`, or when nothing resumes,
    old checkpoints and staged outputs are dropped first). A finished stage is not
    touched: `finish_stage` replaces its files, config.json last."""
    resumes = check_stage(stage_dir, name, wanted, retrain, env)
    resume_dir = os.path.join(stage_dir, STAGING)
    if retrain and has_checkpoints(stage_dir):
        print(f"--retrain=True: starting {stage_dir} afresh, dropping the checkpoints in {resume_dir} (to resume "
              "an interrupted run, rerun its command without --retrain=True)", flush=True)
    if not resumes:
        shutil.rmtree(resume_dir, ignore_errors=True)
    os.makedirs(resume_dir, exist_ok=True)
    save_json(os.path.join(resume_dir, "identity.json"), dict(wanted, environment=env) if env else wanted)
    if retrain:  # a rerun of this command would start over: say how to resume instead
        interrupted.retrain = True
    return resumes


def staged_path(stage_dir, name):
    """Where a stage writes its output `name` until `finish_stage` moves it into place."""
    return os.path.join(stage_dir, STAGING, name)


def finish_stage(stage_dir, config, wanted, model=None, model_file="model.keras", files=()):
    """Write the stage's model (if any, as `model_file`: see MODEL_FILES) beside its other
    staged outputs (`files`, written to `staged_path`; a training's history.csv counts
    itself in), move them all into the stage folder and write its config.json, last,
    marked complete, with its identity, the sha256 of every file and a fresh run id that
    later stages record and check; then drop the staging folder and a model file of the
    other format. Returns the run id."""
    from noisy.files import save_model
    files = list(files)
    if os.path.isfile(staged_path(stage_dir, "history.csv")) and "history.csv" not in files:
        files.append("history.csv")  # a training stage's: the epochs of the model it keeps
    if model is not None:
        save_model(staged_path(stage_dir, model_file), model)
    hashes = {name: file_sha256(staged_path(stage_dir, name)) for name in files}
    extra = {"files_sha256": hashes}
    if model is not None:
        extra.update(model_file=model_file, model_sha256=file_sha256(staged_path(stage_dir, model_file)))
    # From here until config.json is written the stage is unfinished: a kill in between
    # leaves new files under no record, which every reader refuses and the same command
    # resumes (its checkpoints are still staged) or makes again.
    if os.path.isfile(os.path.join(stage_dir, "config.json")):
        save_json(os.path.join(stage_dir, "config.json"), {"stage": config.get("stage"), "complete": False})
    for name in files + ([model_file] if model is not None else []):
        os.replace(staged_path(stage_dir, name), os.path.join(stage_dir, name))
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.urandom(4).hex()}"
    save_json(os.path.join(stage_dir, "config.json"),  # environment: what made it, for the record (not checked)
              dict(config, **extra, identity=wanted, run_id=run_id, complete=True, sources=source_hashes(),
                   environment=environment()))
    for other in set(MODEL_FILES) - {model_file} if model is not None else ():  # a former stage's, now unnamed
        if os.path.isfile(os.path.join(stage_dir, other)):
            os.remove(os.path.join(stage_dir, other))
    shutil.rmtree(os.path.join(stage_dir, STAGING), ignore_errors=True)
    return run_id
