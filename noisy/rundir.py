"""The run folder: each stage's inputs handed over checked (finished, unchanged since
written, of the right lineage), and each stage locked, then begun and finished by
noisy/stages.py. Every check raises a one-line UserError before anything is written.

    run = RunDir("runs/demo")
    stage = run.stage("student", settings)          # locked: one process per stage
    teacher = run.teacher()                         # finished, unchanged, of this split
    stage.begin(split=..., teacher=teacher.run_id)  # nothing to do / refused / resumed / afresh
"""
import os

from noisy.arrays import NpyRows, load_npy
from noisy.backend import import_keras
from noisy.data import DATA_FILES, commit_split, load_split, prepare_data, split_id
from noisy.errors import UserError, require
from noisy.files import file_record, h5_notices_hidden, read_json, unchanged
from noisy.job import only_process_0, process_run_dir
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
    """A finished stage: its config.json, every file it records checked unchanged."""

    def __init__(self, folder, kind, config):
        self.dir, self.kind, self.config, self.script = folder, kind, config, SCRIPTS[kind]
        self.run_id, self.files = config["run_id"], config.get("files", {})
        self.inputs = config.get("identity", {}).get("inputs", {})
        self.model_file = config.get("model_file", "model.keras")
        self.model_path = self.path(self.model_file)
        for name, record in self.files.items():
            path = self.path(name)
            require(os.path.isfile(path), f"{path} is missing: run {self.script} first (or check --run_dir)")
            require(unchanged(path, record), f"{path} is not the file {self.script} wrote (its content differs from "
                    f"what its config.json records); rerun {self.script} --retrain=True")

    def __getitem__(self, key):
        return self.config[key]

    def path(self, name):
        return os.path.join(self.dir, name)

    @property
    def model_sha256(self):
        return self.files[self.model_file]["sha256"]

    def load_model(self):
        """The stage's model (a damaged file as one line), checked again once loaded: never one replaced meanwhile."""
        keras = import_keras()  # here, without TensorFlow's start-up notices
        try:
            with h5_notices_hidden():
                model = keras.models.load_model(self.model_path)
        except Exception as e:  # zip, h5 and deserialisation errors come in many types
            raise UserError(f"{self.model_path} cannot be loaded as a Keras model ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''}); rerun {self.script}") from None
        require(unchanged(self.model_path, self.files.get(self.model_file)), f"{self.model_path} changed while it "
                f"was loaded; is {self.script} running on {self.dir}? Rerun when it is done")
        return model

    def json(self, name):
        return read_json(self.path(name), f"rerun {self.script}")


def finished_config(path, script, what):
    """The config.json at `path` of a finished stage (or split) that `script` makes."""
    require(os.path.isfile(path), f"{path} not found: run {script} first (or check --run_dir)")
    config = read_json(path, f"rerun {script}")
    require(config.get("complete") is True, f"{path} belongs to an unfinished {what}; run {script} again")
    return config


