"""The run folder: each stage locked, and handed its inputs checked (finished, every file as
written, of the right lineage) before noisy/stages.py begins it. A check that fails raises
a one-line UserError before anything is written.

    run = RunDir("runs/demo")
    stage = run.stage("student", settings)          # locked: one process per stage
    teacher = run.teacher()                         # finished, unchanged, of this split
    stage.begin(split=..., teacher=teacher.run_id)  # nothing to do / refused / resumed / afresh
"""
import os

from noisy.arrays import NpyRows, load_npy
from noisy.data import DATA_FILES, commit_split, load_split, prepare_data, split_id
from noisy.errors import require
from noisy.files import file_record, read_json, unchanged
from noisy.job import only_process_0, process_run_dir
from noisy.locks import lock
from noisy.plots import PLOTS
from noisy.stages import SCRIPTS, WHAT, Finished, Stage, require_files
from noisy.unlabeled import unlabeled_pool

# Names a student's folder may not take: the other stages', results.json's keys, evaluate.py's files.
RESERVED = ("data", "teacher", "pseudo", "pool", ".", "..", "students", "test_images", "corruption_images",
            "class_names", "settings", "none", "results.json", "results.md", *PLOTS)


def finished_config(folder, script, what):
    """The config.json in `folder` of a finished `what` (a stage, or the split) that `script` makes."""
    path = os.path.join(folder, "config.json")
    require(os.path.isfile(path), f"{path} not found: run {script} first (or check --run_dir)")
    config = read_json(path, f"rerun {script}")
    require(config.get("complete") is True, f"{path} belongs to an unfinished {what}; run {script} again")
    return config


def made_from(stage, key, source):
    """`stage` if it recorded `source` (the split, a finished teacher or pseudo-labels) as its input `key`."""
    what = {"split": "split", "teacher": "teacher run", "pseudo": "pseudo-labels run"}[key]
    recorded, now = stage.inputs.get(key), source.id if key == "split" else source.run_id
    name = os.path.basename(stage.dir)
    require(recorded == now, f"{stage.dir} was made from {what} {recorded}, but {source.dir} holds {what} {now}; "
            f"rerun {stage.script}" + (f" --student={name}" if stage.kind == "student" and name != "student" else "")
            + " --retrain=True")
    return stage


class Split:
    """RUN_DIR/data: the cached source and its split; `id` is what later stages record."""

    def __init__(self, folder, config, data_dir):
        self.folder, self.config, self.dir, self.id = folder, config, data_dir, split_id(config)
        self.num_classes, self.class_names = config["num_classes"], config["class_names"]
        self.image_shape = tuple(config["image_shape"])

    def commit(self):
        """Move a split made now into RUN_DIR/data (once its stage's checks have passed)."""
        commit_split(self.folder, self.dir)
        self.folder = self.dir

    def arrays(self):
        return load_split(self.folder)


class RunDir:
    """RUN_DIR, the folder every stage reads from and writes to (in a multi-process job
    process 0's; the others write a private copy: noisy/job.py)."""

    def __init__(self, folder):
        self.dir = folder

    def path(self, *names):
        return os.path.join(self.dir, *names)

    def stage(self, kind, settings, retrain=False, folder=None, shard=None):
        """The stage `kind` in RUN_DIR/`folder` (its kind's name by default), locked for this
        process by RUN_DIR/.lock-<folder>, or with `shard` for that slice of labeling alone."""
        folder = folder or kind
        if kind == "pseudo":
            only_process_0("labeling is process 0's (one device)")
        else:
            self.dir = process_run_dir(self.dir, folder)
        path = self.path(folder)
        require(kind != "student" or folder and os.sep not in folder and folder not in RESERVED
                and not os.path.isfile(path), f"--student={folder!r}: expected a new folder name for the student, "
                f"not a file there nor one of {', '.join(RESERVED[:4] + RESERVED[6:])}")
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

    def split(self, source, num_labeled, num_val, seed, stage):
        """The teacher's split of `source`: RUN_DIR/data, or made now and moved in once `stage`'s checks pass."""
        config, folder = prepare_data(source, self.path("data"), num_labeled, num_val, seed)
        split = Split(folder, config, self.path("data"))
        if folder != split.dir:
            stage.pending.append(split)
        return split

    def data(self):
        """RUN_DIR/data as the teacher left it: complete, every file unchanged."""
        folder = self.path("data")
        config = finished_config(folder, "train_teacher.py", "split")
        require_files(folder, {name: config.get("files", {}).get(name) for name in DATA_FILES}, "train_teacher.py",
                      "run train_teacher.py again with the same settings to make the split again from its source")
        return Split(folder, config, folder)

    def finished(self, folder, kind):
        """RUN_DIR/`folder` as a finished stage of `kind` (a teacher may be a second round's student)."""
        config = finished_config(self.path(folder), SCRIPTS[kind], SCRIPTS[kind])
        kind = "student" if kind == "teacher" and config.get("stage") == "student" else kind
        return Finished(self.path(folder), kind, config)

    def teacher(self, split=None):
        """The finished teacher of this split."""
        return made_from(self.finished("teacher", "teacher"), "split", split or self.data())

    def pseudo(self, teacher, split=None, pool=True):
        """The finished pseudo-labels of `teacher` on this split; with `pool`, their pool image
        file (unchanged since labeled) and the rows into it and targets that were written."""
        pseudo = made_from(self.finished("pseudo", "pseudo"), "split", split or self.data())
        made_from(pseudo, "teacher", teacher)
        if pool:
            file = self.path(pseudo["pool_file"])  # relative to RUN_DIR, or absolute
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
            records = {name: self._record(name) for name in os.listdir(self.dir) if name not in RESERVED}
            chosen = sorted(name for name, r in records.items() if r.get("complete") and r.get("stage") == "student")
        else:
            chosen = [name.strip() for name in names.split(",") if name.strip()]
            require(chosen and len(set(chosen)) == len(chosen) and not any(os.sep in n or n in RESERVED for n in chosen),
                    f"--students={names!r}: expected 'all', 'none' or a comma-separated list of distinct student "
                    f"folder names in {self.dir}")
        found = [made_from(self.finished(name, "student"), "teacher", teacher) for name in chosen]
        pseudo = self.pseudo(teacher, split, pool=False) if found else None
        return [made_from(student, "pseudo", pseudo) for student in found], pseudo

    def _record(self, folder):
        """RUN_DIR/folder/config.json as it is, {} where there is none."""
        path = self.path(folder, "config.json")
        return read_json(path, f"move {os.path.dirname(path)} away to make it again") if os.path.isfile(path) else {}

    def pool(self, unlabeled, split, cinic_per_class, seed):
        """The unlabeled pool (noisy/unlabeled.py), its image file hashed only where no record
        of it (the split's, the last labeling's) still fits."""
        pool = unlabeled_pool(unlabeled, split, cinic_per_class, seed, self.dir)
        last = self._record("pseudo")
        known = split.config["files"]["train_images.npy"] if pool.source == "split" else \
            last.get("pool_record") if os.path.abspath(self.path(last.get("pool_file", ""))) == pool.file else None
        pool.record = file_record(pool.file, known)
        pool.identity = dict(pool.identity, sha256=pool.record["sha256"])
        return pool

    def relative(self, path):
        """`path` relative to RUN_DIR when inside it (so a run folder can move), else absolute."""
        path, run_dir = os.path.abspath(path), os.path.abspath(self.dir)
        return os.path.relpath(path, run_dir) if path.startswith(run_dir + os.sep) else path
