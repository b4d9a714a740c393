"""A stage of the run folder (`teacher/`, `pseudo/`, a student's folder): `Stage` makes one,
`Finished` reads one back checked (docs/RUNS.md).

A stage's config.json, written last, records its *identity* (the settings that define its
result and what identifies each input), every file it wrote (sha256, size, time), its
provenance and a fresh run id. The same identity again has nothing to do; another is
refused, naming each difference, unless `--retrain=True`. Checkpoints and new outputs wait
in `resume/` until `finish` moves them in.
"""
import contextlib
import functools
import importlib.metadata
import json
import os
import shutil
import subprocess
import time

from noisy.backend import import_keras
from noisy.errors import UserError, interrupted, require
from noisy.files import file_record, h5_notices_hidden, read_json, save_json, save_model, save_npy, unchanged
from noisy.settings import MODEL_FILES

# Settings that change how fast or where a stage runs, not what it makes: for every stage,
# and per stage those whose effect its inputs' identity already records.
RUNTIME_SETTINGS = ("run_dir", "workers", "multiprocessing", "retrain", "jit_compile", "num_shards", "shard",
                    "model_file", "checkpoint_every", "steps_per_execution")
STAGE_RUNTIME = {"teacher": ("data", "num_labeled", "num_val"),  # the split's identity stands for them
                 "student": ("student",),                          # the folder's name
                 "pseudo": ("batch_size",)}                        # prediction batches
WHAT = {"teacher": "teacher", "pseudo": "set of pseudo-labels", "student": "student"}
SCRIPTS = {"teacher": "train_teacher.py", "pseudo": "pseudo_label.py", "student": "train_student.py"}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def identity(settings, inputs, runtime=()):
    """A stage's settings less the runtime ones, and its inputs, as JSON stores them."""
    skip = set(RUNTIME_SETTINGS) | set(runtime)
    return json.loads(json.dumps({"settings": {k: v for k, v in settings.items() if k not in skip},
                                  "inputs": inputs}))


@functools.lru_cache(maxsize=None)
def provenance():
    """Backend, library versions, TensorFlow's CPU kernels and the code's `git describe`:
    recorded and named when they differ, not enforced (but a resume's backend)."""
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
    """Refuse the first file of `records` (name: record) that is missing from `folder` or not as `script` wrote it."""
    for name, record in records.items():
        path = os.path.join(folder, name)
        require(unchanged(path, record), f"{path} is not the file {script} wrote (missing, or its content differs "
                f"from the record of it); {remedy}")


