"""Does Noisy Student help, and by how much? Runs the pipeline's own four scripts for six
arms and several seeds and writes a table of test accuracy, mean +- std over seeds.

Arms (issue #3): 1 teacher without noise (article experiment 1); 2 teacher with noise
(experiment 2, also the supervised baseline with the student's noise); 3 noised student of
teacher 1; 4 noised student of teacher 2; 5 student of teacher 2 trained without noise
(the paper's ablation); 6 a second round, student 4 as the teacher. Per round it also
records how many pseudo-labels were kept and how many of them are correct.

    python bench/effect.py --config=cpu --data=/tmp/cifar10 --out=runs/effect-cpu
    python bench/effect.py --config=full --data=cifar10 --out=runs/effect-full   # CINIC-10 as the unlabeled set
    python bench/effect.py --config=cpu --out=runs/effect-cpu --table_only=True   # the table so far
    python bench/effect.py --config=cpu --student_images=750000 --out=runs/effect-cpu-750k  # a smaller student budget
    python bench/effect.py --config=cpu --seeds="(0,)" --data=/tmp/cifar10 --out=runs/effect-gpu \
        --train_args='("--augment=device","--jit_compile=true")'   # on a GPU: noise in the train step, XLA

Configurations (all choices made before seeing any test number; nothing is selected on
the test set):
- cpu:  4,000 labels (400 per class, drawn by seed), a 2,000-image validation split
        (keeps each model's best epoch), the other 44,000 training images as the
        unlabeled pool; the fast `resnet9_w16` (0.41M parameters) for teachers and
        students; SGD (Nesterov, 0.1, weight decay 5e-4, cosine), batch 128, float32;
        teachers 80 epochs (320k images seen), students a budget of 1.5M images each;
        pseudo-labels above 0.3, hard, 3,000 per class (most confident first), labeled
        images 3 times per student epoch, label smoothing 0.1 for students; noise
        RandAugment N=2 M=5, dropout 0.2, stochastic depth to survival 0.9. All chosen
        on the validation split of seed 0 (docs/RESULTS.md; the student's budget, label
        type and label smoothing with bench/student_sweep.py and bench/val_metrics.py).
        docs/RESULTS.md gives its table, its cost on 2 CPU cores and how the
        students' budget was chosen.
- full: the article's: all 50,000 labels less a 5,000-image validation split for
        checkpoint selection, ResNet50, Adam 0.001 flat for 250 epochs then
        ReduceLROnPlateau / EarlyStopping to 300, batch 64, and CINIC-10's ImageNet
        images as the unlabeled set (pseudo_label.py's default; --unlabeled=<folder>
        for others), as the article used ImageNet images.
- smoke: a check of the runner itself on tiny data (80 labels, the `tiny` model, one
        teacher epoch, 600-image students): minutes on a CPU, no evidence.

The run folder keeps each arm's RUN_DIR (bench/arms.py says which), the logs, this
script's source and the resolved settings next to the table (effect.md, effect.json,
effect.png); a folder made with other settings is refused. The stages run in four
phases over all seeds (arms 2 and 4; arm 5; arms 1 and 3; arm 6), and the table is
rewritten after each, marked partial until every arm has every seed. Every stage script
runs every time and says "nothing to do" (seconds) for a stage it finished with these
settings and inputs; a training stopped mid-way resumes from its last epoch, so a killed
runner continues where it stopped; an evaluation already made with the runner's
settings of the models there now is not made again. The table counts only stages this
runner ran or checked under the folder's record (bench/ledger.py): one made by hand since,
or copied in, is left out until the runner runs it again. PHASES runs some phases only (a session
too short for a whole seed, say: `--phases="(3,)"` makes arms 1 and 3 alone); phases 2
and 4 are refused before anything runs unless phase 1's student is finished.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import arms  # noqa: E402
from bench.configs import CONFIGS, resolve  # noqa: E402
from bench.ledger import LEDGER, vouch  # noqa: E402
from bench.runner import (check_record, done, epochs_for, evaluate, link, recorded_seeds, require_train_args,  # noqa: E402
                          run, student_settings, write_record)
from bench.table import collect, write_table  # noqa: E402
from noisy.data import require_source, source_sha256  # noqa: E402
from noisy.errors import install_error_hook, require  # noqa: E402
from noisy.files import read_json  # noqa: E402
from noisy.settings import configure  # noqa: E402

# ------------------------------------------------------------------------------ settings
CONFIG = "cpu"            # 'cpu', 'full' or 'smoke' (see the docstring)
DATA = "cifar10"          # labeled source: 'cifar10', a class-folder directory or an .npz
UNLABELED = ""            # '' = pseudo_label.py's default (cpu: the split's unlabeled pool; full: CINIC-10); or a folder
OUT = "runs/effect"       # folder for all runs and the table
SEEDS = (0, 1, 2)         # one full set of arms per seed (a folder's table covers every seed it has run)
TABLE_ONLY = False        # True = write the table of the folder's own record (configuration, seeds) so far; train nothing
STUDENT_IMAGES = 0        # a student's budget of images seen; 0 = the configuration's (cpu: 1.5M)
PHASES = (1, 2, 3, 4)     # the phases to run now: 1 arms 2 and 4, 2 arm 5, 3 arms 1 and 3, 4 arm 6 (2 and 4 need 1 finished)
TRAIN_ARGS = ()           # extra --name=value settings for both training scripts (not one the runner or the configuration sets per seed, arm or script), e.g. '("--augment=device","--jit_compile=true")'
# ------------------------------------------------------------------------------


def phases(seed, cfg):
    """The stages of one seed in four phases: arms 2 and 4 (the method's pair), arm 5 (its
    ablation), arms 1 and 3, arm 6. Every seed finishes a phase before any seed starts
    the next, so the comparisons the issue targets have all seeds first; each phase
    evaluates what it trained. Every stage script runs every time: it says "nothing to
    do" for a stage it finished with these settings and inputs, and refuses one made
    otherwise."""
    a, b, c, d = (arms.folder(OUT, seed, arm) for arm in (1, 2, 5, 6))
    data = [f"--data={os.path.abspath(DATA) if DATA != 'cifar10' else DATA}", f"--seed={seed}"]
    noised = [f"--seed={seed}", "--noise=True"]
    unlabeled = [f"--unlabeled={os.path.abspath(UNLABELED)}"] if UNLABELED else []

    def stage(script, run_dir, *args):  # made or found finished with these arguments: the ledger's
        run(script, run_dir, *args)
        vouch(OUT, run_dir, script)

    def pseudo_and_student(run_dir):
        stage("pseudo_label.py", run_dir, *cfg["pseudo"], *unlabeled)
        epochs = cfg["student_epochs"] or epochs_for(run_dir, cfg["student_images"], cfg["labeled_copies"])
        stage("train_student.py", run_dir, *student_settings(cfg), f"--epochs={epochs}", *noised)

    def teacher_and_student(run_dir, noise):  # arms 2 + 4, or arms 1 + 3
        stage("train_teacher.py", run_dir, *data, *cfg["teacher"], *cfg["train"], f"--noise={noise}")
        pseudo_and_student(run_dir)
        evaluate(OUT, run_dir, *arms.EVALUATE_ARGS[os.path.basename(run_dir)])  # robustness: arms 2 and 4

    def plain_student():  # arm 5 shares teacher 2 and its labels
        for name in ("data", "teacher", "pseudo"):
            link(c, name, os.path.join(b, name))
        epochs = read_json(os.path.join(b, "student", "config.json"), "rerun phase 1")["epochs"]
        stage("train_student.py", c, *student_settings(cfg), f"--seed={seed}", "--noise=False", f"--epochs={epochs}")
        evaluate(OUT, c, *arms.EVALUATE_ARGS[os.path.basename(c)])

    def second_round():  # arm 6: student 4 becomes the teacher
        link(d, "data", os.path.join(b, "data"))
        link(d, "teacher", os.path.join(b, "student"))
        pseudo_and_student(d)
        evaluate(OUT, d, *arms.EVALUATE_ARGS[os.path.basename(d)])

    return [lambda: teacher_and_student(b, True), plain_student, lambda: teacher_and_student(a, False),
            second_round]


def record():
    """What this folder's table is of: the configuration (resolved), its sources (absolute
    paths, so that the same folder named from elsewhere is the same, and what their files
    hold: arms made in later phases must not read a folder changed in between) and
    the seeds."""
    data = DATA if DATA == "cifar10" else os.path.abspath(DATA)
    unlabeled = UNLABELED and os.path.abspath(UNLABELED)
    return {"config": CONFIG, "resolved": CONFIGS[CONFIG], "data": data, "unlabeled": unlabeled,
            "data_sha256": None if data == "cifar10" else source_sha256(data),  # the download is fixed
            "unlabeled_sha256": source_sha256(unlabeled) if unlabeled else None, "seeds": list(SEEDS)}


def read_held_record(out):
    """out/settings.json, for a table of what the folder holds: a record of this code's
    runner (its configuration, seeds and ledger), of data whose files hold what they held."""
    path = os.path.join(out, "settings.json")
    held = read_json(path, f"is {out} a folder bench/effect.py ran in?")
    require(isinstance(held, dict) and held.get("config") in CONFIGS and isinstance(held.get("seeds"), list)
            and all(type(s) is int for s in held["seeds"]),
            f"{path} is not a record of bench/effect.py (a configuration and a list of seeds); use another --out")
    require("data_sha256" in held and os.path.isfile(os.path.join(out, LEDGER)),
            f"{out} was recorded by an earlier bench/effect.py, or no stage of it has finished (it has no "
            f"{'data_sha256' if 'data_sha256' not in held else LEDGER}): its table is the one that code writes "
            "(its effect.py is beside the table)")
    for name in ("data", "unlabeled"):
        if held.get(f"{name}_sha256"):
            require(source_sha256(held[name]) == held[f"{name}_sha256"],
                    f"--{name}={held[name]} changed since {out}'s runs were made (the bytes of its files differ "
                    "from the record's): the folder's scores are not of the data there now")
    return held


if __name__ == "__main__":
    install_error_hook()
    configure(globals())
    if TABLE_ONLY:  # of the folder's own record (its configuration and seeds), whatever the command line says
        held = read_held_record(OUT)
        write_table(OUT, held["config"], {seed: collect(OUT, seed) for seed in held["seeds"]}, None,
                    settings=held.get("resolved"))
        raise SystemExit(0)
    # Every setting is checked before the folder's record is written: a typo must not claim --out.
    require(CONFIG in CONFIGS, f"--config={CONFIG!r}: expected one of {sorted(CONFIGS)}")
    require(len(SEEDS) >= 1 and all(type(s) is int and 0 <= s < 2**32 for s in SEEDS) and len(set(SEEDS)) == len(SEEDS),
            f"--seeds={SEEDS!r}: expected distinct integers in [0, 2**32)")
    require(STUDENT_IMAGES >= 0, f"--student_images={STUDENT_IMAGES}: expected a number of images, or 0 for the configuration's")
    require_train_args("--train_args", TRAIN_ARGS, CONFIGS[CONFIG])
    require(len(PHASES) >= 1 and all(type(p) is int and 1 <= p <= 4 for p in PHASES), f"--phases={PHASES!r}: expected some of (1, 2, 3, 4)")
    require_source(DATA)
    require(not UNLABELED or os.path.isdir(UNLABELED) or (UNLABELED.endswith(".npy") and os.path.isfile(UNLABELED)),
            f"--unlabeled={UNLABELED!r}: expected '' (pseudo_label.py's default), an existing folder or .npy file")
    CONFIGS[CONFIG] = resolve(CONFIG, STUDENT_IMAGES, tuple(TRAIN_ARGS))  # what every stage and the saved settings use
    made_of = record()
    check_record(OUT, made_of)  # a folder of other settings is refused before anything is written
    # Arm 5 shares arm 4's teacher, labels and epochs; arm 6 is arm 4's student's.
    if 1 not in PHASES and {2, 4} & set(PHASES):
        for seed in SEEDS:
            require(done(arms.folder(OUT, seed, 2), "student"),
                    f"--phases={PHASES}: phases 2 and 4 build on phase 1, and seed {seed}'s arm 4 "
                    f"({arms.folder(OUT, seed, 2)}/student) is not finished; add phase 1")
    os.makedirs(OUT, exist_ok=True)
    write_record(OUT, made_of, os.path.abspath(__file__))  # the code next to its result
    start = time.time()
    plan = {seed: phases(seed, CONFIGS[CONFIG]) for seed in SEEDS}
    for phase in sorted(PHASES):
        for seed in SEEDS:
            print(f"phase {phase}, seed {seed}", flush=True)
            plan[seed][phase - 1]()
        write_table(OUT, CONFIG, {seed: collect(OUT, seed) for seed in recorded_seeds(OUT)}, time.time() - start,
                    settings=CONFIGS[CONFIG])  # after every phase, of every seed the folder holds
