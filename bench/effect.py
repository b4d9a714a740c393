"""Does Noisy Student help, and by how much? Runs the pipeline's own four scripts for six
arms and several seeds and writes a table of test accuracy, mean ± std over seeds
(bench/table.py), with pseudo-label counts and accuracy per round.

The arms of one seed: 1 teacher without noise; 2 teacher with noise (the supervised
baseline); 3 noised student of teacher 1; 4 noised student of teacher 2 (the method);
5 student of teacher 2 without noise (the paper's ablation); 6 a second round, student 4
as the teacher. "Noise" is RandAugment, flip and crop, dropout and stochastic depth.

    python bench/effect.py --config=cpu --data=/tmp/cifar10 --seeds="(0, 1, 2)" --out=runs/effect-cpu
    python bench/effect.py --config=cpu --out=runs/effect-cpu --table_only=True   # the table so far
    python bench/effect.py --config=full --data=cifar10 --out=runs/effect-full     # CINIC-10 as the unlabeled set
    python bench/effect.py --config=cpu --seeds="(0,)" --data=/tmp/cifar10 --out=runs/effect-gpu \\
        --train_args='("--augment=device","--jit_compile=true")'   # on a GPU: noise in the train step, XLA

Configurations (CONFIGS below; chosen on validation splits, never on the test set,
docs/RESULTS.md): `cpu`, 4,000 labels and `resnet9_w16`, 143-160 min per seed on 2 CPU
cores; `full`, the article's (all labels, ResNet50, CINIC-10 as the unlabeled images);
`smoke`, tiny data and model, a check of the runner itself (minutes on a CPU, no evidence).

The stages run in four phases over all seeds (arms 2 and 4; arm 5; arms 1 and 3; arm 6),
the table rewritten after each. Every stage script runs every time and decides itself:
"nothing to do" for a stage finished with these settings and inputs, a resume for one
stopped mid-way, a refusal for one made otherwise. So a killed runner is resumed by
running the same command again. OUT/settings.json records the configuration and data;
another is refused. OUT/seed<N>/<folder>/log-<script>.txt keeps each stage's output.
"""
import json
import os
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from bench.table import EVALUATE_ARGS, collect, finished, folder, read, scores, write_table  # noqa: E402
from noisy.data import require_source  # noqa: E402
from noisy.errors import install_error_hook, require  # noqa: E402
from noisy.settings import configure, settings_block  # noqa: E402

# ------------------------------------------------------------------------------ settings
CONFIG = "cpu"            # 'cpu', 'full' or 'smoke'
DATA = "cifar10"          # labeled source: 'cifar10', a class-folder directory or an .npz
UNLABELED = ""            # '' = pseudo_label.py's default (cpu: the split's unused images; full: CINIC-10), or a folder
OUT = "runs/effect"       # folder for all runs and the table
SEEDS = (0, 1, 2)         # one full set of arms per seed
TABLE_ONLY = False        # True = write the table of OUT's runs so far (its own settings.json); train nothing
STUDENT_IMAGES = 0        # a student's budget of images seen; 0 = the configuration's
PHASES = (1, 2, 3, 4)     # 1 arms 2 and 4, 2 arm 5, 3 arms 1 and 3, 4 arm 6 (2 and 4 need 1 finished)
TRAIN_ARGS = ()           # extra '--name=value' settings for both training scripts, e.g. '("--augment=device",)'
# ------------------------------------------------------------------------------

# teacher: train_teacher.py only; train: both training scripts; student: train_student.py
# only; a student trains for student_images images seen (epochs from its data size) or
# for student_epochs epochs.
CONFIGS = {
    "cpu": dict(  # teachers of 80 epochs since issue #24 (40 before: docs/RESULTS.md)
        teacher=["--num_labeled=4000", "--num_val=2000", "--model=resnet9_w16", "--epochs=80", "--warmup_epochs=2"],
        train=["--batch_size=128", "--optimizer=sgd", "--lr=0.1", "--weight_decay=5e-4", "--schedule=cosine",
               "--workers=2", "--num_ops=2", "--magnitude=5", "--dropout=0.2", "--survival_last=0.9"],
        student=["--warmup_epochs=1", "--label_smoothing=0.1"], labeled_copies=3,
        pseudo=["--threshold=0.3", "--per_class=3000", "--soft=False"], student_images=1_500_000,
        student_epochs=None),
    "full": dict(
        teacher=["--num_labeled=0", "--num_val=5000", "--model=resnet50", "--epochs=300"],
        train=["--batch_size=64", "--optimizer=adam", "--lr=0.001", "--schedule=plateau", "--flat_epochs=250",
               "--patience=10"],
        student=[], labeled_copies=1, pseudo=["--threshold=0.75"], student_images=None, student_epochs=300),
    "smoke": dict(
        teacher=["--num_labeled=80", "--num_val=20", "--model=tiny", "--epochs=1"], train=["--batch_size=32"],
        student=[], labeled_copies=2, pseudo=["--threshold=0.0"], student_images=600, student_epochs=None),
}
# Set by the runner per seed, arm or script: not for --train_args.
RUNNER_SETS = ("run_dir", "data", "seed", "noise", "epochs", "retrain", "labeled_copies")


