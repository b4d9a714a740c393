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
        teachers 40 epochs (160k images seen), students a budget of 1.5M images each;
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

The run folder keeps each arm's RUN_DIR, the logs, this script's source and the resolved
settings next to the table (effect.md, effect.json, effect.png). The stages run in four
phases over all seeds (arms 2 and 4; arm 5; arms 1 and 3; arm 6), and the table is
rewritten after each, marked partial until every arm has every seed. Stages already
finished are not run again, and a training stopped mid-way resumes from its last epoch,
so a killed runner continues where it stopped.
"""
import ast
import json
import os
import shutil
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.scripts import run_script  # noqa: E402
from noisy.settings import configure  # noqa: E402
from noisy.errors import install_error_hook, require  # noqa: E402

# ------------------------------------------------------------------------------ settings
CONFIG = "cpu"            # 'cpu' or 'full' (see the docstring)
DATA = "cifar10"          # labeled source: 'cifar10', a class-folder directory or an .npz
UNLABELED = ""            # '' = pseudo_label.py's default (cpu: the split's unlabeled pool; full: CINIC-10); or a folder
OUT = "runs/effect"       # folder for all runs and the table
SEEDS = (0, 1)            # one full set of arms per seed
TABLE_ONLY = False        # True = write the table from the stages finished so far; train nothing
STUDENT_IMAGES = 0        # a student's budget of images seen; 0 = the configuration's (cpu: 1.5M)
TRAIN_ARGS = ()           # extra --name=value arguments for both training scripts, after the configuration's (a later one wins), e.g. '("--augment=device","--jit_compile=true")'
# ------------------------------------------------------------------------------
CONFIGS = {
    # teacher: train_teacher.py only; train: both training scripts; student: train_student.py
    # only; student_images: a student's budget of images seen (its epochs follow from its
    # data size), or student_epochs: a fixed number of epochs.
    "cpu": dict(
        teacher=["--num_labeled=4000", "--num_val=2000", "--model=resnet9_w16", "--epochs=40",
                 "--warmup_epochs=2"],
        train=["--batch_size=128", "--optimizer=sgd", "--lr=0.1", "--weight_decay=5e-4", "--schedule=cosine",
               "--workers=2",
               "--num_ops=2", "--magnitude=5", "--dropout=0.2", "--survival_last=0.9"],
        student=["--warmup_epochs=1", "--label_smoothing=0.1"], labeled_copies=3,
        pseudo=["--threshold=0.3", "--per_class=3000", "--soft=False"], student_images=1_500_000,
        student_epochs=None),
    "full": dict(
        teacher=["--num_labeled=0", "--num_val=5000", "--model=resnet50", "--epochs=300"],
        train=["--batch_size=64", "--optimizer=adam", "--lr=0.001", "--schedule=plateau",
               "--flat_epochs=250", "--patience=10"],
        student=[], labeled_copies=1,
        pseudo=["--threshold=0.75"], student_images=None, student_epochs=300),
    "smoke": dict(  # a check of the runner itself on tiny data, minutes on a CPU; no evidence
        teacher=["--num_labeled=80", "--num_val=20", "--model=tiny", "--epochs=1"],
        train=["--batch_size=32"], student=[], labeled_copies=2,
        pseudo=["--threshold=0.0"], student_images=600, student_epochs=None),
}
ARMS = {1: "teacher, no noise", 2: "teacher, noise", 3: "student of 1, noise",
        4: "student of 2, noise", 5: "student of 2, no noise", 6: "round 2: student of 4, noise"}


def resolve(config, student_images=0, train_args=()):
    """The configuration's settings, with the students' budget replaced when
    `student_images` is set (then every student trains for that many images seen) and
    `train_args` appended to both training scripts' arguments (the scripts take the last
    value given for a name, so these override the configuration's)."""
    cfg = dict(CONFIGS[config])
    if student_images:
        cfg.update(student_images=student_images, student_epochs=None)
    if train_args:
        cfg.update(train=[*cfg["train"], *train_args])
    return cfg


def require_arguments(option, args):
    """One line and exit 2 unless `args` (the value of `option`) is a tuple of '--name=value' strings."""
    require(all(isinstance(a, str) and a.startswith("--") and "=" in a for a in args),
            f"{option}={args!r}: expected a tuple of '--name=value' strings")


