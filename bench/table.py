"""The experiment's table (bench/effect.py): per arm, test accuracy mean ± std over seeds,
the differences between arms, calibration, accuracy under corruption, and the
pseudo-labels of each round, read from the run folders' results.json.

An arm is counted where its run folder's stages are finished and hang together by run id
(the pseudo-labels and the student made from the teacher there now, the student from
those pseudo-labels) and its results.json scores those models with the runner's
evaluate.py settings; anything else is left out and named (a "partial" table). Each
stage script checks its own settings and inputs when the runner runs it: run ids are
all the table needs.

Tables of seeds run in separate folders merge into the table over all their seeds:

    python bench/table.py --out=docs/results-cpu-24 \\
        --tables="('docs/results-cpu-24/seed0/effect.json','docs/results-cpu-24/seed1/effect.json')"
"""
import ast
import collections
import json
import os
import shlex
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from noisy.errors import install_error_hook, require  # noqa: E402
from noisy.settings import configure, settings_block  # noqa: E402

# ------------------------------------------------------------------------------ settings
TABLES = ()   # effect.json files bench/effect.py wrote, of one configuration and distinct seeds
OUT = ""      # the folder for the merged effect.md / effect.json / effect.png
# ------------------------------------------------------------------------------

# The arms, and where each lives in OUT/seed<N>/: A trains teacher 1 (no noise) and its
# student, B teacher 2 (noise) and its student, C the un-noised student of teacher 2 (B's
# data, teacher and pseudo-labels by links), D the second round (B's student as teacher).
Arm = collections.namedtuple("Arm", "what folder model")
ARMS = {
    1: Arm("teacher, no noise", "A-teacher-plain", "teacher"),      # the article's experiment 1
    2: Arm("teacher, noise", "B-teacher-noised", "teacher"),        # experiment 2; the supervised baseline
    3: Arm("student of 1, noise", "A-teacher-plain", "student"),
    4: Arm("student of 2, noise", "B-teacher-noised", "student"),   # the method
    5: Arm("student of 2, no noise", "C-student-plain", "student"),  # the paper's ablation
    6: Arm("round 2: student of 4, noise", "D-round2", "student"),
}
ROUNDS = {"round 1, teacher 1": "A-teacher-plain", "round 1, teacher 2": "B-teacher-noised",
          "round 2, teacher 4": "D-round2"}  # the folders that label
# evaluate.py's arguments per folder: corruptions for arms 2 and 4 only (they take minutes).
EVALUATE_ARGS = {"A-teacher-plain": ["--severities=()"], "B-teacher-noised": [],
                 "C-student-plain": ["--severities=()"], "D-round2": ["--severities=()"]}
GAINS = {"4 - 2 (student over its noised teacher)": (4, 2), "3 - 1 (student over its plain teacher)": (3, 1),
         "4 - 5 (noise in the student)": (4, 5), "6 - 4 (second round)": (6, 4)}
# CIFAR-10-C corruptions a RandAugment op resembles (Contrast, Brightness): left out of the
# robustness comparison, which must not score what the models were trained on.
TRAINED_ON = ("contrast", "brightness")


def folder(out, seed, arm):
    """The run folder that holds `arm` for `seed`."""
    return os.path.join(out, f"seed{seed}", ARMS[arm].folder)


def read(path):
    """A JSON file, or None where there is none (or it is unreadable: not a finished record)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def finished(stage_dir):
    """A finished stage's config.json (its run id and the run ids it was made from), or None."""
    config = read(os.path.join(stage_dir, "config.json"))
    return config if isinstance(config, dict) and config.get("complete") is True else None


def lineage(run_dir, upto="student"):
    """{stage: run id} of run_dir's teacher, pseudo-labels and (upto="student") student,
    where each is finished and made from the ones before it (by run id); else None."""
    stages = ("teacher", "pseudo", "student")[:("teacher", "pseudo", "student").index(upto) + 1]
    configs = {stage: finished(os.path.join(run_dir, stage)) for stage in stages}
    if None in configs.values():
        return None
    ids = {stage: config["run_id"] for stage, config in configs.items()}
    made_from = all((configs[stage].get(before) or {}).get("run_id") == ids[before]
                    for i, stage in enumerate(stages) for before in stages[:i])
    return ids if made_from else None


def evaluation_settings(args):
    """evaluate.py's settings as results.json stores them: its defaults, then `args`."""
    values = {name.lower(): ast.literal_eval(default)
              for name, default, _ in settings_block(os.path.join(REPO, "evaluate.py"))}
    for arg in args:
        name, text = arg[2:].split("=", 1)
        values[name] = ast.literal_eval(text)
    values.pop("run_dir")
    return json.loads(json.dumps(values))


