"""The run folder: every stage's inputs handed over already checked, and every stage
begun, resumed, refused or finished by one set of rules (noisy/stages.py).

    run = RunDir("runs/demo")
    stage = run.stage("student", settings, retrain=False)   # the lock: one process per stage
    teacher = run.teacher()                                 # finished, its files as written, this split's
    pseudo = run.pseudo(teacher)                            # labeled by that teacher, targets probabilities
    stage.begin(split=..., teacher=teacher.run_id, ...)     # nothing to do / refused / resumed / afresh
    ...                                                     # the method
    stage.finish(record, model=model)                       # outputs moved in, config.json last

Each check below is written once, with one form of message, and raises a one-line
`UserError`; a script body never needs to repeat one. Nothing is written before every
check has passed: a split made anew waits beside RUN_DIR/data until its stage begins, a
stage's outputs wait in its staging folder until it finishes.
"""
import atexit
import os
import shutil
import tempfile

import numpy as np

from noisy import stages
from noisy.data import DATA_FILES, commit_split, load_split, prepare_data, split_id
from noisy.errors import UserError, require
from noisy.files import NpyRows, load_model, load_npy, read_json, relative_to_run, save_json, save_npy
from noisy.locks import lock
from noisy.plots import PLOTS
from noisy.verify import changed_files, file_sha256, verify

SCRIPTS = {"teacher": "train_teacher.py", "pseudo": "pseudo_label.py", "student": "train_student.py"}
WHAT = {"teacher": "teacher", "pseudo": "set of pseudo-labels", "student": "student"}
# Folder names a student may not take: the other stages', and the keys of results.json.
RESERVED = ("data", "teacher", "pseudo", "pool", ".", "..", "students", "test_images", "corruption_images",
            "class_names", "settings", "none")
# The files evaluate.py writes into RUN_DIR: no student folder takes one of their names.
EVALUATION_FILES = ("results.json", "results.md", *PLOTS)


class Split:
    """RUN_DIR/data: the cached source and its labeled / validation / unlabeled split.
    `id` is what later stages record; `arrays()` the files (images read on demand)."""

    def __init__(self, folder, config, data_dir):
        self.folder, self.config, self.data_dir = folder, config, data_dir
        self.id = split_id(folder, config)

    def commit(self):  # a split made now: into RUN_DIR/data, once its stage has begun
        commit_split(self.folder, self.data_dir)
        self.folder = self.data_dir

    def arrays(self):
        return load_split(self.folder)

    @property
    def num_classes(self):
        return self.config["num_classes"]

    @property
    def class_names(self):
        return self.config["class_names"]

    @property
    def image_shape(self):
        return tuple(self.config["image_shape"])


class Finished:
    """A finished stage: its config.json, and its files, each checked against the sha256
    recorded for it whenever it is read."""

    def __init__(self, folder, kind, config):
        self.dir, self.kind, self.config, self.script = folder, kind, config, SCRIPTS[kind]
        self.what_of = {"pseudo": "pseudo-labels"}.get(kind, kind)  # for "made from <what_of> run <id>"
        self.run_id = config["run_id"]
        self.inputs = config.get("identity", {}).get("inputs", {})

    def __getitem__(self, key):
        return self.config[key]

    def path(self, name):
        """`name` in the stage folder, verified to be the file the stage wrote."""
        path = os.path.join(self.dir, name)
        verify(path, stages.recorded_files(self.config).get(name), self.script)
        return path

    @property
    def model_path(self):
        return os.path.join(self.dir, self.config.get("model_file", "model.keras"))

    @property
    def model_sha256(self):
        return verify(self.model_path, self.config.get("model_sha256"), self.script)

    def load_model(self):
        """The stage's model, verified before and after loading: a model replaced meanwhile
        is refused, never scored or labeled with."""
        sha = self.model_sha256
        model = load_model(self.model_path, self.script)
        require(file_sha256(self.model_path) == sha, f"{self.model_path} changed while it was loaded; "
                f"is {self.script} running on {self.dir}? Rerun when it is done")
        return model

    def npy(self, name, mmap=False):
        return load_npy(self.path(name), mmap=mmap)

    def json(self, name):
        return read_json(self.path(name), f"rerun {self.script}")


