"""Script settings: UPPER_CASE constants at the top of a script, overridable as `--name=value`.

This is nanoGPT's configurator done as a function instead of `exec`: it works from any
folder, parses values with `ast.literal_eval`, accepts an int where a float is expected,
and rejects an unknown name with the list of valid ones.

    EPOCHS = 300  # passes over the training data
    settings = configure(globals())        # reads sys.argv[1:]

`python train_teacher.py --epochs=2 --data=/tmp/cifar10` then sets EPOCHS = 2 and
DATA = '/tmp/cifar10' in the script's namespace (a string needs no quotes).

Each script then checks its settings with one function here (`check_training_settings`,
`check_labeling_settings`, `check_evaluation_settings`), before TensorFlow loads, against
the allowed values below: this module is the one place that says what a setting may be.
"""
import ast
import os
import sys

from noisy.errors import UserError, require
from noisy.plots import PLOTS
from noisy.presets import MODELS
from noisy.randaugment import CUTOUT_OPS, MAX_MAGNITUDE, OPS

# The values each choice may take.
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "constant", "plateau")
AUGMENTS = ("auto", "device", "cpu")  # where the input noise runs (noisy/devices.py)
PRECISIONS = ("", "bfloat16", "float16")  # mixed precision: none, or the policy mixed_<name>
JIT = ("auto", "true", "false")  # XLA: Keras decides, on, off (noisy/training.py compile_model)
LR_RULES = ("auto", "linear", "sqrt", "none")  # the rate under DATA_PARALLEL (noisy/devices.py global_batch_and_rate)
MODEL_FILES = ("model.keras", "model.h5")  # Keras 3's format, and the legacy H5 the article saved
SEVERITIES = (1, 2, 3, 4, 5)  # CIFAR-10-C's corruption severities
# Names a student's folder may not take: the other stages', results.json's keys, evaluate.py's files.
RESERVED = ("data", "teacher", "pseudo", "pool", ".", "..", "students", "test_images", "corruption_images",
            "class_names", "settings", "none", "results.json", "results.md", *PLOTS)


def _parse(name, text, current):
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text  # a bare word or path: keep it as a string
    if isinstance(current, bool):
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        if not isinstance(value, bool):
            raise UserError(f"--{name.lower()} expects True or False, got {text!r}")
    elif isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    elif isinstance(current, str) and not isinstance(value, str):
        value = text  # `--run_dir=2024` is the folder '2024', not the number
    elif current is not None and type(value) is not type(current):
        raise UserError(
            f"--{name.lower()} expects {type(current).__name__} (like {current!r}), got {text!r}")
    return value


def settings_block(path):
    """[(NAME, default as written, comment)] for the lines between a script's two rulers."""
    with open(path) as f:
        lines = f.read().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("# ---") and line.endswith("settings")), None)
    end = None if start is None else next((i for i in range(start + 1, len(lines)) if lines[i].startswith("# ---")), None)
    if end is None:
        raise UserError(f"{path}: no settings block (a '# --- settings' ruler, the settings, a closing '# ---' ruler)")
    rows = []
    for line in lines[start + 1:end]:
        assignment, _, comment = line.partition("  # ")
        name, _, default = assignment.partition("=")
        rows.append((name.strip(), default.strip(), comment.strip()))
    return rows


def settings_help(path):
    """The script's settings block as `--name=default  comment` lines."""
    rows = [(f"--{name.lower()}={default}", comment) for name, default, comment in settings_block(path)]
    width = max(len(option) for option, _ in rows)
    return "\n".join(f"  {option:<{width}}  {comment}" for option, comment in rows)


def configure(namespace, argv=None):
    """Apply `--name=value` arguments to the UPPER_CASE settings in `namespace`.

    `-h` or `--help` prints the script's docstring and settings and exits 0.
    Returns the resolved settings as a dict (lower-case keys) for config.json.
    Raises UserError for an unknown name, a malformed argument or a wrong type.
    """
    argv = sys.argv[1:] if argv is None else argv
    script = namespace.get("__file__")
    if {"-h", "--help"} & set(argv) and script:
        print((namespace.get("__doc__") or "").strip() + "\n\nSettings (edit them at the top of the script, or "
              "override any as --name=value; values are Python literals, a bare word is a string):\n\n"
              + settings_help(script))
        raise SystemExit(0)
    # A script's settings are the names of its settings block, not every UPPER_CASE name it
    # imported; a namespace without a file (a test's) offers all of its UPPER_CASE values.
    block = {name for name, _, _ in settings_block(script)} if script else None
    names = {k: k for k in namespace if k.isupper() and not k.startswith("_") and (block is None or k in block)
             and isinstance(namespace[k], (bool, int, float, str, tuple, list, type(None)))}
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            raise UserError(f"argument {arg!r} is not of the form --name=value")
        key, text = arg[2:].split("=", 1)
        name = key.upper().replace("-", "_")
        if name not in names:
            valid = ", ".join("--" + n.lower() for n in sorted(names))
            raise UserError(f"unknown setting --{key}; valid settings: {valid}")
        namespace[name] = _parse(name, text, namespace[name])
    return {n.lower(): namespace[n] for n in names}


# ------------------------------------------------------------------ each script's checks
def at_least(s, low, *names):
    """(holds, message) for each setting of `names` that must be >= `low`, naming its value."""
    return [(s[name] >= low, f"--{name}={s[name]}: expected >= {low}") for name in names]


