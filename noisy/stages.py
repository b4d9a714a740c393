"""A stage of the run folder (`teacher/`, `pseudo/`, a student's folder): `Stage` makes one, `Finished` reads one
back. Its config.json, written last, records its identity (settings and inputs), files, provenance and run id."""
import contextlib
import functools
import importlib.metadata
import json
import os
import shutil
import subprocess
import time

from noisy.backend import import_keras
from noisy.data import Split
from noisy.errors import UserError, interrupted, require
from noisy.files import file_record, read_json, save_json, save_model, save_npy, unchanged

# Settings of how fast or where a stage runs, not of what it makes; per stage, those its inputs or folder stand for.
RUNTIME_SETTINGS = ("run_dir", "workers", "multiprocessing", "retrain", "jit_compile", "num_shards", "shard",
                    "model_file", "checkpoint_every", "steps_per_execution")
STAGE_RUNTIME = {"teacher": ("data", "num_labeled", "num_val"), "student": ("student",), "pseudo": ("batch_size",)}
WHAT = {"teacher": "teacher", "pseudo": "set of pseudo-labels", "student": "student"}
SCRIPTS = {"teacher": "train_teacher.py", "pseudo": "pseudo_label.py", "student": "train_student.py"}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def identity(settings, inputs, runtime=()):
    """A stage's settings less the runtime ones, and its inputs, as JSON stores them."""
    kept = {k: v for k, v in settings.items() if k not in RUNTIME_SETTINGS + tuple(runtime)}
    return json.loads(json.dumps({"settings": kept, "inputs": inputs}))


@functools.lru_cache(maxsize=None)
def provenance():
    """Backend, library versions, TensorFlow's CPU kernels and the code's `git describe`:
    recorded and named where they differ, not enforced (but a resume's backend)."""
    keras = import_keras()
    found = {"backend": keras.backend.backend(), "keras": keras.__version__}
    for package in ("tensorflow", "jax"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[package] = importlib.metadata.version(package)
    if found["backend"] == "tensorflow":
        from tensorflow.python.util import _pywrap_util_port
        found["cpu_kernels"] = "onednn" if _pywrap_util_port.IsMklEnabled() else "eigen"
    with contextlib.suppress(OSError, subprocess.SubprocessError):  # not a git checkout
        found["code"] = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True,
                                       text=True, check=True, timeout=30).stdout.strip()
    return found