class Pool:
    """The unlabeled images to label: an image file (uint8, n x h x w x 3), the rows of it
    to label, what identifies it (with its file's sha256) and, where known, the true
    labels, for reporting how many pseudo-labels are right (never for training)."""

    def __init__(self, file, rows, identity, hidden_labels=None, labels_from=None):
        self.file, self.rows, self.identity = os.path.abspath(file), np.asarray(rows), identity
        self.hidden_labels, self.labels_from = hidden_labels, labels_from


class Stage:
    """One stage being made: `begin` decides, `path` and `save` stage its outputs,
    `finish` moves them in and writes config.json last."""

    def __init__(self, kind, folder, settings, retrain, shard_run=False):
        self.kind, self.dir, self.settings, self.retrain = kind, folder, settings, retrain
        self.shard_run = shard_run
        self.what, self.identity, self.pending, self.outputs = WHAT[kind], None, [], []

    def check(self, training=True, **inputs):
        """Decide from the settings and `inputs` (what identifies each input), touching
        nothing: a finished stage with the same identity exits 0 ("nothing to do"); one
        made otherwise, or checkpoints made otherwise, are refused naming each difference;
        checkpoints made the same way (for a `training` stage also under the same backend
        and library versions) resume (returns True); else it will start afresh. A run that
        labels one shard only records the identity (it never touches the stage)."""
        inputs = {k: v.id if isinstance(v, Split) else v for k, v in inputs.items()}
        self.identity = stages.identity(self.settings, inputs, stages.STAGE_RUNTIME.get(self.kind, ()))
        self.training = training
        # The environment loads Keras: only where checkpoints may resume, so that a finished
        # or refused stage answers before TensorFlow loads.
        env = stages.environment() if training and stages.has_checkpoints(self.dir) else None
        if self.shard_run:
            return False
        try:
            return stages.check_stage(self.dir, self.what, self.identity, self.retrain, env)
        except SystemExit as done:  # nothing to do: a split made anew is the one it was made from
            if done.code == 0:
                self._commit()
            raise

    def begin(self, training=True, **inputs):
        """`check`, then (every check passed) move inputs made for this stage (a new split)
        into place and prepare its staging folder: the stage resumes (returns True) or
        starts afresh. Called without inputs, it takes those (and `training`) of the last
        `check`."""
        if inputs or self.identity is None:
            self.check(training, **inputs)
        resumes = stages.begin_stage(self.dir, self.what, self.identity, self.retrain,
                                     stages.environment() if self.training else None)
        self._commit()
        return resumes

    def _commit(self):
        for split in self.pending:
            split.commit()

    def path(self, name):
        """Where this stage writes its output `name` until it finishes."""
        return stages.staged_path(self.dir, name)

    def save(self, name, value):
        """Stage an output: an array as .npy, a dict as .json."""
        (save_npy if isinstance(value, np.ndarray) else save_json)(self.path(name), value)
        self.outputs.append(name)

    def finish(self, record, model=None, model_file="model.keras"):
        """Write the model (if any), move every staged output into place, then config.json:
        `record` (what later stages and readers need) with the settings and identity."""
        config = dict(self.settings, **record, stage=self.kind)
        return stages.finish_stage(self.dir, config, self.identity, model, model_file,
                                   files=self.outputs)


