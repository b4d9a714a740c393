"""The run folder: each stage locked, and handed its inputs checked (finished, every file as
written, made from the split and stages the folder holds) before noisy/stages.py begins it.

    run = RunDir("runs/demo")
    stage = run.stage("student", settings)                       # locked: one process per stage
    stage.begin(split=run.data(), teacher=run.teacher().run_id)  # nothing to do / refused / resumed / afresh
"""
import os

from noisy.arrays import NpyRows, load_npy
from noisy.data import DATA_FILES, Split, prepare_data
from noisy.errors import UserError, require
from noisy.files import file_record, read_json, unchanged
from noisy.job import only_process_0, process_run_dir
from noisy.locks import lock
from noisy.settings import RESERVED
from noisy.stages import WHAT, Finished, Stage, finished_config, require_files
from noisy.unlabeled import unlabeled_pool

INPUTS = {"split": "split", "teacher": "teacher run", "pseudo": "pseudo-labels run"}  # as refusals name them


def made_from(stage, key, source):
    """`stage`, refused unless it recorded `source` (the split, teacher or pseudo-labels) as its input `key`."""
    recorded, now = stage.inputs.get(key), source.id if key == "split" else source.run_id
    require(recorded == now, f"{stage.dir} was made from {INPUTS[key]} {recorded}, but {source.dir} holds "
            f"{INPUTS[key]} {now}; rerun {stage.command} --retrain=True")
    return stage


class RunDir:
    """RUN_DIR, the folder every stage reads and writes (a job's process k > 0 writes a copy: noisy/job.py)."""

    def __init__(self, folder):
        self.dir = folder

    def path(self, *names):
        return os.path.join(self.dir, *names)

    def stage(self, kind, settings, retrain=False, folder=None, shard=None):
        """The stage `kind` in RUN_DIR/`folder` (its kind's name by default), locked by .lock-<folder>[-<shard>]."""
        folder = folder or kind
        if kind == "pseudo":
            only_process_0("labeling is process 0's (one device)")
        else:
            self.dir = process_run_dir(self.dir, folder)
        path = self.path(folder)
        require(not os.path.islink(path), f"{path} is a link to {os.path.realpath(path)}, a stage of another run "
                f"folder: a {WHAT[kind]} is made only in a folder of its own; use another --run_dir")
        if kind != "teacher":
            self.data()  # before the lock: a mistyped --run_dir is not made
        lock(self.path(f".lock-{folder}" + ("" if shard is None else f"-{shard:04d}")),
             path if shard is None else f"{path} shard {shard}")
        return Stage(kind, path, settings, retrain, shard_run=shard is not None)

    def lock_evaluation(self):
        """One evaluate.py at a time per run folder (RUN_DIR/.lock-evaluate), in process 0 of a job."""
        self.data()  # before the lock: a mistyped --run_dir is not made
        only_process_0("evaluation is process 0's")
        lock(self.path(".lock-evaluate"), self.dir)

    def split(self, source, num_labeled, num_val, seed):
        """The teacher's split of `source`: RUN_DIR/data, or made now and moved in when its stage begins."""
        return prepare_data(source, self.path("data"), num_labeled, num_val, seed)

    def data(self):
        """RUN_DIR/data as the teacher left it: complete, every file unchanged."""
        folder = self.path("data")
        config = finished_config(folder, "train_teacher.py", f"delete {folder} and rerun train_teacher.py")
        require_files(folder, {name: config.get("files", {}).get(name) for name in DATA_FILES}, "train_teacher.py",
                      "run train_teacher.py again with the same settings to make the split again from its source")
        return Split(folder, config, folder)

    def teacher(self, split=None):
        """The finished teacher of `split` (RUN_DIR/data's)."""
        return made_from(Finished(self.path("teacher"), "teacher"), "split", split or self.data())

    def pseudo(self, teacher, split=None, pool=True):
        """The finished pseudo-labels of `teacher` and `split`; with `pool`, their pool image file
        (unchanged since labeled), rows and targets."""
        pseudo = made_from(Finished(self.path("pseudo"), "pseudo"), "split", split or self.data())
        made_from(pseudo, "teacher", teacher)
        if pool:
            file = self.path(pseudo.config["pool_file"])  # relative to RUN_DIR, or absolute
            require(unchanged(file, pseudo.config.get("pool_record")), f"{file} changed since pseudo_label.py "
                    f"labeled it (its content differs from what {pseudo.dir}/config.json records); rerun "
                    "pseudo_label.py --retrain=True")
            pseudo.pool = NpyRows(file)
            pseudo.rows = load_npy(pseudo.path("indices.npy"), mmap=False)
            pseudo.targets = load_npy(pseudo.path("targets.npy"), mmap=False)
        return pseudo

    def students(self, names, teacher, split=None):
        """(students, pseudo): the finished students `names` ('all', 'none' or folder names, comma-separated),
        each made from `teacher` and from the pseudo-labels RUN_DIR/pseudo holds."""
        if names == "all":
            chosen = self._finished_students()
        else:  # as check_evaluation_settings checked them
            chosen = [name.strip() for name in names.split(",") if name.strip()] if names != "none" else []
            missing = [name for name in chosen if not os.path.isfile(self.path(name, "config.json"))]
            if missing:
                raise UserError(f"--students={names}: {self.path(missing[0])} holds no stage; finished students in "
                                f"{self.dir}: {', '.join(self._finished_students(strict=False)) or 'none'}")
        found = [Finished(self.path(name), "student") for name in chosen]
        pseudo = self.pseudo(teacher, split, pool=False) if found else None  # stale pseudo-labels are redone first
        return [made_from(made_from(s, "teacher", teacher), "pseudo", pseudo) for s in found], pseudo

    def _finished_students(self, strict=True):
        """The folders of RUN_DIR holding a finished student; a damaged record refused unless not `strict`."""
        records = {name: self._record(name, strict) for name in os.listdir(self.dir) if name not in RESERVED}
        return sorted(name for name, r in records.items() if r.get("complete") and r.get("stage") == "student")

    def _record(self, folder, strict=True):
        """RUN_DIR/folder/config.json as it is, {} where there is none (or, unless `strict`, it is damaged)."""
        path = self.path(folder, "config.json")
        if not os.path.isfile(path):
            return {}
        try:
            return read_json(path, f"move {os.path.dirname(path)} away, or rerun its stage with --retrain=True")
        except UserError:
            if strict:
                raise
            return {}

    def pool(self, unlabeled, split, cinic_per_class, seed):
        """The unlabeled pool (noisy/unlabeled.py), its path as recorded (relative inside RUN_DIR: the folder
        can move) and its file's record, hashed only where no record of it (the last labeling's, the split's) fits."""
        pool = unlabeled_pool(unlabeled, split, cinic_per_class, seed, self.dir)
        inside = pool.file.startswith(os.path.abspath(self.dir) + os.sep)
        pool.recorded_path = os.path.relpath(pool.file, self.dir) if inside else pool.file
        last = self._record("pseudo", strict=False)  # a damaged one is replaced by --retrain=True
        known = last.get("pool_record") if last.get("pool_file") == pool.recorded_path else \
            split.config["files"]["train_images.npy"] if pool.source == "split" else None  # the split's own record
        pool.record = file_record(pool.file, known)
        pool.identity = dict(pool.identity, sha256=pool.record["sha256"])
        return pool