class Stage:
    """One stage being made: `check` decides, `begin` starts, `save` stages outputs, `finish` moves them in."""

    def __init__(self, kind, folder, settings, retrain=False, shard_run=False):
        self.kind, self.dir, self.settings, self.retrain, self.shard_run = kind, folder, settings, retrain, shard_run
        self.config_path, self.identity, self.inputs, self.outputs = os.path.join(folder, "config.json"), None, {}, []
        self.pending = []  # a split made for this stage: moved into RUN_DIR/data once its checks pass

    def path(self, name):
        """Where this stage writes its output `name` until it finishes."""
        return os.path.join(self.dir, "resume", name)

    def check(self, **inputs):
        """Decide from the settings and `inputs`, touching nothing: resume checkpoints of this
        identity (True); exit 0 for a finished stage of it; refuse a stage or checkpoints made
        otherwise, naming each difference; else start afresh (False)."""
        self.inputs = inputs
        self.identity = identity(self.settings, {k: getattr(v, "id", v) for k, v in inputs.items()},
                                 STAGE_RUNTIME.get(self.kind, ()))
        if self.shard_run or self.retrain:
            return False
        resume = self._resume_differences()
        if resume == []:
            return True
        config = read_json(self.config_path, "pass --retrain=True to replace the stage, or use another --run_dir") \
            if os.path.isfile(self.config_path) else {}
        if config.get("complete") is True:
            differ = differences(config.get("identity"), self.identity)
            require(not differ, f"{self.dir} holds a {WHAT[self.kind]} made with other settings or inputs: "
                    f"{'; '.join(differ)}; pass --retrain=True to replace it, or use another --run_dir")
            Finished(self.dir, self.kind, config)  # every file as written, else refused
            self._commit_splits()
            then = differences(config.get("provenance") or provenance(), provenance())
            print(f"{self.dir} already holds a finished {WHAT[self.kind]} made with these settings and inputs"
                  + (f" (made under other versions or code: {'; '.join(then)})" if then else "")
                  + "; nothing to do (--retrain=True makes it again)")
            raise SystemExit(0)
        require(not resume, f"cannot resume {self.dir}: its checkpoints were made with other settings or inputs: "
                f"{'; '.join(resume or ())}; rerun with those settings to resume, or pass --retrain=True to start afresh")
        return False

    def _resume_differences(self):
        """None without checkpoints; else how their identity and backend differ from now's
        (other versions or CPU kernels round differently: only named)."""
        if not os.path.isfile(self.path("latest.json")):
            return None
        marker = read_json(self.path("identity.json"), f"delete {self.path('')} or pass --retrain=True to start afresh")
        then, now = marker.pop("provenance", {}), provenance()
        differ = differences(marker, dict(self.identity, backend=now["backend"]))
        other = differences(dict(then, backend=None), dict(now, backend=None))
        if not differ and other:
            print(f"note: resuming {self.dir} under other versions than it began with: {'; '.join(other)}", flush=True)
        return differ

    def begin(self, **inputs):
        """`check`, then drop what will not resume and record the identity beside the
        checkpoints. Returns whether it resumes."""
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
        self._commit_splits()
        return resumes

    def _commit_splits(self):
        for split in self.pending:
            split.commit()

    def save(self, name, value):
        """Stage an output: a dict as .json, an array as .npy."""
        (save_json if isinstance(value, dict) else save_npy)(self.path(name), value)
        self.outputs.append(name)

    def finish(self, record, model=None, model_file="model.keras"):
        """Save the model (if any) beside the staged outputs (and fit's history.csv), move
        them in, then write config.json: `record`, settings, identity, file records,
        provenance and a new run id (returned)."""
        files = self.outputs + (["history.csv"] if os.path.isfile(self.path("history.csv")) else [])  # fit's
        if model is not None:
            save_model(self.path(model_file), model)
            files.append(model_file)
            record = dict(record, model_file=model_file)
        records = {name: file_record(self.path(name)) for name in files}
        # Until config.json is written the stage is unfinished: a kill in between leaves new
        # files under no record, which every reader refuses and the same command remakes.
        if os.path.isfile(self.config_path):
            save_json(self.config_path, {"stage": self.kind, "complete": False})
        for name in files:
            os.replace(self.path(name), os.path.join(self.dir, name))
        run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.urandom(4).hex()}"
        save_json(self.config_path, dict(self.settings, **record, stage=self.kind, files=records, run_id=run_id,
                                         identity=self.identity, provenance=provenance(), complete=True))
        for other in set(MODEL_FILES) - {model_file} if model is not None else ():  # a former stage's
            if os.path.isfile(os.path.join(self.dir, other)):
                os.remove(os.path.join(self.dir, other))
        shutil.rmtree(self.path(""), ignore_errors=True)
        return run_id


class Finished:
    """A finished stage read back: its config.json, every file it records as it was written."""

    def __init__(self, folder, kind, config):
        self.dir, self.kind, self.config, self.script = folder, kind, config, SCRIPTS[kind]
        self.run_id, self.files = config["run_id"], config.get("files", {})
        self.inputs = config.get("identity", {}).get("inputs", {})
        model_file = config.get("model_file", "model.keras")
        self.model_path, self.model_sha256 = self.path(model_file), self.files.get(model_file, {}).get("sha256")
        require_files(folder, self.files, self.script, f"rerun {self.script} --retrain=True")

    def __getitem__(self, key):
        return self.config[key]

    def path(self, name):
        return os.path.join(self.dir, name)

    def load_model(self):
        """The stage's model; a file Keras cannot load is one line."""
        keras = import_keras()  # here, without TensorFlow's start-up notices
        try:
            with h5_notices_hidden():
                return keras.models.load_model(self.model_path)
        except Exception as e:  # zip, h5 and deserialisation errors come in many types
            raise UserError(f"{self.model_path} cannot be loaded as a Keras model ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''}); rerun {self.script}") from None
