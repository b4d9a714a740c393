"""What the experiment runner (bench/effect.py) and the sweep (bench/student_sweep.py)
share: run a stage script into its run folder's log, link a stage another folder made,
tell a finished stage, score a run folder unless it was scored with exactly these
settings, a student's epochs from a budget of images, and the runner's own record.

Stages decide for themselves: every stage script is run every time (a finished stage
with the same identity says "nothing to do" in seconds, one made otherwise is refused),
so a run folder never holds a stage made from other inputs than the runner asks for.
"""
import ast
import json
import os
import time

import numpy as np

from bench.ledger import vouch_results, vouched_results
from bench.perf.common import REPO, run_script
from noisy.errors import UserError, require
from noisy.files import read_json, save_json
from noisy.rundir import RunDir
from noisy.settings import settings_block
from noisy.stages import differences


def run(script, run_dir, *args):
    """Run one stage script, logging to run_dir/log-<script>.txt (its command, output and
    time); a failure is a one-line UserError naming the log."""
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
        raise UserError(f"{script} failed in {run_dir} (exit code {code}); see {log}")
    return seconds


def link(run_dir, name, target):
    """run_dir/name -> target (a stage folder shared with another arm); refused where
    run_dir/name is anything else (a folder of its own, as a copy with links followed
    leaves it, or a link elsewhere)."""
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, name)
    if not os.path.islink(path) and not os.path.exists(path):
        os.symlink(os.path.relpath(target, run_dir), path)
    require(os.path.islink(path) and os.path.realpath(path) == os.path.realpath(target),
            f"{path} should be a link to {target} (the runner shares that stage), but is "
            f"{'a link to ' + os.path.realpath(path) if os.path.islink(path) else 'a folder of its own'}; "
            f"delete {path} and rerun: the runner links it again")


def done(run_dir, stage):
    """Whether run_dir/stage holds a finished stage (its config.json complete)."""
    return RunDir(run_dir).is_finished(stage)