def scores(run_dir):
    """run_dir's results.json where it scores the teacher and student there now (by run id,
    their lineage intact) with the runner's evaluate.py settings; else None."""
    results, ids = read(os.path.join(run_dir, "results.json")), lineage(run_dir)
    if not isinstance(results, dict) or ids is None:
        return None
    if any((results.get(stage) or {}).get("run_id") != ids[stage] for stage in ("teacher", "student")):
        return None
    settings = {k: v for k, v in (results.get("settings") or {}).items() if k != "run_dir"}
    return results if settings == evaluation_settings(EVALUATE_ARGS[os.path.basename(run_dir)]) else None


def collect(out, seed):
    """One seed's accuracy, calibration and accuracy under corruption per arm (None where
    the arm is not scored as `scores` requires) and pseudo-label counts per round."""
    scored = {name: scores(os.path.join(out, f"seed{seed}", name)) for name in EVALUATE_ARGS}
    models = {n: (scored[arm.folder] or {}).get(arm.model) for n, arm in ARMS.items()}
    pseudo = {}
    for label, name in ROUNDS.items():
        run_dir = os.path.join(out, f"seed{seed}", name)
        summary = read(os.path.join(run_dir, "pseudo", "summary.json")) if lineage(run_dir, "pseudo") else None
        if summary:
            pseudo[label] = summary
    return {"accuracy": {n: m and m["accuracy"] for n, m in models.items()},
            "ece": {n: m and m.get("ece") for n, m in models.items()},
            "corrupted": {n: m and unseen_corruption_mean(m) for n, m in models.items()}, "pseudo": pseudo}


def unseen_corruption_mean(scores):
    """Mean accuracy over the scored corruptions (all severities) but TRAINED_ON, or None."""
    values = [v for name, per in (scores.get("corruption_accuracy") or {}).items() if name not in TRAINED_ON
              for v in per.values()]
    return float(np.mean(values)) if values else None


def mean_std(values, scale=100, digits=2):
    """'mean ± std' (std over seeds, ddof 1), one value marked as such; '-' for none."""
    values = np.asarray(values, float) * scale
    if len(values) == 0:
        return "-"
    one = f"{values.mean():.{digits}f}"
    return one + " (one seed)" if len(values) == 1 else one + f" ± {values.std(ddof=1):.{digits}f}"


def write_table(out, config, results, heading, settings=None, seconds=None):
    """OUT/effect.md, effect.json and effect.png of `results` ({seed: collect(...)}); an
    arm or round some seeds lack is averaged over the others, and the table says which."""
    seeds = sorted(results)
    acc = {s: results[s]["accuracy"] for s in seeds}
    missing = [f"arm {arm} seed {s}" for arm in ARMS for s in seeds if acc[s][arm] is None]
    lines = [f"# Noisy Student effect: config '{config}'", "", heading + "  ",
             f"Seeds: {', '.join(map(str, seeds))}. Machine: {os.cpu_count()} CPU cores, {sys.platform}. Stage "
             "times: the '# exit code ... after N s' lines of each run folder's log-*.txt.", ""]
    if missing:
        lines += [f"**Partial table**: not finished yet, or not scored by the runner's evaluate.py from the models "
                  f"there now (rerun the runner): {', '.join(missing)}.", ""]
    lines += ["| arm | what | test accuracy % (mean ± std) | " + " | ".join(f"seed {s}" for s in seeds) + " |",
              "|---|---|---|" + "---|" * len(seeds)]
    for arm, (what, _, _) in ARMS.items():
        values = [acc[s][arm] for s in seeds]
        lines.append(f"| {arm} | {what} | {mean_std([v for v in values if v is not None])} | "
                     + " | ".join("-" if v is None else f"{v:.2%}" for v in values) + " |")
    lines += ["", "| difference | points (mean ± std over seeds) | seeds |", "|---|---|---|"]
    for name, (x, y) in GAINS.items():
        both = [s for s in seeds if acc[s][x] is not None and acc[s][y] is not None]
        lines.append(f"| {name} | {mean_std([acc[s][x] - acc[s][y] for s in both])} | "
                     f"{', '.join(map(str, both)) or '-'} |")
    lines += ["", "| arm | expected calibration error (mean ± std) | mean accuracy under corruption % (mean ± std; "
              f"all scored but {' and '.join(TRAINED_ON)}) | seeds |", "|---|---|---|---|"]
    for arm in ARMS:
        have = [s for s in seeds if results[s]["ece"][arm] is not None]
        scored = [results[s]["corrupted"][arm] for s in have if results[s]["corrupted"][arm] is not None]
        if have:
            lines.append(f"| {arm} | {mean_std([results[s]['ece'][arm] for s in have], 1, 3)} | "
                         f"{mean_std(scored) if scored else 'not scored'} | {', '.join(map(str, have))} |")
    robust = [s for s in seeds if all(results[s]["corrupted"][a] is not None for a in (2, 4))]
    if robust:
        clean = 100 * np.mean([acc[s][4] - acc[s][2] for s in robust])
        under = 100 * np.mean([results[s]["corrupted"][4] - results[s]["corrupted"][2] for s in robust])
        ratio = f"; {under / clean:.2f} of the clean gain" if clean >= 0.5 else ""  # not of a tiny gain
        lines += ["", f"Arm 4 - arm 2 under corruption: {under:+.2f} points, clean {clean:+.2f} (mean over seeds "
                  f"{', '.join(map(str, robust))}{ratio})."]
    lines += ["", "| round | pseudo-labels kept (mean) | correct among kept % (mean ± std) | after balancing (mean) "
              "| correct after balancing % (mean ± std) | seeds |", "|---|---|---|---|---|---|"]
    for label in ROUNDS:
        stats = [results[s]["pseudo"][label] for s in seeds if label in results[s]["pseudo"]]
        if stats:
            correct = [mean_std([p[k] for p in stats]) if k in stats[0] else "n/a"
                       for k in ("accuracy_kept", "accuracy_balanced")]
            lines.append(f"| {label} | {np.mean([p['kept'] for p in stats]):.0f} | {correct[0]} | "
                         f"{np.mean([p['balanced'] for p in stats]):.0f} | {correct[1]} | "
                         f"{', '.join(str(s) for s in seeds if label in results[s]['pseudo'])} |")
    text = "\n".join(lines) + "\n"
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "effect.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out, "effect.json"), "w") as f:
        json.dump({"config": config, "settings": settings, "seeds": seeds, "results": results,
                   "wall_seconds": seconds, "missing": missing}, f, indent=1)
    plot(out, config, acc, seeds)
    print(text)