def check_run_dir(run_dir):
    """An empty --run_dir would take the current folder for the run folder: refused."""
    require(run_dir.strip(), f"--run_dir={run_dir!r} is empty: name the run folder (say --run_dir=runs/default)")


def check_student_folder(name, run_dir):
    """--student: a new folder of the run folder, not a file there nor a name RESERVED."""
    require(os.sep not in name and name not in RESERVED and not os.path.isfile(os.path.join(run_dir, name)),
            f"--student={name!r}: expected a new folder name for the student, not a file there nor one of "
            f"{', '.join(RESERVED[:4] + RESERVED[6:])}")


def check_training_settings(s, student=False):
    """train_teacher.py's and train_student.py's resolved settings (lower-case names), and
    the student's own (`student`: MODEL = '', "same as the teacher", is allowed)."""
    check_run_dir(s["run_dir"])
    allowed = ("'' or " if student else "") + f"one of {MODELS}"
    checks = [
        (s["model"] in MODELS or (student and s["model"] == ""), f"--model={s['model']!r}: expected {allowed}"),
        (s["optimizer"] in OPTIMIZERS, f"--optimizer={s['optimizer']!r}: expected one of {OPTIMIZERS}"),
        (s["schedule"] in SCHEDULES, f"--schedule={s['schedule']!r}: expected one of {SCHEDULES}"),
        *at_least(s, 1, "epochs", "batch_size", "workers", "checkpoint_every", "steps_per_execution", "patience"),
        *at_least(s, 0, "warmup_epochs", "flat_epochs", *[n for n in ("num_labeled", "num_val") if n in s]),
        (s["lr"] > 0 and s["weight_decay"] >= 0,
         f"--lr must be > 0 and --weight_decay >= 0 (got {s['lr']}, {s['weight_decay']})"),
        (0 <= s["dropout"] < 1 and 0 < s["survival_last"] <= 1,
         "--dropout must be in [0, 1) and --survival_last in (0, 1]"),
        (0 <= s["magnitude"] <= MAX_MAGNITUDE and 0 <= s["num_ops"] <= len(CUTOUT_OPS if s["cutout"] else OPS),
         f"--magnitude must be in [0, {MAX_MAGNITUDE}] and --num_ops in [0, {len(OPS)}] "
         f"([0, {len(CUTOUT_OPS)}] with --cutout=True)"),
        (0 <= s["ema"] < 1 and 0 <= s["label_smoothing"] < 1,
         f"--ema and --label_smoothing must be in [0, 1) (got {s['ema']}, {s['label_smoothing']})"),
        (s["augment"] in AUGMENTS, f"--augment={s['augment']!r}: expected one of {AUGMENTS}"),
        (s["model_file"] in MODEL_FILES, f"--model_file={s['model_file']!r}: expected one of {MODEL_FILES}"),
        (s["mixed_precision"] in PRECISIONS, f"--mixed_precision={s['mixed_precision']!r}: expected one of {PRECISIONS}"),
        (str(s["jit_compile"]).lower() in JIT, f"--jit_compile={s['jit_compile']!r}: expected 'auto', 'true' or 'false'"),
        (s["lr_scaling"] in LR_RULES, f"--lr_scaling={s['lr_scaling']!r}: expected one of {LR_RULES}"),
        (0 <= s["seed"] < 2 ** 32, f"--seed={s['seed']}: expected an integer in [0, 2**32)"),
    ]
    if student:
        checks += [
            (s["labeled_copies"] >= 1, f"--labeled_copies={s['labeled_copies']}: expected an integer >= 1"),
            (s["unlabeled_ratio"] >= 0 and (s["unlabeled_ratio"] == 0 or s["labeled_copies"] == 1),
             f"--unlabeled_ratio={s['unlabeled_ratio']}: expected >= 0, and --labeled_copies=1 with a ratio (the "
             "ratio sets the labeled share of every batch)")]
    for ok, message in checks:
        require(ok, message)
    if student:
        check_student_folder(s["student"], s["run_dir"])


def check_labeling_settings(s):
    """pseudo_label.py's settings (lower-case names)."""
    check_run_dir(s["run_dir"])
    require(0 <= s["threshold"] < 1, f"--threshold={s['threshold']}: expected a probability in [0, 1)")
    for ok, message in [*at_least(s, 0, "per_class", "cinic_per_class"), *at_least(s, 1, "batch_size", "workers")]:
        require(ok, message)
    require(s["temperature"] > 0, f"--temperature={s['temperature']}: expected > 0 (--soft=False for one-hot targets)")
    require(s["num_shards"] >= 1 and -1 <= s["shard"] < s["num_shards"],
            f"--shard={s['shard']} --num_shards={s['num_shards']}: expected num_shards >= 1 and shard in "
            "-1..num_shards-1")
    require(0 <= s["seed"] < 2 ** 32, f"--seed={s['seed']}: expected an integer in [0, 2**32)")


def check_evaluation_settings(s):
    """evaluate.py's settings (lower-case names)."""
    check_run_dir(s["run_dir"])
    for ok, message in [*at_least(s, 1, "batch_size", "ece_bins"), *at_least(s, 0, "corruption_images")]:
        require(ok, message)
    require(all(v in SEVERITIES for v in s["severities"]), f"--severities={s['severities']}: expected values in 1..5")
    names = [name.strip() for name in s["students"].split(",") if name.strip()]
    require(s["students"] in ("all", "none") or names and len(set(names)) == len(names)
            and not any(os.sep in name or name in RESERVED for name in names), f"--students={s['students']!r}: "
            "expected 'all', 'none' or a comma-separated list of distinct student folder names")