def run(script, run_dir, *args):
    """One stage script on run_dir, its output appended to run_dir/log-<script>.txt."""
    os.makedirs(run_dir, exist_ok=True)
    log, start = os.path.join(run_dir, f"log-{script[:-3]}.txt"), time.time()
    with open(log, "a") as f:
        f.write(f"$ {script} {' '.join(args)}\n")
        f.flush()
        code = subprocess.run([sys.executable, os.path.join(REPO, script), f"--run_dir={run_dir}", *args], cwd=REPO,
                              stdout=f, stderr=subprocess.STDOUT,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")).returncode
        f.write(f"# exit code {code} after {time.time() - start:.0f} s, {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    print(f"  {script} {run_dir}: {'ok' if code == 0 else 'FAILED'} in {time.time() - start:.0f} s", flush=True)
    require(code == 0, f"{script} failed in {run_dir} (exit code {code}); see {log}")


def link(run_dir, name, target):
    """run_dir/name -> target, a stage another arm made; refused where it is anything else."""
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, name)
    if not os.path.lexists(path):
        os.symlink(os.path.relpath(target, run_dir), path)
    require(os.path.islink(path) and os.path.realpath(path) == os.path.realpath(target),
            f"{path} should be a link to {target} (the runner shares that stage); delete it and rerun")


def phases(seed, cfg):
    """One seed's four phases: arms 2 and 4, arm 5, arms 1 and 3, arm 6. Each evaluates
    what it trained, unless results.json already scores those models (bench/table.py)."""
    a, b, c, d = (folder(OUT, seed, arm) for arm in (1, 2, 5, 6))
    data = [f"--data={DATA if DATA == 'cifar10' else os.path.abspath(DATA)}", f"--seed={seed}"]
    student = [*cfg["train"], *cfg["student"], f"--labeled_copies={cfg['labeled_copies']}", f"--seed={seed}"]
    unlabeled = [f"--unlabeled={os.path.abspath(UNLABELED)}"] if UNLABELED else []

    def evaluate(run_dir):
        if scores(run_dir) is None:
            run("evaluate.py", run_dir, *EVALUATE_ARGS[os.path.basename(run_dir)])

    def pseudo_and_student(run_dir):  # a student's epochs see about student_images images
        run("pseudo_label.py", run_dir, *cfg["pseudo"], *unlabeled)
        balanced = read(os.path.join(run_dir, "pseudo", "summary.json"))["balanced"]
        labeled = len(np.load(os.path.join(run_dir, "data", "labeled.npy"), mmap_mode="r")) * cfg["labeled_copies"]
        epochs = cfg["student_epochs"] or max(1, round(cfg["student_images"] / (labeled + balanced)))
        run("train_student.py", run_dir, *student, f"--epochs={epochs}", "--noise=True")
        evaluate(run_dir)

    def teacher_and_student(run_dir, noise):  # arms 2 + 4, or arms 1 + 3
        run("train_teacher.py", run_dir, *data, *cfg["teacher"], *cfg["train"], f"--noise={noise}")
        pseudo_and_student(run_dir)

    def plain_student():  # arm 5: teacher 2, its pseudo-labels and student 4's epochs
        for name in ("data", "teacher", "pseudo"):
            link(c, name, os.path.join(b, name))
        epochs = finished(os.path.join(b, "student"))["epochs"]
        run("train_student.py", c, *student, "--noise=False", f"--epochs={epochs}")
        evaluate(c)

    def second_round():  # arm 6: student 4 becomes the teacher
        link(d, "data", os.path.join(b, "data"))
        link(d, "teacher", os.path.join(b, "student"))
        pseudo_and_student(d)

    return [lambda: teacher_and_student(b, True), plain_student, lambda: teacher_and_student(a, False), second_round]


def flat(record):
    """A record's values but its seeds, those of a dict one level down ('resolved.epochs')."""
    return {f"{key}.{name}" if isinstance(value, dict) else key: v for key, value in record.items() if key != "seeds"
            for name, v in (value.items() if isinstance(value, dict) else [(key, value)])}


def check_settings(record):
    """OUT/settings.json: refused in one line where it records another configuration or
    data than `record` (its seeds grow as seeds are added); returns what to write."""
    path = os.path.join(OUT, "settings.json")
    if not os.path.exists(path):
        return record
    held = read(path)
    require(isinstance(held, dict) and isinstance(held.get("seeds"), list),
            f"{path} is not a record of bench/effect.py; use another --out")
    old, new = flat(held), flat(record)
    differ = [f"{key} {old.get(key)!r} (now {new.get(key)!r})" for key in sorted(set(old) | set(new))
              if old.get(key) != new.get(key)]
    require(not differ, f"{OUT} holds runs made with other settings: {'; '.join(differ)}; use another --out")
    return dict(record, seeds=sorted(set(held["seeds"]) | set(record["seeds"])))


def check_train_args():
    """TRAIN_ARGS may set what both training scripts take and the runner leaves alike."""
    require(all(isinstance(a, str) and a.startswith("--") and "=" in a for a in TRAIN_ARGS),
            f"--train_args={TRAIN_ARGS!r}: expected a tuple of '--name=value' strings")
    both = set.intersection(*({name.lower() for name, _, _ in settings_block(os.path.join(REPO, script))}
                              for script in ("train_teacher.py", "train_student.py")))
    one_script = {a[2:].split("=", 1)[0] for a in (*CONFIGS[CONFIG]["teacher"], *CONFIGS[CONFIG]["student"])}
    for name in (a[2:].split("=", 1)[0] for a in TRAIN_ARGS):
        require(name not in RUNNER_SETS, f"--train_args: --{name} is set by the runner itself (per seed or arm)")
        require(name not in one_script, f"--train_args: --{name} is set by the configuration for the teacher or "
                "the student alone; make a configuration for it instead")
        require(name in both, f"--train_args: --{name} is not a setting of both train_teacher.py and train_student.py")


if __name__ == "__main__":
    install_error_hook()
    configure(globals())
    if TABLE_ONLY:  # of the folder's own record, whatever the command line says
        held = read(os.path.join(OUT, "settings.json"))
        require(isinstance(held, dict) and held.get("config") in CONFIGS and isinstance(held.get("seeds"), list),
                f"{OUT}/settings.json: no record of bench/effect.py there (a configuration and seeds); check --out")
        write_table(OUT, held["config"], {seed: collect(OUT, seed) for seed in held["seeds"]},
                    f"Table of {OUT}'s runs so far (its settings.json), by `python bench/effect.py "
                    f"{' '.join(sys.argv[1:])}`", held.get("resolved"))
        raise SystemExit(0)
    # Every setting is checked before OUT/settings.json is written: a typo must not claim --out.
    require(CONFIG in CONFIGS, f"--config={CONFIG!r}: expected one of {sorted(CONFIGS)}")
    require(len(SEEDS) >= 1 and len(set(SEEDS)) == len(SEEDS) and all(type(s) is int and 0 <= s < 2**32 for s in SEEDS),
            f"--seeds={SEEDS!r}: expected distinct integers in [0, 2**32)")
    require(STUDENT_IMAGES >= 0, f"--student_images={STUDENT_IMAGES}: expected a number of images, or 0")
    require(len(PHASES) >= 1 and all(type(p) is int and 1 <= p <= 4 for p in PHASES),
            f"--phases={PHASES!r}: expected some of (1, 2, 3, 4)")
    check_train_args()
    require_source(DATA)
    require(not UNLABELED or os.path.isdir(UNLABELED) or (UNLABELED.endswith(".npy") and os.path.isfile(UNLABELED)),
            f"--unlabeled={UNLABELED!r}: expected '' (pseudo_label.py's default), an existing folder or .npy file")
    cfg = dict(CONFIGS[CONFIG], train=[*CONFIGS[CONFIG]["train"], *TRAIN_ARGS])  # the scripts take a name's last value
    if STUDENT_IMAGES:
        cfg.update(student_images=STUDENT_IMAGES, student_epochs=None)
    record = check_settings({"config": CONFIG, "resolved": cfg, "data": DATA if DATA == "cifar10" else
                             os.path.abspath(DATA), "unlabeled": UNLABELED and os.path.abspath(UNLABELED),
                             "seeds": list(SEEDS)})
    for seed in SEEDS if {2, 4} & set(PHASES) and 1 not in PHASES else ():
        require(finished(os.path.join(folder(OUT, seed, 2), "student")),
                f"--phases={PHASES}: phases 2 and 4 build on phase 1, and seed {seed}'s arm 4 "
                f"({folder(OUT, seed, 2)}/student) is not finished; add phase 1")
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "settings.json.tmp"), "w") as f:  # made current by one rename: never half-written
        json.dump(record, f, indent=1)
    os.replace(os.path.join(OUT, "settings.json.tmp"), os.path.join(OUT, "settings.json"))
    with open(__file__) as source, open(os.path.join(OUT, "effect.py"), "w") as copy:
        copy.write(source.read())  # the code beside its result
    start, plan = time.time(), {seed: phases(seed, cfg) for seed in SEEDS}
    for phase in sorted(PHASES):
        for seed in SEEDS:
            print(f"phase {phase}, seed {seed}", flush=True)
            plan[seed][phase - 1]()
        write_table(OUT, CONFIG, {seed: collect(OUT, seed) for seed in record["seeds"]},
                    f"Command: `python bench/effect.py {' '.join(sys.argv[1:])}`; wall time of this invocation "
                    f"{(time.time() - start) / 60:.0f} min (stages an earlier one finished not in it).", cfg,
                    time.time() - start)
