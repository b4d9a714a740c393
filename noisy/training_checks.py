"""The training scripts' settings checked before TensorFlow loads: the values each choice
may take and the ranges of the numbers (train_teacher.py, train_student.py). Keras-free,
like the modules it takes the choices from, so a bad setting answers in a second."""
from noisy.errors import UserError
from noisy.presets import MODELS
from noisy.randaugment import CUTOUT_OPS, MAX_MAGNITUDE, OPS
from noisy.stages import MODEL_FILES

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "constant", "plateau")
AUGMENTS = ("auto", "device", "cpu")  # where the input noise runs (noisy/devices.py)
PRECISIONS = ("", "bfloat16", "float16")  # mixed precision: none, or the policy mixed_<name>
JIT = ("auto", "true", "false")  # XLA: Keras decides, on, off (noisy/training.py compile_model)
LR_RULES = ("auto", "linear", "sqrt", "none")  # the rate under DATA_PARALLEL (noisy/devices.py global_batch_and_rate)


def check_training_settings(s, student=False):
    """Range checks shared by train_teacher.py and train_student.py, on their resolved
    settings dict (lower-case names), and the student's own (`student`: MODEL = '', "same
    as the teacher", is allowed); raises UserError naming the setting."""
    allowed = ("'' or " if student else "") + f"one of {MODELS}"
    checks = [
        (s["model"] in MODELS or (student and s["model"] == ""), f"--model={s['model']!r}: expected {allowed}"),
        (s["optimizer"] in OPTIMIZERS, f"--optimizer={s['optimizer']!r}: expected one of {OPTIMIZERS}"),
        (s["schedule"] in SCHEDULES, f"--schedule={s['schedule']!r}: expected one of {SCHEDULES}"),
        (s["epochs"] >= 1 and s["batch_size"] >= 1 and s["workers"] >= 1 and s["checkpoint_every"] >= 1
         and s["steps_per_execution"] >= 1,
         "--epochs, --batch_size, --workers, --checkpoint_every and --steps_per_execution must be >= 1"),
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
        (s["warmup_epochs"] >= 0 and s["flat_epochs"] >= 0 and s["patience"] >= 1,
         "--warmup_epochs and --flat_epochs must be >= 0 and --patience >= 1"),
        (s["mixed_precision"] in PRECISIONS, f"--mixed_precision={s['mixed_precision']!r}: expected one of {PRECISIONS}"),
        (str(s["jit_compile"]).lower() in JIT, f"--jit_compile={s['jit_compile']!r}: expected 'auto', 'true' or 'false'"),
        (s["lr_scaling"] in LR_RULES, f"--lr_scaling={s['lr_scaling']!r}: expected one of {LR_RULES}"),
        (0 <= s["seed"] < 2 ** 32, f"--seed={s['seed']}: expected an integer in [0, 2**32)"),
        (s.get("num_labeled", 0) >= 0 and s.get("num_val", 0) >= 0, "--num_labeled and --num_val must be >= 0"),
    ]
    if student:
        checks += [
            (s["labeled_copies"] >= 1, f"--labeled_copies={s['labeled_copies']}: expected an integer >= 1"),
            (s["unlabeled_ratio"] >= 0 and (s["unlabeled_ratio"] == 0 or s["labeled_copies"] == 1),
             f"--unlabeled_ratio={s['unlabeled_ratio']}: expected >= 0, and --labeled_copies=1 with a ratio (the "
             "ratio sets the labeled share of every batch)")]
    for ok, message in checks:
        if not ok:
            raise UserError(message)