def evaluation_settings(args):
    """evaluate.py's settings as results.json stores them: its defaults, then `args`."""
    values = {name.lower(): ast.literal_eval(default) for name, default, _ in
              settings_block(os.path.join(REPO, "evaluate.py"))}
    for arg in args:
        name, text = arg[2:].split("=", 1)
        try:
            values[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            values[name] = text
    values.pop("run_dir")
    return json.loads(json.dumps(values))


def evaluated(run_dir, args):
    """Whether run_dir/results.json scores the models there now, as evaluate.py would take
    them (the teacher and the student RunDir hands over: finished, files as written, the
    student made from that teacher and the pseudo-labels the folder holds now), with
    exactly the settings `args` give evaluate.py (its defaults for the rest): a hand-run
    with other settings is not the runner's."""
    path = os.path.join(run_dir, "results.json")
    if not os.path.isfile(path):
        return False
    try:
        run = RunDir(run_dir)
        teacher = run.teacher()
        (student,), _ = run.students("student", teacher)
    except UserError:
        return False
    results = read_json(path, f"delete {path}")
    if any(results.get(stage, {}).get("run_id") != made.run_id for stage, made in (("teacher", teacher),
                                                                                    ("student", student))):
        return False
    scored = {k: v for k, v in results.get("settings", {}).items() if k != "run_dir"}
    return scored == evaluation_settings(args)


def evaluate(out, run_dir, *args):
    """evaluate.py on run_dir, unless `evaluated` and its results.json is, byte for byte,
    the one the runner's evaluate.py wrote (bench/ledger.py; a resumed runner would
    otherwise score every finished arm again, minutes each on a CPU)."""
    if evaluated(run_dir, args) and vouched_results(out, run_dir):
        print(f"  evaluate.py {run_dir}: already done for these models and settings, skipped", flush=True)
        return
    run("evaluate.py", run_dir, *args)
    vouch_results(out, run_dir)


def epochs_for(run_dir, images, labeled_copies):
    """Student epochs that see about `images` images: per epoch, run_dir's labeled split
    `labeled_copies` times plus its balanced pseudo-labels."""
    balanced = read_json(os.path.join(run_dir, "pseudo", "summary.json"), "rerun pseudo_label.py")["balanced"]
    labeled = len(np.load(os.path.join(run_dir, "data", "labeled.npy"))) * labeled_copies
    return max(1, round(images / (labeled + balanced)))


def student_settings(cfg):
    return [*cfg["train"], *cfg["student"], f"--labeled_copies={cfg['labeled_copies']}"]


def require_arguments(option, args):
    """One line and exit 2 unless `args` (the value of `option`) is a tuple of '--name=value' strings."""
    require(all(isinstance(a, str) and a.startswith("--") and "=" in a for a in args),
            f"{option}={args!r}: expected a tuple of '--name=value' strings")


# What the runner itself sets per seed, arm or script (bench/effect.py's `phases`): a
# --train_args value for one of these would change some stages and not others, or give
# every seed's folder the same split, while the table still names the runner's.
RUNNER_SETS = ("run_dir", "data", "seed", "noise", "epochs", "retrain", "labeled_copies")


def require_train_args(option, args, cfg):
    """`args` (the value of `option`) may override a setting both training scripts have
    and the configuration gives both alike (or neither): not one the runner sets itself,
    nor one the configuration gives the teacher or the student alone."""
    require_arguments(option, args)
    both = set.intersection(*({name.lower() for name, _, _ in settings_block(os.path.join(REPO, script))}
                              for script in ("train_teacher.py", "train_student.py")))
    one_script = {a[2:].split("=", 1)[0] for a in (*cfg["teacher"], *cfg["student"])}
    for arg in args:
        name = arg[2:].split("=", 1)[0]
        require(name not in RUNNER_SETS, f"{option}: --{name} is set by the runner itself (per seed or arm); "
                "it cannot be overridden here")
        require(name not in one_script, f"{option}: --{name} is set by the configuration for the teacher or the "
                "student alone (bench/configs.py); make a configuration for it instead")
        require(name in both, f"{option}: --{name} is not a setting of both train_teacher.py and train_student.py")


def best_val(stage_dir):
    """(best val_accuracy, its epoch, epochs run) of a stage: the finished stage's
    history.csv, or while it trains (nothing finished yet) the live one in resume/;
    never an abandoned retrain's beside a finished stage."""
    import csv
    live = os.path.join(stage_dir, "resume", "history.csv")
    path = os.path.join(stage_dir, "history.csv") if done(*os.path.split(stage_dir)) else live
    with open(path) as f:
        rows = list(csv.DictReader(f))
    best = max(rows, key=lambda r: float(r["val_accuracy"]))
    return float(best["val_accuracy"]), int(best["epoch"]), len(rows)


def check_record(out, record, ignore=("seeds",)):
    """The runner's record of what `out` holds (out/settings.json): refused, naming each
    difference, when it was made with other settings than `record` (but `ignore`)."""
    path = os.path.join(out, "settings.json")
    if os.path.isfile(path):
        held = read_json(path, f"delete {path} or use another --out")
        older = sorted(set(record) - set(held))
        require(not older, f"{out} was recorded by an earlier bench/effect.py (its record has no "
                f"{', '.join(older)}): finish it with the code that started it (the commit of the clone it ran "
                "from; its effect.py is beside the table), or use another --out")
        differ = differences({k: v for k, v in held.items() if k not in ignore},
                             json.loads(json.dumps({k: v for k, v in record.items() if k not in ignore})))
        require(not differ, f"{out} holds runs made with other settings: {'; '.join(differ)}; use another --out")


def recorded_seeds(out, seeds=()):
    """The seeds `out` holds runs of (its settings.json), with `seeds` added, sorted."""
    path = os.path.join(out, "settings.json")
    held = read_json(path, f"delete {path} or use another --out")["seeds"] if os.path.isfile(path) else []
    return sorted(set(held) | set(seeds))


def write_record(out, record, source):
    """out/settings.json and a copy of the runner's source: only after `check_record`.
    Its seeds are every seed the folder has run, not only this invocation's."""
    record = {**record, "seeds": recorded_seeds(out, record["seeds"])}
    save_json(os.path.join(out, "settings.json"), record)
    with open(source) as f, open(os.path.join(out, os.path.basename(source)), "w") as copy:
        copy.write(f.read())
