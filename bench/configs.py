"""The runner's configurations (bench/effect.py, bench/student_sweep.py): each the
arguments of every stage, and a student's budget. `resolve` applies a run's overrides.
docs/RESULTS.md says how each was chosen; nothing was selected on the test set."""

CONFIGS = {
    # teacher: train_teacher.py only; train: both training scripts; student: train_student.py
    # only; student_images: a student's budget of images seen (its epochs follow from its
    # data size), or student_epochs: a fixed number of epochs.
    "cpu": dict(  # teachers 80 epochs since issue #24 (40 before: docs/RESULTS.md, "the teacher's budget")
        teacher=["--num_labeled=4000", "--num_val=2000", "--model=resnet9_w16", "--epochs=80",
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
