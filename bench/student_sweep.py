"""Choose the student's recipe on the validation split: many student variants from one
noised teacher (arm 2 of bench/effect.py), several stage processes at a time.

    KERAS_BACKEND=jax python bench/student_sweep.py --data=/tmp/cifar10 --out=/tmp/sweep --parallel=8
    python bench/student_sweep.py --config=smoke --data=<synthetic.npz> --variants="('base','hard')" --budget_scale=0.002

It trains the teacher with the runner's configuration (--config, as in bench/effect.py),
pseudo-labels the pool once per distinct labeling, trains each student variant and
reports the best validation accuracy of every model (history.csv): the 2,000 validation
images carved from the training split, never the test set. No test number is computed.
The table (sweep.md) is rewritten after every finished stage, so a run stopped at a time
limit still leaves what it measured.
"""
import concurrent.futures
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.configs import CONFIGS  # noqa: E402
from bench.runner import best_val, done, epochs_for, link, require_arguments, run, student_settings  # noqa: E402
from noisy.errors import UserError  # noqa: E402
from noisy.settings import configure  # noqa: E402
from noisy.errors import install_error_hook, require  # noqa: E402

# ------------------------------------------------------------------------------ settings
CONFIG = "cpu"            # the runner's configuration the variants start from
DATA = "cifar10"          # labeled source, as for bench/effect.py
OUT = "runs/sweep"        # folder for the runs
REPORT = ""               # '' = OUT/sweep.md; the table (and a .json beside it)
SEEDS = (0,)              # one noised teacher per seed
PARALLEL = 4              # stage processes at a time (a GPU box: several share the chip)
VARIANTS = ()             # () = all of STUDENTS below, or a tuple of their names
EXTRA = ()                # arguments appended to every stage, e.g. ("--workers=2",)
TEACHER_ARGS = ()         # arguments appended to the teacher's, e.g. ("--label_smoothing=0.1","--ema=0.99")
BUDGET_SCALE = 1.0        # multiplies every variant's images seen (e.g. 0.002 for a smoke check)
# ------------------------------------------------------------------------------
# name -> (pseudo-labeling variant, student arguments, images seen). Arguments override the
# configuration's; label type, label smoothing and budget are explicit, so each variant stays
# the one docs/RESULTS.md reports whatever the configuration now chooses. The variants before
# issue #18 ran when the cpu configuration trained in bfloat16 (commit 5caaa43 and earlier);
# the configuration now trains in float32, so they repeat in float32.
PSEUDO = {"soft": ["--soft=True"], "hard": ["--soft=False"],
          "all": ["--soft=True", "--threshold=0.0", "--per_class=4400"]}