class RunDir:
    """RUN_DIR: the folder every stage reads from and writes to (in a multi-process job
    process 0's; the others write a private copy: noisy/job.py)."""

    def __init__(self, folder):
        self.dir = folder

    def stage(self, kind, settings, retrain=False, folder=None, shard=None):
        """The stage `kind` in RUN_DIR/`folder` (its kind's name by default), locked for this
        process (RUN_DIR/.lock-<folder>); `shard`: a run that labels that slice only, locked
        for it alone. The stage folder is made when the stage begins."""
        folder = folder or kind
        if kind == "pseudo":
            only_process_0("labeling is process 0's (one device)")
        else:
            self.dir = process_run_dir(self.dir, folder)
        path = os.path.join(self.dir, folder)
        require(kind != "student" or folder and os.sep not in folder and folder not in RESERVED
                and not os.path.isfile(path), f"--student={folder!r}: expected a new folder name for the student, "
                f"not a file there nor one of {', '.join(RESERVED[:4] + RESERVED[6:])}")
        require(not os.path.islink(path), f"{path} is a link to {os.path.realpath(path)}, a stage of another run "
                f"folder: a {WHAT[kind]} is made only in a folder of its own; use another --run_dir")
        if kind != "teacher":
            self.data()  # before the lock: a mistyped --run_dir is not made
        lock(os.path.join(self.dir, f".lock-{folder}" + ("" if shard is None else f"-{shard:04d}")),
             path if shard is None else f"{path} shard {shard}")
        return Stage(kind, path, settings, retrain, shard_run=shard is not None)

    def lock_evaluation(self):
        """One evaluate.py at a time per run folder (RUN_DIR/.lock-evaluate), in process 0 of a job."""
        self.data()  # before the lock: a mistyped --run_dir is not made
        only_process_0("evaluation is process 0's")
        lock(os.path.join(self.dir, ".lock-evaluate"), self.dir)

    # ------------------------------------------------------------------ inputs
    def split(self, source, num_labeled, num_val, seed, stage):
        """The teacher's split of `source`: RUN_DIR/data, or made now and moved in when `stage` begins."""
        data_dir = os.path.join(self.dir, "data")
        config, folder = prepare_data(source, data_dir, num_labeled, num_val, seed)
        split = Split(folder, config, data_dir)
        if folder != data_dir:
            stage.pending.append(split)
        return split

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
        path = os.path.join(self.dir, folder, "config.json")
        return Finished(os.path.dirname(path), kind, finished_config(path, SCRIPTS[kind], SCRIPTS[kind]))

    def _of_split(self, stage, split=None):
        """`stage`, made from `split` (by default RUN_DIR/data's): else refused."""
        require(stage.inputs.get("split") == (split or self.data()).id, f"{stage.dir} was made from another split "
                f"than {self.dir}/data holds; rerun {stage.script} --retrain=True in this run folder")
        return stage

    @staticmethod
    def _made_from(stage, key, source):
        """`stage` recorded `source`'s run id as its input `key` (teacher, pseudo): else it was made from another."""
        recorded, name = stage.config.get(key, {}).get("run_id"), os.path.basename(stage.dir)
        require(recorded == source.run_id, f"{stage.dir} was made from {'pseudo-labels' if key == 'pseudo' else key} "
                f"run {recorded}, but {source.dir} holds run {source.run_id}; rerun {stage.script}"
                + (f" --student={name}" if stage.kind == "student" and name != "student" else "") + " --retrain=True")

    def teacher(self, split=None):
        """The finished teacher (or a student become a second round's teacher) of this split."""
        kind = "student" if self._record("teacher").get("stage") == "student" else "teacher"
        return self._of_split(self.finished("teacher", kind), split)

    def pseudo(self, teacher, split=None, pool=True):
        """The finished pseudo-labels of `teacher` on this split; with `pool`, their pool image
        file (unchanged since labeled), and the rows into it and targets that were written."""
        pseudo = self._of_split(self.finished("pseudo", "pseudo"), split)
        self._made_from(pseudo, "teacher", teacher)
        if pool:
            file = os.path.join(self.dir, pseudo["pool_file"])  # relative to RUN_DIR, or absolute
            require(unchanged(file, pseudo.config.get("pool_record")), f"{file} changed since pseudo_label.py "
                    f"labeled it (its content differs from what {pseudo.dir}/config.json records); rerun "
                    "pseudo_label.py --retrain=True")
            pseudo.pool = NpyRows(file)
            pseudo.rows, pseudo.targets = (load_npy(pseudo.path(name), mmap=False)
                                           for name in ("indices.npy", "targets.npy"))
        return pseudo

    def students(self, names, teacher, split=None):
        """(students, pseudo): the finished students `names` ('all', 'none', or a comma-separated
        list), each made from `teacher` and from the pseudo-labels RUN_DIR/pseudo holds."""
        if names == "none":
            return [], None
        if names == "all":
            records = {f: self._record(f, strict=True) for f in os.listdir(self.dir) if f not in RESERVED}
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
        """`path` relative to RUN_DIR when inside it (so a run folder can move), else absolute."""
        path, run_dir = os.path.abspath(path), os.path.abspath(self.dir)
        return os.path.relpath(path, run_dir) if path.startswith(run_dir + os.sep) else path
