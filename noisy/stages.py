"""A stage being made (`teacher/`, `pseudo/`, a student's folder): begun, resumed, refused
or finished by one set of rules (docs/RUNS.md).

Its config.json, written last, records its *identity* (the settings that define its
result, and what identifies each input), a record of every file it wrote, its provenance
and a fresh run id. The same identity again has nothing to do; another is refused, naming
each difference, unless `--retrain=True`. Checkpoints and new outputs wait in `resume/`
(resumed only under the identity and backend they were made with) until `finish` moves
them in, config.json last.
"""
import contextlib
import functools
import json
import os
import shutil
import subprocess
import time

from noisy.errors import interrupted, require
from noisy.settings import MODEL_FILES
from noisy.files import file_record, read_json, save_json, save_model, save_npy, unchanged

# Settings that change how fast or where a stage runs, not what it makes: for every stage,
# and per stage those whose effect its inputs' identity already records.
RUNTIME_SETTINGS = ("run_dir", "workers", "multiprocessing", "retrain", "jit_compile", "num_shards", "shard",
                    "model_file", "checkpoint_every", "steps_per_execution")
STAGE_RUNTIME = {"teacher": ("data", "num_labeled", "num_val"),  # the split's identity stands for them
                 "student": ("student",),                          # the folder's name
                 "pseudo": ("batch_size",)}                        # prediction batches
STAGING = "resume"  # a stage's checkpoints and new outputs, until it finishes
WHAT = {"teacher": "teacher", "pseudo": "set of pseudo-labels", "student": "student"}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def identity(settings, inputs, runtime=()):
    """A stage's settings less the runtime ones, and its inputs, as JSON stores them."""
    skip = set(RUNTIME_SETTINGS) | set(runtime)
    return json.loads(json.dumps({"settings": {k: v for k, v in settings.items() if k not in skip},
                                  "inputs": inputs}))


@functools.lru_cache(maxsize=None)
def provenance():
    """What a stage runs under, recorded and named, not enforced (but a resume's backend):
    backend, library versions, TensorFlow's CPU kernels and the code's `git describe`."""
    import importlib.metadata
    from noisy.backend import import_keras
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


class Stage:
    """One stage being made: `begin` decides, `save` stages outputs, `finish` moves them in."""

    def __init__(self, kind, folder, settings, retrain=False, shard_run=False):
        self.kind, self.dir, self.settings, self.retrain, self.shard_run = kind, folder, settings, retrain, shard_run
        self.what, self.config_path = WHAT[kind], os.path.join(folder, "config.json")
        self.identity, self.inputs, self.outputs = None, {}, []
        self.pending = []  # a split made for this stage: moved into RUN_DIR/data once it begins

    def check(self, **inputs):
        """Decide from the settings and `inputs`, touching nothing: checkpoints of the same
        identity resume (True); a finished stage of it exits 0; one made otherwise, or
        checkpoints made otherwise, are refused naming each difference; else afresh (False)."""
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
        differ = differences(config.get("identity"), self.identity) if config.get("complete") is True else None
        if differ == []:
            changed = [name for name, record in config.get("files", {}).items()
                       if not unchanged(os.path.join(self.dir, name), record)]
            require(not changed, f"{self.dir} holds a finished {self.what} whose {', '.join(changed)} changed or went "
                    "missing since it was written; pass --retrain=True to make it again")
            then = differences(config.get("provenance") or provenance(), provenance())
            self._commit()
            print(f"{self.dir} already holds a finished {self.what} made with these settings and inputs"
                  + (f" (made under other versions or code: {'; '.join(then)})" if then else "")
                  + "; nothing to do (--retrain=True makes it again)")
            raise SystemExit(0)
        beside = f" (and its {STAGING}/ holds checkpoints made otherwise too: {'; '.join(resume)})" if resume else ""
        require(not differ, f"{self.dir} holds a {self.what} made with other settings or inputs: "
                f"{'; '.join(differ or ())}{beside}; pass --retrain=True to replace it, or use another --run_dir")
        require(not resume, f"cannot resume {self.dir}: its checkpoints were made with other settings or inputs: "
                f"{'; '.join(resume or ())}; rerun with those settings to resume, or pass --retrain=True to start afresh")
        return False

    def _resume_differences(self):
        """None without checkpoints; else how their identity and backend differ from now's
        (other versions or CPU kernels round differently: only named)."""
        if not os.path.isfile(self.path("latest.json")):
            return None
        marker = read_json(self.path("identity.json"), f"delete {self.path('')} or pass --retrain=True to start "
                           "afresh") if os.path.isfile(self.path("identity.json")) else {}
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
        self._commit()
        return resumes

    def _commit(self):
        for split in self.pending:
            split.commit()

    def path(self, name):
        """Where this stage writes its output `name` until it finishes."""
        return os.path.join(self.dir, STAGING, name)

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