def differences(old, new, prefix=""):
    """'name old (now new)' for every leaf that differs between two records."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [d for key in sorted(set(old) | set(new))
                for d in differences(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else key)]
    short = [text if len(text) <= 40 else text[:36] + ('..."' if text[0] == '"' else "...")
             for text in (json.dumps(old), json.dumps(new))]  # a cut string keeps its closing quote
    return [] if old == new else [f"{prefix or 'identity'} {short[0]} (now {short[1]})"]


def require_files(folder, records, script, remedy):
    """Refuse the first file of `records` (name: record) missing from `folder` or not as `script` wrote it."""
    for name, record in records.items():
        path = os.path.join(folder, name)
        require(unchanged(path, record), f"{path} is not the file {script} wrote (missing, or its content differs "
                f"from the record of it); {remedy}")


class Stage:
    """A stage being made: `check` decides, `begin` starts, `finish` moves its outputs in from `resume/`."""

    def __init__(self, kind, folder, settings, retrain=False, shard_run=False):
        self.kind, self.dir, self.settings, self.retrain, self.shard_run = kind, folder, settings, retrain, shard_run
        self.config_path, self.identity, self.inputs = os.path.join(folder, "config.json"), None, {}

    def path(self, name):  # where this stage writes its output `name` until it finishes
        return os.path.join(self.dir, "resume", name)

    def check(self, **inputs):
        """Decide, touching nothing: resume checkpoints of this identity and backend (True; other versions are only
        named); exit 0 for a finished stage of it; refuse one made otherwise; else start afresh (False)."""
        self.inputs = inputs
        self.identity = identity(self.settings, {k: getattr(v, "id", v) for k, v in inputs.items()},
                                 STAGE_RUNTIME.get(self.kind, ()))
        if self.shard_run or self.retrain:
            return False
        resume, now = None, provenance()
        if os.path.isfile(self.path("latest.json")):  # checkpoints, with the identity they were made under
            marker = read_json(self.path("identity.json"), f"delete {self.path('')} or pass --retrain=True")
            then = marker.pop("provenance", {})
            resume = differences(marker, dict(self.identity, backend=now["backend"]))
            other = differences(dict(then, backend=None), dict(now, backend=None))
            if not resume:
                if other:
                    print(f"note: resuming {self.dir} under other versions than it began with: "
                          f"{'; '.join(other)}", flush=True)
                return True
        config = read_json(self.config_path, "pass --retrain=True to replace the stage, or use another --run_dir") \
            if os.path.isfile(self.config_path) else {}
        if config.get("complete") is True:
            differ = differences(config.get("identity"), self.identity)
            require(not differ, f"{self.dir} holds a {WHAT[self.kind]} made with other settings or inputs: "
                    f"{'; '.join(differ)}; pass --retrain=True to replace it, or use another --run_dir")
            Finished(self.dir, self.kind)  # every file as written, else refused
            self._commit_split()
            then = differences(config.get("provenance") or now, now)
            print(f"{self.dir} already holds a finished {WHAT[self.kind]} made with these settings and inputs"
                  + (f" (made under other versions or code: {'; '.join(then)})" if then else "")
                  + "; nothing to do (--retrain=True makes it again)")
            raise SystemExit(0)
        require(not resume, f"cannot resume {self.dir}: its checkpoints were made with other settings or inputs: "
                f"{'; '.join(resume or ())}; rerun with those to resume, or pass --retrain=True to start afresh")
        return False

    def begin(self, **inputs):
        """`check`, then drop what will not resume and record the identity beside the checkpoints."""
        resumes = self.check(**(inputs or self.inputs))
        if self.shard_run:
            return False  # a slice's run writes only its shard files, beside the stage
        if self.retrain and os.path.isfile(self.path("latest.json")):
            print(f"--retrain=True: starting {self.dir} afresh, dropping the checkpoints in {self.path('')} (to "
                  "resume an interrupted run, rerun its command without --retrain=True)", flush=True)
        if not resumes:
            shutil.rmtree(self.path(""), ignore_errors=True)
        save_json(self.path("identity.json"), dict(self.identity, backend=provenance()["backend"],
                                                   provenance=provenance()))
        interrupted.retrain = self.retrain  # a rerun of this command would start over: say how to resume
        self._commit_split()
        return resumes

    def _commit_split(self):
        if isinstance(self.inputs.get("split"), Split):  # a split made for this stage: checked, so moved in
            self.inputs["split"].commit()

    def finish(self, record, model=None, model_file="model.keras", outputs=None):
        """Save `outputs` (name: a dict as .json, an array as .npy) and `model` beside fit's
        history.csv, move them in, then write config.json; returns the new run id."""
        outputs = outputs or {}
        for name, value in outputs.items():
            (save_json if isinstance(value, dict) else save_npy)(self.path(name), value)
        if model is not None:
            save_model(self.path(model_file), model)
            record = dict(record, model_file=model_file)
        files = [name for name in (*outputs, "history.csv", model_file) if os.path.isfile(self.path(name))]
        records = {name: file_record(self.path(name)) for name in files}
        if os.path.isfile(self.config_path):  # unfinished to every reader until the new config.json is written
            save_json(self.config_path, {"stage": self.kind, "complete": False})
        for name in files:
            os.replace(self.path(name), os.path.join(self.dir, name))
        run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.urandom(4).hex()}"
        save_json(self.config_path, dict(self.settings, **record, stage=self.kind, files=records, run_id=run_id,
                                         identity=self.identity, provenance=provenance(), complete=True))
        shutil.rmtree(self.path(""), ignore_errors=True)
        return run_id


def finished_config(folder, script, damaged=None):
    """The config.json in `folder` of a stage (or split) that `script` finished; `damaged`: what to do if unreadable."""
    path = os.path.join(folder, "config.json")
    require(os.path.isfile(path), f"{path} not found: run {script} first (or check --run_dir)")
    config = read_json(path, damaged or f"rerun {script} --retrain=True")
    require(config.get("complete") is True, f"{path} belongs to an unfinished {script} run; run it again")
    return config


class Finished:
    """A finished stage read back (a teacher may be a second round's student), every file it records as written."""

    def __init__(self, folder, kind):
        self.dir, self.config = folder, finished_config(folder, SCRIPTS[kind])
        self.kind = "student" if self.config.get("stage") == "student" else kind
        name, self.script = os.path.basename(folder), SCRIPTS[self.kind]
        self.command = self.script + (f" --student={name}" if self.kind == "student" and name != "student" else "")
        self.run_id, self.inputs = self.config["run_id"], self.config.get("identity", {}).get("inputs", {})
        files, model_file = self.config.get("files", {}), self.config.get("model_file", "model.keras")
        self.model_path, self.model_sha256 = self.path(model_file), files.get(model_file, {}).get("sha256")
        require_files(folder, files, self.script, f"rerun {self.command} --retrain=True")

    def path(self, name):
        return os.path.join(self.dir, name)

    def load_model(self):
        """The stage's model; a file Keras cannot load is one line."""
        keras = import_keras()  # here, without TensorFlow's start-up notices
        try:
            return keras.models.load_model(self.model_path)
        except Exception as e:  # zip, h5 and deserialisation errors come in many types
            raise UserError(f"{self.model_path} cannot be loaded as a Keras model ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''}); rerun {self.script}") from None
