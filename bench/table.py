"""The experiment's table: per arm (bench/arms.py) test accuracy, mean +- std over seeds,
the differences between arms, calibration, accuracy under corruption, and the
pseudo-labels of each round, from the run folders that have finished (a partial table
says what is missing). bench/effect.py writes it after every phase, and on its own with
--table_only=True.
"""
import json
import os
import sys

import numpy as np

from bench.arms import ARMS, EVALUATE_ARGS, GAINS, ROUNDS, seed_dir
from bench.ledger import RESTS_ON, vouched, vouched_results
from bench.runner import evaluated
from noisy.errors import UserError
from noisy.files import save_json, save_text
from noisy.rundir import RunDir


def collect(out, seed):
    """Per-arm test accuracy (None for an arm not evaluated yet, or evaluated otherwise
    than the runner does, or before its models were made again, or resting on a stage
    the runner has not run or checked under the folder's record: bench/ledger.py) and
    per-round pseudo-label stats (rounds not labeled yet, or not so, left out) of one seed."""
    root = seed_dir(out, seed)  # only the runner's own scores of the models there now (bench/runner.py)
    result = {f: load(os.path.join(root, f)) for f in {arm.folder for arm in ARMS.values()}
              if evaluated(os.path.join(root, f), EVALUATE_ARGS[f]) and vouched_results(out, os.path.join(root, f))}
    scores = {n: result.get(arm.folder, {}).get(arm.model) if vouched(out, os.path.join(root, arm.folder),
                                                                      RESTS_ON[arm.model]) else None
              for n, arm in ARMS.items()}  # None: not evaluated
    accuracy = {arm: None if s is None else s["accuracy"] for arm, s in scores.items()}
    # calibration of every arm; robustness of arms 2 and 4 (the only ones scored under corruption)
    ece = {arm: None if s is None else s.get("ece") for arm, s in scores.items()}
    corrupted = {arm: None if s is None else unseen_corruption_mean(s) for arm, s in scores.items()}
    pseudo = {}
    for label, name in ROUNDS.items():
        run_dir = os.path.join(root, name)
        if not vouched(out, run_dir, RESTS_ON["pseudo"]):
            continue
        try:  # the labeling of the teacher there now, its summary as pseudo_label.py wrote it
            run = RunDir(run_dir)
            pseudo[label] = run.pseudo(run.teacher(), pool=False).json("summary.json")
        except UserError:
            continue
        if "accuracy_kept" in pseudo[label] and "accuracy_balanced" not in pseudo[label]:
            # the split's own pool, labeled before pseudo_label.py recorded this: compute it here
            pseudo[label]["accuracy_balanced"] = balanced_accuracy(run_dir)
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


def write_table(out, config, results, seconds, command=None, settings=None, origin=None):
    """effect.md / effect.json / effect.png from what has finished; an arm or round some
    seeds lack is averaged over the others, and the table says over which. `origin`: the
    line that says where the table comes from, where it is not a run of `command`."""
    seeds = sorted(results)
    missing = [f"arm {arm} seed {s}" for arm in ARMS for s in seeds if results[s]["accuracy"][arm] is None]
    command = command or "python bench/effect.py " + " ".join(sys.argv[1:])
    if origin:  # a table put together from others: they say how each seed was run
        heading = [origin + "  ", f"Seeds: {', '.join(map(str, seeds))}."]
    else:
        heading = [(f"Command: `{command}`  " if seconds is not None else
                    f"Table rewritten by `{command}` from the folder's record (settings.json: its configuration "
                    "and seeds); the command line's other settings play no part  "),
                   f"Seeds: {', '.join(map(str, seeds))}. "
                   + ("Wall time: not measured (--table_only). " if seconds is None else
                      f"Wall time of this invocation: {seconds / 60:.0f} min (stages an earlier invocation "
                      "finished are not in it). ")
                   + "Stage times: the '# exit code ... after N s' lines of each run folder's log-*.txt, one per "
                   "invocation (a stage already finished exits in seconds). "
                   f"Machine: {os.cpu_count()} CPU cores, {sys.platform}, Python {sys.version.split()[0]}."]
    lines = [f"# Noisy Student effect: config '{config}'", "", *heading, ""]
    if missing:
        lines += ["**Partial table**: no runner's score of the models there now (not finished yet, a stage "
                  "made again since, or one the runner has not run or checked under this folder's record: "
                  f"rerun the runner, whose finished stages take seconds) for {', '.join(missing)}.", ""]
    lines += ["| arm | what | test accuracy % (mean ± std) | " + " | ".join(f"seed {s}" for s in seeds) + " |",
              "|---|---|---|" + "---|" * len(seeds)]
    for arm, (what, _, _) in ARMS.items():
        values = [results[s]["accuracy"][arm] for s in seeds]
        lines.append(f"| {arm} | {what} | {mean_std([v for v in values if v is not None])} | "
                     + " | ".join("-" if v is None else f"{v:.2%}" for v in values) + " |")
    lines += ["", "| difference | points (mean ± std over seeds) | seeds |", "|---|---|---|"]
    for name, (x, y) in GAINS.items():
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
    save_text(os.path.join(out, "effect.md"), text)
    save_json(os.path.join(out, "effect.json"), {"config": config, "settings": settings, "seeds": seeds,
                                                 "results": results, "wall_seconds": seconds, "missing": missing})
    plot(out, config, results, seeds)
    print(text)


def plot(out, config, results, seeds):
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
    ax.set_xticks(range(len(arms)), [f"{a}: {ARMS[a].what}" + (f" ({len(values[a])} of {len(seeds)} seeds)"
                                                          if len(values[a]) < len(seeds) else "") for a in arms],
                  rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy % (mean ± std)")
    ax.set_title(f"Noisy Student arms, config '{config}', seeds {', '.join(map(str, seeds))}")
    ax.set_ylim(min(means) - 10, max(means) + 5)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "effect.png"), dpi=120)