def evaluate(run_dir, *args):
    """evaluate.py on run_dir, unless its results.json already scores the models that the
    teacher's and student's config.json name now (their run ids) with these arguments: a
    resumed runner would otherwise score every finished arm again (minutes each on a CPU)."""
    if evaluated(run_dir, args):
        print(f"  evaluate.py {run_dir}: already done for these models, skipped", flush=True)
        return
    run("evaluate.py", run_dir, *args)


def evaluated(run_dir, args):
    """Whether run_dir/results.json holds both models' current run ids and the settings in
    `args` (--name=value, values as evaluate.py parses them)."""
    path = os.path.join(run_dir, "results.json")
    if not (os.path.isfile(path) and done(run_dir, "teacher") and done(run_dir, "student")):
        return False
    with open(path) as f:
        results = json.load(f)
    for stage in ("teacher", "student"):
        with open(os.path.join(run_dir, stage, "config.json")) as f:
            if results.get(stage, {}).get("run_id") != json.load(f)["run_id"]:
                return False
    for arg in args:
        name, text = arg[2:].split("=", 1)
        try:
            value = json.loads(json.dumps(ast.literal_eval(text)))  # as results.json stores it
        except (ValueError, SyntaxError):
            value = text
        if results.get("settings", {}).get(name) != value:
            return False
    return True


def run(script, run_dir, *args):
    """Run one stage script, logging to run_dir/log-<script>.txt (its command, output and
    time); stop on failure."""
    os.makedirs(run_dir, exist_ok=True)
    log = os.path.join(run_dir, f"log-{script[:-3]}.txt")
    start = time.time()
    with open(log, "a") as f:
        f.write(f"$ {script} {' '.join(args)}\n")
        f.flush()
        code = run_script(script, f"--run_dir={run_dir}", *args, log=f, check=False).returncode
        seconds = time.time() - start
        f.write(f"# exit code {code} after {seconds:.0f} s, {time.strftime('%Y-%m-%d %H:%M:%S')}\n")  # stage time
    print(f"  {script} {run_dir}: {'ok' if code == 0 else 'FAILED'} in {seconds:.0f} s", flush=True)
    if code != 0:
        raise SystemExit(f"{script} failed in {run_dir}; see {log}")
    return seconds


def link(run_dir, name, target):
    """run_dir/name -> target (a stage folder shared with another arm)."""
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, name)
    if not os.path.islink(path):
        os.symlink(os.path.relpath(target, run_dir), path)


def done(run_dir, stage):
    return os.path.isfile(os.path.join(run_dir, stage, "config.json"))


def pseudo_and_student(run_dir, cfg, student_args):
    if not done(run_dir, "pseudo"):
        extra = [f"--unlabeled={os.path.abspath(UNLABELED)}"] if UNLABELED else []
        run("pseudo_label.py", run_dir, *cfg["pseudo"], *extra)
    epochs = cfg["student_epochs"]
    if epochs is None:  # a budget of images seen, whatever the number of pseudo-labels
        epochs = epochs_for(run_dir, cfg["student_images"], cfg["labeled_copies"])
    run("train_student.py", run_dir, *student_settings(cfg), f"--epochs={epochs}", *student_args)


def epochs_for(run_dir, images, labeled_copies):
    """Student epochs that see about `images` images: per epoch, run_dir's labeled split
    `labeled_copies` times plus its balanced pseudo-labels."""
    with open(os.path.join(run_dir, "pseudo", "summary.json")) as f:
        balanced = json.load(f)["balanced"]
    labeled = len(np.load(os.path.join(run_dir, "data", "labeled.npy"))) * labeled_copies
    return max(1, round(images / (labeled + balanced)))


def student_settings(cfg):
    return [*cfg["train"], *cfg["student"], f"--labeled_copies={cfg['labeled_copies']}"]


def arm_dirs(seed):
    """Run folders of one seed: A teacher 1 (arms 1, 3), B teacher 2 (arms 2, 4),
    C arm 5 (shares B's teacher and labels), D round 2 (arm 6, student 4 as teacher)."""
    root = os.path.join(OUT, f"seed{seed}")
    return [os.path.join(root, x) for x in ("A-teacher-plain", "B-teacher-noised", "C-student-plain", "D-round2")]