def plot(out, config, acc, seeds):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return print("warning: matplotlib is not installed, so effect.png was not drawn")
    values = {a: [acc[s][a] * 100 for s in seeds if acc[s][a] is not None] for a in ARMS}
    arms = [a for a in ARMS if values[a]]  # a partial table draws the arms it has
    if not arms:
        return
    means = [np.mean(values[a]) for a in arms]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(range(len(arms)), means, yerr=[np.std(values[a], ddof=1) if len(values[a]) > 1 else 0 for a in arms],
           capsize=4, color=[["#999", "#666", "#7ab", "#39c", "#c93", "#36a"][a - 1] for a in arms])
    ax.set_xticks(range(len(arms)), [f"{a}: {ARMS[a].what}" + (f" ({len(values[a])} of {len(seeds)} seeds)"
                                                          if len(values[a]) < len(seeds) else "") for a in arms],
                  rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy % (mean ± std)")
    ax.set_title(f"Noisy Student arms, config '{config}', seeds {', '.join(map(str, seeds))}")
    ax.set_ylim(min(means) - 10, max(means) + 5)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "effect.png"), dpi=120)
    plt.close(fig)


def merge(paths):
    """(config, settings, {seed: results}) of effect.json files of one configuration and
    distinct seeds; refused in one line otherwise."""
    config = settings = None
    results = {}
    for path in paths:
        table = read(path)
        require(isinstance(table, dict) and {"config", "settings", "results"} <= set(table),
                f"{path}: not an effect.json of bench/effect.py")
        require(config is None or (table["config"], table["settings"]) == (config, settings),
                f"{path} is of config {table['config']!r} or other settings than {paths[0]}: a table is of one "
                "configuration")
        config, settings = table["config"], table["settings"]
        for seed, result in table["results"].items():  # JSON keeps keys as strings
            require(int(seed) not in results, f"{path}: seed {seed} is also in another of --tables; name it once")
            results[int(seed)] = {k: {int(a): v for a, v in value.items()} if k != "pseudo" else value
                                  for k, value in result.items()}
    return config, settings, results


if __name__ == "__main__":
    install_error_hook()
    configure(globals())
    require(OUT and TABLES, "--out and --tables name the merged table's folder and the effect.json files to merge")
    config, settings, results = merge(list(TABLES))
    write_table(OUT, config, results, f"Merged by `python bench/table.py {shlex.join(sys.argv[1:])}` from "
                f"{', '.join(f'`{t}`' for t in TABLES)}: each names the command and machine of its seeds.", settings)