K = 250_000
PLAIN = ["--label_smoothing=0.0"]  # what every variant but the recipe's ran with
STUDENTS = {
    "base": ("soft", PLAIN, K),
    "nonoise": ("soft", [*PLAIN, "--noise=False"], K),
    "x3": ("soft", PLAIN, 3 * K),
    "x6": ("soft", PLAIN, 6 * K),
    "nonoise_x3": ("soft", [*PLAIN, "--noise=False"], 3 * K),
    "w24": ("soft", [*PLAIN, "--model=resnet9_w24"], K),
    "w24_x3": ("soft", [*PLAIN, "--model=resnet9_w24"], 3 * K),
    "hard": ("hard", PLAIN, K),
    "hard_x3": ("hard", PLAIN, 3 * K),
    "hard_x6": ("hard", PLAIN, 6 * K),
    "hard_w24_x3": ("hard", [*PLAIN, "--model=resnet9_w24"], 3 * K),
    "all": ("all", PLAIN, K),
    "copies1": ("soft", [*PLAIN, "--labeled_copies=1"], K),
    "input_noise_only": ("soft", [*PLAIN, "--dropout=0.0", "--survival_last=1.0"], K),
    "strong_x3": ("soft", [*PLAIN, "--magnitude=10", "--dropout=0.5", "--survival_last=0.8"], 3 * K),
    # issue #18 (float32): the official recipe's label smoothing and weight average
    # (docs/results-sweep/recipe-cpu.md; the recipe's teacher with --teacher_args). They ran
    # with Keras' use_ema (trainable weights only); --ema is now the official average.
    "hard_x1.5": ("hard", PLAIN, 3 * K // 2),
    "soft_x1.5": ("soft", PLAIN, 3 * K // 2),
    "smoothing_hard_x1.5": ("hard", ["--label_smoothing=0.1"], 3 * K // 2),
    "recipe_hard_x1.5": ("hard", ["--label_smoothing=0.1", "--ema=0.999"], 3 * K // 2),
    "recipe_soft_x1.5": ("soft", ["--label_smoothing=0.1", "--ema=0.999"], 3 * K // 2),
    # issue #24: the official weight average (every variable, batch-norm statistics too, decay
    # warm-up) and a larger student, beside smoothing_hard_x1.5 (the cpu configuration's student)
    "official_ema999_x1.5": ("hard", ["--label_smoothing=0.1", "--ema=0.999"], 3 * K // 2),
    "official_ema99_x1.5": ("hard", ["--label_smoothing=0.1", "--ema=0.99"], 3 * K // 2),
    "smoothing_hard_w24_x1.5": ("hard", ["--label_smoothing=0.1", "--model=resnet9_w24"], 3 * K // 2),
}


def write_report(rows, started):
    path = REPORT or os.path.join(OUT, "sweep.md")
    lines = [f"# Student variants on the validation split (config '{CONFIG}')", "",
             f"Command: `python bench/student_sweep.py {' '.join(sys.argv[1:])}`  ",
             f"Backend {os.environ.get('KERAS_BACKEND', 'tensorflow')}; {os.cpu_count()} CPU cores; "
             f"{(time.time() - started) / 60:.1f} min so far. Accuracy: best epoch on the validation split.", "",
             "| seed | model | pseudo-labels | extra arguments | images seen | val accuracy % | best epoch / epochs | s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["seed"], r["name"] != "teacher", r["name"])):
        lines.append(f"| {r['seed']} | {r['name']} | {r.get('pseudo', '')} | {' '.join(r.get('args', []))} | "
                     f"{r.get('images', '')} | {r.get('val', 'failed')} | {r.get('epochs', '')} | {r['seconds']:.0f} |")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.splitext(path)[0] + ".json", "w") as f:
        json.dump(rows, f, indent=2)


def stage(script, run_dir, args, row, rows, started):
    start = time.time()
    try:
        run(script, run_dir, *args, *EXTRA)
        if script != "pseudo_label.py":
            val, epoch, epochs = best_val(os.path.join(run_dir, "student" if "student" in script else "teacher"))
            row.update(val=f"{val:.2%}", epochs=f"{epoch} / {epochs}")
        else:
            with open(os.path.join(run_dir, "pseudo", "summary.json")) as f:
                s = json.load(f)
            row.update(val=f"kept {s['kept']} at {s['accuracy_kept']:.1%} correct, {s['balanced']} balanced")
    except UserError as e:  # a failed stage is a row of the table, not the end of the sweep
        print(f"error: {e}", flush=True)
    row["seconds"] = time.time() - start
    rows.append(row)
    write_report(rows, started)
    return "val" in row


def one_teacher(seed, cfg, rows, started, pool):
    root = os.path.join(OUT, f"seed{seed}")
    teacher = os.path.join(root, "teacher")
    data = [f"--data={os.path.abspath(DATA) if DATA != 'cifar10' else DATA}", f"--seed={seed}"]
    if not stage("train_teacher.py", teacher, [*data, *cfg["teacher"], *cfg["train"], "--noise=True", *TEACHER_ARGS],
                 {"seed": seed, "name": "teacher"}, rows, started):
        return []
    names = VARIANTS or tuple(STUDENTS)
    pseudos = sorted({STUDENTS[n][0] for n in names})
    for p in pseudos:
        link(os.path.join(root, f"pseudo-{p}"), "data", os.path.join(teacher, "data"))
        link(os.path.join(root, f"pseudo-{p}"), "teacher", os.path.join(teacher, "teacher"))
    list(pool.map(lambda p: stage("pseudo_label.py", os.path.join(root, f"pseudo-{p}"),
                                  [*cfg["pseudo"], *PSEUDO[p]],
                                  {"seed": seed, "name": f"pseudo-labels '{p}'", "args": PSEUDO[p]}, rows, started),
                  pseudos))
    jobs = []
    for name in sorted(names, key=lambda n: -STUDENTS[n][2]):  # the longest first
        p, args, images = STUDENTS[name]
        run_dir = os.path.join(root, name)
        for part in ("data", "teacher", "pseudo"):
            link(run_dir, part, os.path.join(root, f"pseudo-{p}", part))
        copies = int(next((a.split("=")[1] for a in args if a.startswith("--labeled_copies=")),
                          cfg["labeled_copies"]))
        if not done(os.path.join(root, f"pseudo-{p}"), "pseudo"):  # its labeling failed (reported in the table)
            continue
        images = round(images * BUDGET_SCALE)
        epochs = epochs_for(os.path.join(root, f"pseudo-{p}"), images, copies)
        args = [*student_settings(cfg), f"--epochs={epochs}", f"--seed={seed}", *args]
        row = {"seed": seed, "name": name, "pseudo": p, "args": STUDENTS[name][1], "images": images}
        jobs.append(pool.submit(stage, "train_student.py", run_dir, args, row, rows, started))
    return jobs


if __name__ == "__main__":
    install_error_hook()
    configure(globals())
    require(CONFIG in CONFIGS, f"--config={CONFIG!r}: expected one of {sorted(CONFIGS)}")
    require_arguments("--teacher_args", TEACHER_ARGS)
    require_arguments("--extra", EXTRA)
    unknown = [n for n in VARIANTS if n not in STUDENTS]
    require(not unknown, f"--variants: unknown {unknown}; expected names from {sorted(STUDENTS)}")
    os.makedirs(OUT, exist_ok=True)
    started, rows = time.time(), []
    # Teachers of all seeds in parallel, then each seed's labeling and students as they come.
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool, \
            concurrent.futures.ThreadPoolExecutor(len(SEEDS)) as seeds:
        jobs = list(seeds.map(lambda s: one_teacher(s, CONFIGS[CONFIG], rows, started, pool), SEEDS))
        concurrent.futures.wait([j for js in jobs for j in js])
    write_report(rows, started)
    print(open(REPORT or os.path.join(OUT, "sweep.md")).read())