def phases(seed, cfg):
    """The stages of one seed in four phases: arms 2 and 4 (the method's pair), arm 5 (its
    ablation), arms 1 and 3, arm 6. Every seed finishes a phase before any seed starts
    the next, so the comparisons the issue targets have all seeds first; each phase
    evaluates what it trained."""
    a, b, c, d = arm_dirs(seed)
    data = [f"--data={os.path.abspath(DATA) if DATA != 'cifar10' else DATA}", f"--seed={seed}"]
    noised = [f"--seed={seed}", "--noise=True"]

    def teacher_and_student(run_dir, noise):  # arms 2 + 4, or arms 1 + 3
        run("train_teacher.py", run_dir, *data, *cfg["teacher"], *cfg["train"], f"--noise={noise}")
        pseudo_and_student(run_dir, cfg, noised)
        evaluate(run_dir, *([] if noise else ["--severities=()"]))  # robustness: arms 2 and 4

    def plain_student():  # arm 5 shares teacher 2 and its labels
        for name in ("data", "teacher", "pseudo"):
            link(c, name, os.path.join(b, name))
        run("train_student.py", c, *student_settings(cfg), f"--seed={seed}", "--noise=False",
            f"--epochs={epochs_of(b)}")
        evaluate(c, "--severities=()")

    def second_round():  # arm 6: student 4 becomes the teacher
        link(d, "data", os.path.join(b, "data"))
        link(d, "teacher", os.path.join(b, "student"))
        pseudo_and_student(d, cfg, noised)
        evaluate(d, "--severities=()")

    return [lambda: teacher_and_student(b, True), plain_student, lambda: teacher_and_student(a, False),
            second_round]


ARM_SOURCES = {1: ("a", "teacher"), 2: ("b", "teacher"), 3: ("a", "student"), 4: ("b", "student"),
               5: ("c", "student"), 6: ("d", "student")}  # run folder (arm_dirs order) and model
ROUNDS = {"round 1, teacher 1": "a", "round 1, teacher 2": "b", "round 2, teacher 4": "d"}


def collect(seed):
    """Per-arm test accuracy (None for an arm not evaluated yet) and per-round
    pseudo-label stats (rounds not labeled yet left out) of one seed."""
    dirs = dict(zip("abcd", arm_dirs(seed)))
    result = {k: load(d) for k, d in dirs.items() if os.path.isfile(os.path.join(d, "results.json"))}
    scores = {arm: result.get(k, {}).get(model) for arm, (k, model) in ARM_SOURCES.items()}  # None: not evaluated
    accuracy = {arm: None if s is None else s["accuracy"] for arm, s in scores.items()}
    # calibration of every arm; robustness of arms 2 and 4 (the only ones scored under corruption)
    ece = {arm: None if s is None else s.get("ece") for arm, s in scores.items()}
    corrupted = {arm: None if s is None else unseen_corruption_mean(s) for arm, s in scores.items()}
    pseudo = {}
    for label, k in ROUNDS.items():
        path = os.path.join(dirs[k], "pseudo", "summary.json")
        if os.path.isfile(path):
            with open(path) as f:
                pseudo[label] = json.load(f)
            if "accuracy_kept" in pseudo[label] and "accuracy_balanced" not in pseudo[label]:
                # the split's own pool, labeled before pseudo_label.py recorded this: compute it here
                pseudo[label]["accuracy_balanced"] = balanced_accuracy(dirs[k])
    return {"accuracy": accuracy, "ece": ece, "corrupted": corrupted, "pseudo": pseudo}


# CIFAR-10-C corruptions that a RandAugment op of the noise resembles (its Contrast and
# Brightness ops): left out of the robustness comparison, which must not score the
# corruptions the models were trained on. The blurs stay: RandAugment's Sharpness below 1
# blends in PIL's 3x3 smoothing by at most 0.15 at the configuration's magnitude 5, far
# from CIFAR-10-C's defocus, glass, motion and zoom blurs.
TRAINED_ON = ("contrast", "brightness")


def unseen_corruption_mean(scores):
    """Mean accuracy over the scored corruptions (all severities) but TRAINED_ON, or None."""
    by_name = scores.get("corruption_accuracy") or {}
    values = [v for name, per in by_name.items() if name not in TRAINED_ON for v in per.values()]
    return float(np.mean(values)) if values else None


def balanced_accuracy(run_dir):
    """Fraction of the balanced pseudo-labels (what the student trains on) that are
    correct: their top class against the hidden labels of the training rows they label."""
    rows = np.load(os.path.join(run_dir, "pseudo", "indices.npy"))
    targets = np.load(os.path.join(run_dir, "pseudo", "targets.npy"))
    labels = np.load(os.path.join(run_dir, "data", "train_labels.npy"))
    return float((targets.argmax(axis=1) == labels[rows]).mean())


