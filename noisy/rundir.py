"""The run folder: each stage's inputs handed over checked (finished, unchanged since
written, of the right lineage), and each stage locked, then begun and finished by
noisy/stages.py. Every check raises a one-line UserError before anything is written.

    run = RunDir("runs/demo")
    stage = run.stage("student", settings)          # locked: one process per stage
    teacher = run.teacher()                         # finished, unchanged, of this split
    stage.begin(split=..., teacher=teacher.run_id)  # nothing to do / refused / resumed / afresh
"""
import atexit
import os
import shutil
import tempfile

import numpy as np

from noisy.arrays import NpyRows, load_npy
from noisy.data import DATA_FILES, commit_split, load_split, prepare_data, split_id
from noisy.errors import UserError, require
from noisy.files import file_record, load_model, read_json, relative_to_run, unchanged
from noisy.locks import lock
from noisy.plots import PLOTS
from noisy.stages import WHAT, Stage
from noisy.unlabeled import unlabeled_pool

SCRIPTS = {"teacher": "train_teacher.py", "pseudo": "pseudo_label.py", "student": "train_student.py"}
# Names a student's folder may not take: the other stages', results.json's keys, evaluate.py's files.
RESERVED = ("data", "teacher", "pseudo", "pool", ".", "..", "students", "test_images", "corruption_images",
            "class_names", "settings", "none", "results.json", "results.md", *PLOTS)


class Split:
    """RUN_DIR/data: the cached source and its split; `id` is what later stages record."""

    def __init__(self, folder, config, data_dir):
        self.folder, self.config, self.data_dir = folder, config, data_dir
        self.id = split_id(config)
        self.num_classes, self.class_names = config["num_classes"], config["class_names"]
        self.image_shape = tuple(config["image_shape"])

    def commit(self):  # a split made now: into RUN_DIR/data, once its stage has begun
        commit_split(self.folder, self.data_dir)
        self.folder = self.data_dir

    def arrays(self):
        return load_split(self.folder)


class Finished:
    """A finished stage: its config.json, and its files, each checked when it is read."""

    def __init__(self, folder, kind, config):
        self.dir, self.kind, self.config, self.script = folder, kind, config, SCRIPTS[kind]
        self.what_of = {"pseudo": "pseudo-labels"}.get(kind, kind)  # for "made from <what_of> run <id>"
        self.run_id, self.files = config["run_id"], config.get("files", {})
        self.inputs = config.get("identity", {}).get("inputs", {})
        self.model_file = config.get("model_file", "model.keras")
        self.model_path = os.path.join(folder, self.model_file)

    def __getitem__(self, key):
        return self.config[key]

    def path(self, name):
        """`name` in the stage folder, checked to be the file the stage wrote."""
        path = os.path.join(self.dir, name)
        require(os.path.isfile(path), f"{path} is missing: run {self.script} first (or check --run_dir)")
        require(name not in self.files or unchanged(path, self.files[name]),
                f"{path} is not the file {self.script} wrote (its content differs from what its config.json "
                f"records); rerun {self.script} --retrain=True")
        return path

    @property
    def model_sha256(self):
        self.path(self.model_file)
        return self.files[self.model_file]["sha256"]

    def load_model(self):
        """The stage's model, checked before and after loading (never one replaced meanwhile)."""
        model = load_model(self.path(self.model_file), self.script)
        require(unchanged(self.model_path, self.files[self.model_file]),
                f"{self.model_path} changed while it was loaded; is {self.script} running on {self.dir}? Rerun when "
                "it is done")
        return model

    def npy(self, name, mmap=False):
        return load_npy(self.path(name), mmap=mmap)

    def json(self, name):
        return read_json(self.path(name), f"rerun {self.script}")


def finished_config(path, script, what):
    """The config.json at `path` of a finished stage (or split) that `script` makes."""
    require(os.path.isfile(path), f"{path} not found: run {script} first (or check --run_dir)")
    config = read_json(path, f"rerun {script}")
    require(config.get("complete") is True, f"{path} belongs to an unfinished {what}; run {script} again")
    return config


