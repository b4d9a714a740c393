"""Stage 2 of Noisy Student: pseudo-label unlabeled images with the un-noised teacher.

Reads the teacher in RUN_DIR/teacher/ (model.keras, or model.h5) and the unlabeled pool: by default the unlabeled part
of the training split in RUN_DIR/data/ when the teacher left one, else 800 ImageNet
images per class of CINIC-10 (downloaded once; the article's kind of unlabeled data).
Predicts in large batches with the teacher in inference mode (no dropout, no stochastic
depth, no augmentation), keeps images whose top probability exceeds THRESHOLD, balances
the classes by index, and writes RUN_DIR/pseudo/:

    pool_probs.npy   teacher probabilities for every pool image (float32, n x classes)
    indices.npy      balanced pseudo-labeled images: rows of the pool image file (with repeats)
    targets.npy      their targets: teacher probabilities (soft) or one-hot (hard)
    summary.json     class counts before and after balancing; where the pool is the
                     split's own, the accuracy of the kept and of the balanced labels
    config.json      settings, the pool image file, and what made them

    python pseudo_label.py --run_dir=runs/demo

On several GPUs or machines sharing RUN_DIR, label slices in parallel, then merge:

    python pseudo_label.py --num_shards=4 --shard=0      # ... --shard=3, one per GPU
    python pseudo_label.py --num_shards=4 --shard=-1     # merge, threshold, balance, write
"""
import time

import numpy as np

from noisy import (RunDir, balance_classes, check_labeling_settings, configure, install_error_hook, labeling_summary,
                   one_hot, print_summary, require_some_kept, soften, teacher_probabilities)

# ------------------------------------------------------------------------------ settings
RUN_DIR = "runs/default"  # folder every stage reads from and writes to
UNLABELED = "auto"        # 'auto' = 'split' if NUM_LABELED left a pool, else 'cinic10'; 'split'; 'cinic10'; a folder of images; an .npy
CINIC_PER_CLASS = 800     # CINIC-10's ImageNet images drawn per class with SEED (article: ~800; 0 = all 21,000)
THRESHOLD = 0.75          # keep images whose top teacher probability exceeds this (article: 0.75)
SOFT = True               # True: targets are the teacher's probabilities; False: one-hot of its top class
TEMPERATURE = 1.0         # soft targets: softmax(log p / T), T < 1 sharpens, T > 1 flattens (official teacher_softmax_temp; 1 = as predicted)
PER_CLASS = 0             # 0 = duplicate smaller classes up to the largest (article); K = exactly K per class (paper)
BATCH_SIZE = 1024         # images per prediction batch
WORKERS = 4               # parallel workers reading images
NUM_SHARDS = 1            # split labeling over this many runs (GPUs or machines)
SHARD = -1                # with NUM_SHARDS > 1: the slice this run labels (0..NUM_SHARDS-1); -1 = merge them
SEED = 0                  # the random remainder when duplicating images
RETRAIN = False           # True = label again although RUN_DIR/pseudo holds finished pseudo-labels
# ------------------------------------------------------------------------------
install_error_hook()
settings = configure(globals())
check_labeling_settings(settings)
started = time.time()
run = RunDir(RUN_DIR)
stage = run.stage("pseudo", settings, retrain=RETRAIN, shard=SHARD if NUM_SHARDS > 1 and SHARD >= 0 else None)
split = run.data()
teacher = run.teacher(split)
pool = run.pool(UNLABELED, split, CINIC_PER_CLASS, SEED)  # the unlabeled pool: an image file and the rows to label
stage.begin(split=split, teacher=teacher.run_id, teacher_sha256=teacher.model_sha256,
            pool=pool.identity)  # nothing to do, or refused, before a single prediction

# 1. Predict with the un-noised teacher: predict() runs the model in inference mode.
probs = teacher_probabilities(teacher, pool, BATCH_SIZE, WORKERS, stage, NUM_SHARDS, SHARD)
confidence, classes = probs.max(axis=1), probs.argmax(axis=1)

# 2. Keep the confident ones.
keep = np.flatnonzero(confidence > THRESHOLD)
require_some_kept(keep, confidence, THRESHOLD)

# 3. Balance the classes by index: duplicate the smaller ones (article) or take K per class,
#    and make the targets: the teacher's probabilities (at TEMPERATURE) or one-hot.
balanced = keep[balance_classes(classes[keep], confidence[keep], split.num_classes, PER_CLASS,
                                np.random.default_rng(SEED))]
targets = soften(probs[balanced], TEMPERATURE) if SOFT else one_hot(classes[balanced], split.num_classes)

# 4. Write the stage: its files staged, then moved in with config.json last.
summary = labeling_summary(pool, classes, keep, balanced, split.class_names)
stage.finish({"pool_file": pool.recorded_path, "pool_record": pool.record, "pool_rows": len(pool.rows),
              "data": split.config, "teacher": teacher.config},
             outputs={"pool_probs.npy": probs, "indices.npy": pool.rows[balanced], "targets.npy": targets,
                      "summary.json": summary})
print_summary(summary, THRESHOLD, time.time() - started)
print(f"wrote {stage.dir}/")