def epochs_of(run_dir):
    with open(os.path.join(run_dir, "student", "config.json")) as f:
        return json.load(f)["epochs"]


def load(run_dir):
    with open(os.path.join(run_dir, "results.json")) as f:
        return json.load(f)


def mean_std(values):
    """'mean ± std' in percent (std over seeds, ddof 1); one value is marked as such."""
    values = np.asarray(values, float) * 100
    if len(values) == 0:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f} (one seed)"
    return f"{values.mean():.2f} ± {values.std(ddof=1):.2f}"


def write_table(results, seconds):
    """effect.md / effect.json / effect.png from what has finished; an arm or round some
    seeds lack is averaged over the others, and the table says over which."""
    seeds = sorted(results)
    missing = [f"arm {arm} seed {s}" for arm in ARMS for s in seeds if results[s]["accuracy"][arm] is None]
    lines = [f"# Noisy Student effect: config '{CONFIG}'", "",
             f"Command: `python bench/effect.py {' '.join(sys.argv[1:])}`  ",
             f"Seeds: {', '.join(map(str, seeds))}. "
             + ("Wall time: not measured (--table_only). " if seconds is None else
                f"Wall time of this invocation: {seconds / 60:.0f} min (stages an earlier invocation "
                "finished are not in it). ")
             + "Stage times: the '# exit code ... after N s' lines of each run folder's log-*.txt, one per "
             "invocation (a stage already finished exits in seconds). "
             f"Machine: {os.cpu_count()} CPU cores, {sys.platform}, Python {sys.version.split()[0]}.", ""]
    if missing:
        lines += [f"**Partial table**: not finished yet: {', '.join(missing)}.", ""]
    lines += ["| arm | what | test accuracy % (mean ± std) | " + " | ".join(f"seed {s}" for s in seeds) + " |",
              "|---|---|---|" + "---|" * len(seeds)]
    for arm, what in ARMS.items():
        values = [results[s]["accuracy"][arm] for s in seeds]
        lines.append(f"| {arm} | {what} | {mean_std([v for v in values if v is not None])} | "
                     + " | ".join("-" if v is None else f"{v:.2%}" for v in values) + " |")
    gains = {"4 - 2 (student over its noised teacher)": (4, 2), "3 - 1 (student over its plain teacher)": (3, 1),
             "4 - 5 (noise in the student)": (4, 5), "6 - 4 (second round)": (6, 4)}
    lines += ["", "| difference | points (mean ± std over seeds) | seeds |", "|---|---|---|"]
    for name, (x, y) in gains.items():
        both = [s for s in seeds if results[s]["accuracy"][x] is not None and results[s]["accuracy"][y] is not None]
        lines.append(f"| {name} | {mean_std([results[s]['accuracy'][x] - results[s]['accuracy'][y] for s in both])} "
                     f"| {', '.join(map(str, both)) or '-'} |")
    lines += ["", "| arm | expected calibration error (mean ± std) | mean accuracy under corruption % (mean ± std; "
              f"all scored but {' and '.join(TRAINED_ON)}) "
              "| seeds |", "|---|---|---|---|"]
    for arm in ARMS:
        have = [s for s in seeds if results[s].get("ece", {}).get(arm) is not None]
        if have:
            ece = np.array([results[s]["ece"][arm] for s in have])
            scored = [s for s in have if results[s]["corrupted"][arm] is not None]
            lines.append(f"| {arm} | {ece.mean():.3f}" + (f" ± {ece.std(ddof=1):.3f}" if len(ece) > 1 else " (one seed)")
                         + f" | {mean_std([results[s]['corrupted'][arm] for s in scored]) if scored else 'not scored'}"
                         f" | {', '.join(map(str, have))} |")
    robust = [s for s in seeds if all(results[s].get("corrupted", {}).get(a) is not None for a in (2, 4))]
    if robust:
        clean = 100 * np.mean([results[s]["accuracy"][4] - results[s]["accuracy"][2] for s in robust])
        under = 100 * np.mean([results[s]["corrupted"][4] - results[s]["corrupted"][2] for s in robust])
        ratio = f"; {under / clean:.2f} of the clean gain" if clean >= 0.5 else ""  # a ratio of tiny gains means nothing
        lines += ["", f"Arm 4 - arm 2 under corruption: {under:+.2f} points, clean {clean:+.2f} (mean over seeds "
                  f"{', '.join(map(str, robust))}{ratio})."]
    lines += ["", "| round | pseudo-labels kept (mean) | correct among kept % (mean ± std) | after balancing (mean) "
              "| correct after balancing % (mean ± std) | seeds |", "|---|---|---|---|---|---|"]
    for label in ROUNDS:
        have = [s for s in seeds if label in results[s]["pseudo"]]
        if not have:
            continue
        stats = [results[s]["pseudo"][label] for s in have]
        correct = {key: mean_std([p[key] for p in stats]) if key in stats[0] else "n/a"
                   for key in ("accuracy_kept", "accuracy_balanced")}
        lines.append(f"| {label} | {np.mean([p['kept'] for p in stats]):.0f} | {correct['accuracy_kept']} | "
                     f"{np.mean([p['balanced'] for p in stats]):.0f} | {correct['accuracy_balanced']} "
                     f"| {', '.join(map(str, have))} |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(OUT, "effect.md"), "w") as f:
        f.write(text)
    with open(os.path.join(OUT, "effect.json"), "w") as f:
        json.dump({"config": CONFIG, "settings": CONFIGS[CONFIG], "seeds": seeds, "results": results,
                   "wall_seconds": seconds, "missing": missing}, f, indent=2)
    plot(results, seeds)
    print(text)


def plot(results, seeds):
    try:
        import matplotlib
    except ImportError:
        print("warning: matplotlib is not installed, so effect.png was not drawn")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    values = {a: [results[s]["accuracy"][a] * 100 for s in seeds if results[s]["accuracy"][a] is not None]
              for a in ARMS}
    arms = [a for a in ARMS if values[a]]  # a partial table draws the arms it has
    if not arms:
        return
    means = [np.mean(values[a]) for a in arms]
    stds = [np.std(values[a], ddof=1) if len(values[a]) > 1 else 0 for a in arms]
    colors = dict(zip(ARMS, ["#999", "#666", "#7ab", "#39c", "#c93", "#36a"]))
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(range(len(arms)), means, yerr=stds, capsize=4, color=[colors[a] for a in arms])
    ax.set_xticks(range(len(arms)), [f"{a}: {ARMS[a]}" + (f" ({len(values[a])} of {len(seeds)} seeds)"
                                                          if len(values[a]) < len(seeds) else "") for a in arms],
                  rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy % (mean ± std)")
    ax.set_title(f"Noisy Student arms, config '{CONFIG}', seeds {', '.join(map(str, seeds))}")
    ax.set_ylim(min(means) - 10, max(means) + 5)
    fig.tight_layout()
    fig.savefig(os.path.join(OUT, "effect.png"), dpi=120)


if __name__ == "__main__":
    install_error_hook()
    settings = configure(globals())
    require(CONFIG in CONFIGS, f"--config={CONFIG!r}: expected one of {sorted(CONFIGS)}")
    require(len(SEEDS) >= 1, "--seeds needs at least one seed")
    require(STUDENT_IMAGES >= 0, f"--student_images={STUDENT_IMAGES}: expected a number of images, or 0 for the configuration's")
    require_arguments("--train_args", TRAIN_ARGS)
    CONFIGS[CONFIG] = resolve(CONFIG, STUDENT_IMAGES, tuple(TRAIN_ARGS))  # what every stage and the saved settings use
    os.makedirs(OUT, exist_ok=True)
    if TABLE_ONLY:
        write_table({seed: collect(seed) for seed in SEEDS}, None)
        raise SystemExit(0)
    shutil.copy(os.path.abspath(__file__), os.path.join(OUT, "effect.py"))  # the code next to its result
    with open(os.path.join(OUT, "settings.json"), "w") as f:
        json.dump(dict(settings, resolved=CONFIGS[CONFIG]), f, indent=2)
    start = time.time()
    plan = {seed: phases(seed, CONFIGS[CONFIG]) for seed in SEEDS}
    for phase in range(4):
        for seed in SEEDS:
            print(f"phase {phase + 1}, seed {seed}", flush=True)
            plan[seed][phase]()
        write_table({seed: collect(seed) for seed in SEEDS}, time.time() - start)  # after every phase