def job_process():
    """(this process's index, processes) in a multi-process job (KERAS_DISTRIBUTION_*;
    docs/GPU.md#several-hosts), (0, 1) outside one."""
    try:
        count = int(os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES") or 1)
        index = int(os.environ.get("KERAS_DISTRIBUTION_PROCESS_ID") or 0)
    except ValueError:
        raise UserError("KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID must be integers") from None
    require(count >= 1 and 0 <= index < count, f"KERAS_DISTRIBUTION_PROCESS_ID={index} with "
            f"KERAS_DISTRIBUTION_NUM_PROCESSES={count}: expected an index in 0..{count - 1}")
    return index, count


class RunDir:
    """RUN_DIR: the folder every stage reads from and writes to. In a multi-process job
    only process 0 writes it: the others train in a private copy (`_follow`)."""

    def __init__(self, folder):
        self.dir = folder

    def _follow(self, folder):
        """Process k > 0 of a multi-process job makes process 0's decisions in a private folder
        (NOISY_PROCESS_DIR, or a temporary one): links to RUN_DIR's entries, a copy of `folder`."""
        index, count = job_process()
        if index == 0:
            return
        shadow = os.environ.get("NOISY_PROCESS_DIR") or tempfile.mkdtemp(prefix=f"noisy-process-{index}-")
        if not os.environ.get("NOISY_PROCESS_DIR"):
            atexit.register(shutil.rmtree, shadow, True)
        os.makedirs(shadow, exist_ok=True)
        require(not os.listdir(shadow), f"NOISY_PROCESS_DIR={shadow} is not empty: name a new folder")
        for name in os.listdir(self.dir) if os.path.isdir(self.dir) else ():
            source = os.path.join(os.path.abspath(self.dir), name)
            if name == folder and os.path.isdir(source):
                shutil.copytree(source, os.path.join(shadow, name), symlinks=True)
            elif not name.startswith(".lock"):
                os.symlink(source, os.path.join(shadow, name))
        print(f"process {index} of {count}: process 0 writes {self.dir}; this one trains in {shadow}", flush=True)
        self.dir = shadow

    def stage(self, kind, settings, retrain=False, folder=None, shard=None):
        """The stage `kind` in RUN_DIR/`folder` (its kind's name by default), locked for this
        process; `shard`: a run that labels that slice only, locked for it alone."""
        folder = folder or kind
        if kind == "pseudo" and job_process()[0]:
            print(f"process {job_process()[0]}: labeling is process 0's (one device), nothing to do here")
            raise SystemExit(0)
        if kind != "pseudo":
            self._follow(folder)
        path = os.path.join(self.dir, folder)
        require(kind != "student" or folder and os.sep not in folder and folder not in RESERVED
                and not os.path.isfile(path), f"--student={folder!r}: expected a new folder name for the student, "
                f"not a file there nor one of {', '.join(RESERVED[:4] + RESERVED[6:])}")
        require(not os.path.islink(path), f"{path} is a link to {os.path.realpath(path)}, a stage of another run "
                f"folder: a {WHAT[kind]} is made only in a folder of its own; use another --run_dir")
        if kind != "teacher":
            self._require_split()  # before the lock: a mistyped --run_dir is not made
        made = self._record(folder).get("stage")
        require(made in (None, kind), f"{path} holds a {made} stage, not a {WHAT[kind]}: it is not replaced by one; "
                "use another --run_dir")
        # The lock beside the stage folder, which Stage.begin makes: a stage refused before it began leaves none.
        lock(os.path.join(self.dir, f".lock-{folder}" + ("" if shard is None else f"-{shard:04d}")),
             path if shard is None else f"{path} shard {shard}")
        return Stage(kind, path, settings, retrain, shard_run=shard is not None)

    # ------------------------------------------------------------------ inputs
    def split(self, source, num_labeled, num_val, seed, stage):
        """The teacher's split of `source`: RUN_DIR/data, or made now and moved in when `stage` begins."""
        data_dir = os.path.join(self.dir, "data")
        config, folder = prepare_data(source, data_dir, num_labeled, num_val, seed)
        split = Split(folder, config, data_dir)
        if folder != data_dir:
            stage.pending.append(split)
        return split

    def _require_split(self):
        path = os.path.join(self.dir, "data", "config.json")
        require(os.path.isfile(path), f"{path} not found: run train_teacher.py first (or check --run_dir)")
        return path

    def data(self):
        """RUN_DIR/data as the teacher left it: complete, every file unchanged."""
        data_dir = os.path.join(self.dir, "data")
        config = finished_config(os.path.join(data_dir, "config.json"), "train_teacher.py", "split")
        records = config.get("files", {})
        changed = [name for name in DATA_FILES if not unchanged(os.path.join(data_dir, name), records.get(name))]
        require(not changed, f"{data_dir}: {', '.join(changed)} changed since train_teacher.py wrote it; run "
                "train_teacher.py again with the same settings to make the split again from its source")
        return Split(data_dir, config, data_dir)

    def _record(self, folder, strict=False):
        """RUN_DIR/folder/config.json unchecked ({} where none, or damaged unless `strict`)."""
        path = os.path.join(self.dir, folder, "config.json")
        try:
            return read_json(path, f"delete {os.path.dirname(path)} or make it again with --retrain=True")
        except UserError:
            if strict and os.path.isfile(path):
                raise
            return {}

    def finished(self, folder, kind):
        """RUN_DIR/`folder` as a finished stage of `kind`, every file it records unchanged."""
        script, path = SCRIPTS[kind], os.path.join(self.dir, folder, "config.json")
        config = finished_config(path, script, script)
        require(config.get("stage", kind) == kind, f"{os.path.dirname(path)} holds a {config.get('stage')} stage, not "
                f"a {WHAT[kind]}; check --run_dir" + (" and --students" if kind == "student" else ""))
        stage = Finished(os.path.dirname(path), kind, config)
        for name in stage.files:
            stage.path(name)
        return stage

    def finished_stage(self, folder, split=None):
        """RUN_DIR/`folder` as the finished stage of whatever kind it records, of this split."""
        stage = self.finished(folder, self._record(folder).get("stage") or "teacher")
        self._same_split(stage, split or self.data())
        return stage

    def _same_split(self, stage, split):
        require(stage.inputs.get("split") in (None, split.id), f"{stage.dir} was made from another split than "
                f"{self.dir}/data holds; rerun {stage.script} --retrain=True in this run folder")

    @staticmethod
    def _made_from(stage, key, source):
        """`stage` recorded `source`'s run id as its input `key`: else it was made from another."""
        recorded = stage.config.get(key, {}).get("run_id")
        name = os.path.basename(stage.dir)
        require(recorded == source.run_id,
                f"{stage.dir} was made from {source.what_of} run {recorded}, but {source.dir} holds run "
                f"{source.run_id}; rerun {stage.script}" + (f" --student={name}" if stage.kind == "student"
                                                            and name != "student" else "") + " --retrain=True")

    def teacher(self, split=None):
        """The finished teacher (or a student become a second round's teacher) of this split."""
        teacher = self.finished("teacher", "student" if self._record("teacher").get("stage") == "student" else "teacher")
        teacher.what_of = "teacher"
        self._same_split(teacher, split or self.data())
        return teacher

    def pseudo(self, teacher, split=None, pool=True):
        """The finished pseudo-labels of `teacher` on this split; with `pool`, their pool
        (unchanged), rows into it and targets that are probabilities."""
        pseudo = self.finished("pseudo", "pseudo")
        self._same_split(pseudo, split or self.data())
        self._made_from(pseudo, "teacher", teacher)
        if pool:
            file = os.path.join(self.dir, pseudo["pool_file"])  # relative to RUN_DIR, or absolute
            record = pseudo.config.get("pool_record") or {"sha256": pseudo.inputs.get("pool", {}).get("sha256")}
            require(unchanged(file, record), f"{file} changed since pseudo_label.py labeled it (its content differs "
                    f"from what {pseudo.dir}/config.json records); rerun pseudo_label.py --retrain=True")
            pseudo.pool = NpyRows(file)
            rows, targets = pseudo.npy("indices.npy"), pseudo.npy("targets.npy")
            require(rows.ndim == 1 and rows.dtype.kind in "iu" and len(rows) == len(targets) and targets.ndim == 2
                    and (len(rows) == 0 or 0 <= rows.min() and rows.max() < len(pseudo.pool)),
                    f"{pseudo.dir}: indices.npy and targets.npy do not match each other or the pool; rerun "
                    "pseudo_label.py --retrain=True")
            require(np.isfinite(targets).all() and (targets >= 0).all()
                    and np.allclose(targets.sum(axis=1), 1, atol=1e-3), f"{pseudo.dir}/targets.npy holds rows that "
                    "are not probabilities (NaN, negative, or not summing to 1); rerun pseudo_label.py --retrain=True")
            pseudo.rows, pseudo.targets = rows, targets
        return pseudo

    def lock_evaluation(self):
        """One evaluate.py at a time per run folder; in process 0 of a multi-process job only."""
        self._require_split()
        if job_process()[0]:
            print(f"process {job_process()[0]}: evaluation is process 0's, nothing to do here")
            raise SystemExit(0)
        lock(os.path.join(self.dir, ".lock-evaluate"), self.dir)

    def students(self, names, teacher, split=None):
        """(students, pseudo): the finished students `names` ('all', 'none', or a comma-separated
        list), each made from `teacher` and from the pseudo-labels RUN_DIR/pseudo holds."""
        if names == "none":
            return [], None
        if names == "all":
            records = {f: self._record(f, strict=True) for f in os.listdir(self.dir)
                       if f not in RESERVED and os.path.isdir(os.path.join(self.dir, f))}
            chosen = sorted(f for f, r in records.items() if r.get("complete") is True and r.get("stage") == "student")
        else:
            chosen = [name.strip() for name in names.split(",") if name.strip()]
            require(chosen and len(set(chosen)) == len(chosen) and not any(os.sep in n or n in RESERVED for n in chosen),
                    f"--students={names!r}: expected 'all', 'none' or a comma-separated list of distinct student "
                    f"folder names in {self.dir}")
        found = [self.finished(name, "student") for name in chosen]
        for student in found:
            self._made_from(student, "teacher", teacher)
        pseudo = self.pseudo(teacher, split, pool=False) if found else None
        for student in found:
            self._made_from(student, "pseudo", pseudo)
        return found, pseudo

    def pool(self, unlabeled, split, cinic_per_class, seed):
        """The unlabeled pool (noisy/unlabeled.py), its image file hashed only where no record
        of it (the split's, the last labeling's) still fits."""
        pool = unlabeled_pool(unlabeled, split, cinic_per_class, seed, self.dir)
        last = self._record("pseudo")
        known = split.config["files"]["train_images.npy"] if pool.source == "split" else \
            last.get("pool_record") if os.path.abspath(os.path.join(self.dir, last.get("pool_file", ""))) == pool.file \
            else None
        pool.record = file_record(pool.file, known)
        pool.identity = dict(pool.identity, sha256=pool.record["sha256"])
        return pool

    def relative(self, path):
        return relative_to_run(path, self.dir)