def job_process():
    """(this process's index, processes) in a multi-process job (KERAS_DISTRIBUTION_*, read
    before Keras loads; docs/GPU.md#several-hosts), (0, 1) outside one."""
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
        require(folder.strip(), f"--run_dir={folder!r} is empty: name the run folder (say --run_dir=runs/default)")
        self.dir = folder

    def _follow(self, folder):
        """Process k > 0 of a multi-process job trains the same model as process 0 (every
        step is a collective one) and makes the same decisions, from a private folder: a
        link to each entry of RUN_DIR but the stage `folder`, which is copied (so that a
        finished stage, its checkpoints and a resume are the same there); what it writes
        stays there, NOISY_PROCESS_DIR or a temporary folder removed at exit. Process 0
        waits to write until every process has made its copy (noisy.devices.join_job)."""
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

    def __str__(self):
        return self.dir

    def stage(self, kind, settings, retrain=False, folder=None, shard=None):
        """The stage `kind` ('teacher', 'pseudo', 'student') in RUN_DIR/`folder` (its kind's
        name by default), locked for this process; `shard` (0, 1, ...): a run that labels
        that slice only, locked for it alone, so that the slices' runs go side by side."""
        folder = folder or kind
        if kind == "pseudo" and job_process()[0]:
            print(f"process {job_process()[0]}: labeling is process 0's (one device), nothing to do here")
            raise SystemExit(0)
        if kind != "pseudo":
            self._follow(folder)
        if kind == "student":
            require(folder and os.sep not in folder and folder not in RESERVED,
                    f"--student={folder!r}: expected a folder name for RUN_DIR/<student>, other than "
                    f"{', '.join(RESERVED[:4] + RESERVED[6:])}")
            require(folder not in EVALUATION_FILES and not os.path.isfile(os.path.join(self.dir, folder)),
                    f"--student={folder!r}: {self.dir}/{folder} is a file evaluate.py writes or a file already "
                    "there, not a folder for a student; choose another name")
        path = os.path.join(self.dir, folder)
        require(not os.path.islink(path), f"{path} is a link to {os.path.realpath(path)}, a stage of another run "
                f"folder: a {WHAT[kind]} is made only in a folder of its own; use another --run_dir")
        if kind != "teacher":
            self._require_split()  # before the lock: a mistyped --run_dir is not made
        made = self._kind(folder)
        require(made in (None, kind), f"{path} holds a {made} stage, not a {WHAT[kind]}: it is not replaced by one; "
                "use another --run_dir")
        if shard is None:
            lock(path, tidy=True)  # a stage refused before it began leaves no folder
        else:
            lock(os.path.join(path, "shards"), f".lock-{shard:04d}", tidy=True)
        return Stage(kind, path, settings, retrain, shard_run=shard is not None)

    # ------------------------------------------------------------------ inputs
    def split(self, source, num_labeled, num_val, seed, stage):
        """The teacher's split of `source`: RUN_DIR/data when it holds it, else made now
        beside it and moved in when `stage` begins."""
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
        """RUN_DIR/data as the teacher left it: complete, every file there."""
        data_dir = os.path.join(self.dir, "data")
        path = self._require_split()
        config = read_json(path, "rerun train_teacher.py")
        require(config.get("complete") is True, f"{path} belongs to an unfinished split; run train_teacher.py again")
        for name in DATA_FILES:
            verify(os.path.join(data_dir, name), None, "train_teacher.py")
        changed = changed_files(data_dir, config.get("files_sha256", {}))
        require(not changed, f"{data_dir}: {', '.join(changed)} changed since train_teacher.py wrote it; run "
                "train_teacher.py again with the same settings to make the split again from its source")
        return Split(data_dir, config, data_dir)

    def finished(self, folder, kind):
        """RUN_DIR/`folder` as a finished stage of `kind`: its config.json complete and of
        that kind, every file it records as written."""
        stage_dir = os.path.join(self.dir, folder)
        script = SCRIPTS[kind]
        path = os.path.join(stage_dir, "config.json")
        require(os.path.isfile(path), f"{path} not found: run {script} first (or check --run_dir)")
        config = read_json(path, f"rerun {script}")
        require(config.get("complete") is True, f"{path} belongs to an unfinished {script}; run {script} again to "
                "finish it")
        require(config.get("stage", kind) == kind, f"{stage_dir} holds a {config.get('stage')} stage, not a "
                f"{WHAT[kind]}; check --run_dir" + (" and --students" if kind == "student" else ""))
        stage = Finished(stage_dir, kind, config)
        for name in stages.recorded_files(config):
            stage.path(name)
        return stage

    def finished_stage(self, folder, split=None):
        """RUN_DIR/`folder` as the finished stage of whatever kind it records, of this split."""
        stage = self.finished(folder, self._kind(folder) or "teacher")
        self._same_split(stage, split or self.data())
        return stage

    def _same_split(self, stage, split):
        require(stage.inputs.get("split") in (None, split.id),
                f"{stage.dir} was made from another split than {self.dir}/data holds; rerun {stage.script} "
                "--retrain=True in this run folder")

    @staticmethod
    def _made_from(stage, key, source):
        """`stage` recorded `source`'s run id as its input `key`: else it was made from another."""
        recorded = stage.config.get(key, {}).get("run_id")
        require(recorded == source.run_id,
                f"{stage.dir} was made from {source.what_of} run {recorded}, but {source.dir} holds run "
                f"{source.run_id}; rerun {stage.script}" + (f" --student={os.path.basename(stage.dir)}"
                                                            if stage.kind == "student"
                                                            and os.path.basename(stage.dir) != "student" else "")
                + " --retrain=True")

    def teacher(self, split=None):
        """The finished teacher (RUN_DIR/teacher: a teacher, or a student become the
        teacher of a second round), made from this split."""
        teacher = self.finished("teacher", "student" if self._kind("teacher") == "student" else "teacher")
        teacher.what_of = "teacher"
        self._same_split(teacher, split or self.data())
        return teacher

    def _record(self, folder, strict=False):
        """RUN_DIR/folder/config.json as it is, unchecked ({} where there is none, or where
        it is damaged unless `strict`)."""
        path = os.path.join(self.dir, folder, "config.json")
        try:
            return read_json(path, f"delete {os.path.dirname(path)} or make it again with --retrain=True")
        except UserError:
            if strict and os.path.isfile(path):
                raise
            return {}

    def _kind(self, folder):
        """The kind a stage folder records, without checking it (None: none)."""
        return self._record(folder).get("stage")

    def is_finished(self, folder, kind=None, strict=False):
        """Whether RUN_DIR/folder's config.json says finished (and of `kind`), unchecked
        (`finished` checks it before anything is read from it); with `strict` a damaged
        config.json is refused rather than taken for no stage."""
        record = self._record(folder, strict)  # read once
        return record.get("complete") is True and kind in (None, record.get("stage"))

    def pseudo(self, teacher, split=None, pool=True):
        """The finished pseudo-labels of `teacher` on this split, their files as written,
        indices into the pool and targets that are probabilities; with `pool`, the pool
        image file unchanged since labeling (returned as `pseudo.pool`)."""
        pseudo = self.finished("pseudo", "pseudo")
        self._same_split(pseudo, split or self.data())
        self._made_from(pseudo, "teacher", teacher)
        if pool:
            file = os.path.join(self.dir, pseudo["pool_file"])  # relative to RUN_DIR, or absolute
            recorded = pseudo.inputs.get("pool", {}).get("sha256")
            require(verify(file, None, "pseudo_label.py") == recorded,  # a cached folder's images too (#23)
                    f"{file} changed since pseudo_label.py labeled it (its sha256 differs from the one "
                    f"{pseudo.dir}/config.json records); rerun pseudo_label.py --retrain=True")
            pseudo.pool = NpyRows(file)
            rows, targets = pseudo.npy("indices.npy"), pseudo.npy("targets.npy")
            require(rows.ndim == 1 and rows.dtype.kind in "iu" and len(rows) == len(targets)
                    and targets.ndim == 2 and (len(rows) == 0 or 0 <= rows.min() and rows.max() < len(pseudo.pool)),
                    f"{pseudo.dir}: indices.npy and targets.npy do not match each other or the pool; rerun "
                    "pseudo_label.py --retrain=True")
            require(np.isfinite(targets).all() and (targets >= 0).all() and np.allclose(targets.sum(axis=1), 1,
                                                                                         atol=1e-3),
                    f"{pseudo.dir}/targets.npy holds rows that are not probabilities (NaN, negative, or not summing "
                    "to 1); rerun pseudo_label.py --retrain=True")
            pseudo.rows, pseudo.targets = rows, targets
        return pseudo

    def lock_evaluation(self):
        """One evaluate.py at a time per run folder (one that holds a split); in process 0
        of a multi-process job only."""
        self._require_split()
        if job_process()[0]:
            print(f"process {job_process()[0]}: evaluation is process 0's, nothing to do here")
            raise SystemExit(0)
        lock(self.dir, ".lock-evaluate")

    def students(self, names, teacher, split=None):
        """(students, pseudo): the finished students `names` ('all' = every folder whose
        config.json says 'student', 'none', or a comma-separated list), each made from
        `teacher` and from the pseudo-labels RUN_DIR/pseudo holds (returned too; None
        without students)."""
        if names == "none":
            return [], None
        if names == "all":
            chosen = sorted(f for f in os.listdir(self.dir) if f not in RESERVED
                            and os.path.isdir(os.path.join(self.dir, f))
                            and self.is_finished(f, "student", strict=True))
        else:
            chosen = [name.strip() for name in names.split(",") if name.strip()]
            require(chosen and len(set(chosen)) == len(chosen)
                    and not any(os.sep in name or name in RESERVED for name in chosen),
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
        """The unlabeled pool `unlabeled` names ('auto', 'split', 'cinic10', a folder of
        images or an .npy), as a `Pool`; a folder's images cached once in RUN_DIR/pool."""
        from noisy.quiet import import_keras
        import_keras()  # noisy.cinic loads Keras (get_file): without TensorFlow's start-up notices
        from noisy.cinic import cinic_pool, is_cinic_folder
        from noisy.images import cache_image_folder
        cache, size = os.path.join(self.dir, "pool"), split.image_shape[0]
        left = split.config["num_unlabeled"]
        source = ("split" if left else "cinic10") if unlabeled == "auto" else unlabeled
        data = split.config.get("source", "")
        if os.path.isdir(source) and os.path.isdir(data):  # a folder pool is read recursively
            pool_dir, test = os.path.realpath(source), os.path.realpath(os.path.join(data, "test"))
            require(os.path.commonpath([pool_dir, test]) not in (pool_dir, test),
                    f"--unlabeled={unlabeled!r} holds or lies in the test folder of the teacher's --data ({test}): "
                    "only evaluate.py reads the test images; label another folder")
        if source == "split":
            require(left > 0, f"--unlabeled=split: {self.dir}/data has no unlabeled images (train_teacher.py's "
                    "--num_labeled and --num_val took the whole training set); use --unlabeled=cinic10 or a folder")
            arrays = split.arrays()
            rows = arrays["unlabeled"]
            pool = Pool(os.path.join(split.folder, "train_images.npy"), rows, {"split": split.id},
                        arrays["train_labels"][rows], "the split's hidden labels")
        elif source == "cinic10" or (os.path.isdir(source) and is_cinic_folder(source)):
            # CINIC-10's ImageNet images only: its other files are CIFAR-10's, test images included.
            file, count, key, folders = cinic_pool(source, cinic_per_class, seed, cache, size)
            names = split.class_names
            hidden = np.array([names.index(f) for f in folders]) if set(folders) <= set(names) else None
            pool = Pool(file, np.arange(count), {"cinic10": key}, hidden, "CINIC-10's class folders")
        elif os.path.isdir(source):
            file, count, key = cache_image_folder(source, cache, size)
            pool = Pool(file, np.arange(count), {"folder": key})
        elif source.endswith(".npy") and os.path.isfile(source):
            pool = Pool(source, np.arange(len(NpyRows(source))), {"npy": os.path.abspath(source)})
        else:
            raise UserError(f"--unlabeled={unlabeled!r}: expected 'auto', 'split', 'cinic10', an existing folder "
                            "or an existing .npy file")
        images = NpyRows(pool.file)  # read by rows on demand: a pool may exceed RAM
        require(images.dtype == np.uint8 and images.shape[1:] == split.image_shape,
                f"{pool.file}: images of shape {images.shape[1:]} dtype {images.dtype}; expected uint8 "
                f"{split.image_shape}")
        require(len(pool.rows) > 0, f"the unlabeled pool is empty (--unlabeled={source!r}, run_dir {self.dir})")
        require(pool.rows.max() < len(images) and (source == "split" or len(pool.rows) == len(images)),
                f"{pool.file} holds {len(images)} images, its record {len(pool.rows)}: the cache is damaged; delete "
                f"{os.path.dirname(pool.file)} to make it again")
        pool.images, pool.source = images, source
        pool.identity = dict(pool.identity, sha256=file_sha256(pool.file))  # what the student checks (#23)
        return pool

    def relative(self, path):
        return relative_to_run(path, self.dir)
