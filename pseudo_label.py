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
import os
import sys
import time

import numpy as np

import noisy

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
noisy.install_error_hook()
settings = noisy.configure(globals())
started = time.time()
noisy.require(0 <= THRESHOLD < 1, f"--threshold={THRESHOLD}: expected a probability in [0, 1)")
noisy.require(PER_CLASS >= 0 and BATCH_SIZE >= 1, "--per_class must be >= 0 and --batch_size >= 1")
noisy.require(TEMPERATURE > 0, f"--temperature={TEMPERATURE}: expected > 0 (--soft=False for one-hot targets)")
noisy.require(NUM_SHARDS >= 1 and -1 <= SHARD < NUM_SHARDS,
              f"--shard={SHARD} --num_shards={NUM_SHARDS}: expected num_shards >= 1 and shard in -1..num_shards-1")
teacher_dir, out_dir = os.path.join(RUN_DIR, "teacher"), os.path.join(RUN_DIR, "pseudo")
shard_dir = os.path.join(out_dir, "shards")
labels_one_shard = NUM_SHARDS > 1 and SHARD >= 0  # writes only its slice, never the stage
if labels_one_shard:
    noisy.lock(shard_dir, f".lock-{SHARD:04d}")  # shard runs go side by side, one per slice
else:
    noisy.lock(out_dir)
teacher_config = noisy.read_config(teacher_dir, "train_teacher.py")
teacher_sha = noisy.check_model_file(teacher_dir, teacher_config, "train_teacher.py")
data_config = teacher_config["data"]
num_classes, image_shape = data_config["num_classes"], tuple(data_config["image_shape"])

# 1. The unlabeled pool: an image file and the rows of it to label, and what identifies it.
data = noisy.load_split(os.path.join(RUN_DIR, "data"))
split = noisy.split_id(os.path.join(RUN_DIR, "data"), data_config)
noisy.require(teacher_config.get("identity", {}).get("inputs", {}).get("split") in (None, split),
              f"{teacher_dir} was trained on another split than {RUN_DIR}/data holds: its labeled images may be "
              "in this pool; retrain the teacher (train_teacher.py --retrain=True) in this run folder")
hidden_labels = None  # the true labels, for diagnostics only, where they are known
source = ("split" if len(data["unlabeled"]) else "cinic10") if UNLABELED == "auto" else UNLABELED
if source == "split":
    noisy.require(len(data["unlabeled"]) > 0, f"--unlabeled=split: {RUN_DIR}/data has no unlabeled images "
                  "(train_teacher.py used all labels: --num_labeled=0); use --unlabeled=cinic10 or a folder")
    pool_file, rows = os.path.abspath(os.path.join(RUN_DIR, "data", "train_images.npy")), data["unlabeled"]
    hidden_labels, pool_id = data["train_labels"][rows], {"split": split}
elif source == "cinic10" or (os.path.isdir(source) and noisy.is_cinic_folder(source)):
    # CINIC-10's ImageNet images only: its other files are CIFAR-10's, test images included.
    pool_file, count, key, folders = noisy.cinic_pool(source, CINIC_PER_CLASS, SEED, os.path.join(RUN_DIR, "pool"),
                                                      image_shape[0])
    pool_file, rows, pool_id = os.path.abspath(pool_file), np.arange(count), {"cinic10": key}
    names = data_config["class_names"]
    if set(folders) <= set(names):  # CINIC's class folders, an ImageNet-derived label per image
        hidden_labels = np.array([names.index(f) for f in folders])
elif os.path.isdir(source):
    pool_file, count, key = noisy.cache_image_folder(source, os.path.join(RUN_DIR, "pool"), image_shape[0])
    pool_file, rows, pool_id = os.path.abspath(pool_file), np.arange(count), {"folder": key}
elif source.endswith(".npy") and os.path.isfile(source):
    pool_file = os.path.abspath(source)
    rows, pool_id = np.arange(len(noisy.NpyRows(pool_file))), noisy.npy_identity(pool_file)
else:
    raise noisy.UserError(f"--unlabeled={UNLABELED!r}: expected 'auto', 'split', 'cinic10', an existing folder "
                          "or an existing .npy file")
pool = noisy.NpyRows(pool_file)  # read by rows on demand: a pool may exceed RAM
noisy.require(pool.dtype == np.uint8 and pool.shape[1:] == image_shape,
              f"{pool_file}: images of shape {pool.shape[1:]} dtype {pool.dtype}; expected uint8 {image_shape}")
noisy.require(len(rows) > 0, f"the unlabeled pool is empty (--unlabeled={source!r}, run_dir {RUN_DIR})")
wanted = noisy.identity(settings, {"split": split, "teacher": teacher_config["run_id"], "teacher_sha256": teacher_sha,
                                   "pool": pool_id}, runtime=("batch_size",))
if not labels_one_shard:
    noisy.check_stage(out_dir, "set of pseudo-labels", wanted, RETRAIN)

# 2. Predict with the un-noised teacher: predict() runs the model in inference mode.
#    With NUM_SHARDS > 1, each run labels one contiguous slice of the pool (on its own GPU
#    or machine) and saves it; a final run with --shard=-1 merges the slices.
shard_id = dict(wanted["inputs"], pool_rows=len(rows))
if NUM_SHARDS > 1 and SHARD == -1:
    probs = noisy.merge_shards(shard_dir, NUM_SHARDS, shard_id)
else:
    part = np.array_split(np.arange(len(rows)), NUM_SHARDS)[max(SHARD, 0)]
    teacher = noisy.load_model(noisy.model_path(teacher_dir, teacher_config), "train_teacher.py")
    print(f"labeling {len(part)} images with the teacher ...", flush=True)
    probs = teacher.predict(noisy.ImageBatches(pool, rows[part], BATCH_SIZE, workers=WORKERS),
                            verbose=1 if sys.stdout.isatty() else 0)  # a progress bar on a terminal
    probs = probs.astype(np.float32)
    if labels_one_shard:
        noisy.save_shard(shard_dir, SHARD, NUM_SHARDS, shard_id, probs)
        print(f"wrote shard {SHARD} of {NUM_SHARDS}; when all are done, run again with --shard=-1 "
              f"--num_shards={NUM_SHARDS} to merge, threshold and balance")
        raise SystemExit(0)
confidence, classes = probs.max(axis=1), probs.argmax(axis=1)

# 3. Keep the confident ones.
keep = np.flatnonzero(confidence > THRESHOLD)
if len(keep) == 0:
    counts, edges = np.histogram(confidence, bins=10, range=(0, 1))
    histogram = ", ".join(f"{lo:.1f}-{hi:.1f}: {n}" for lo, hi, n in zip(edges, edges[1:], counts))
    raise noisy.UserError(f"--threshold={THRESHOLD} keeps none of {len(rows)} images; teacher "
                          f"confidence histogram: {histogram}")

# 4. Balance the classes by index: duplicate the smaller ones (article) or take K per class.
balanced = keep[noisy.balance_classes(classes[keep], confidence[keep], num_classes, PER_CLASS,
                                      np.random.default_rng(SEED))]
targets = noisy.soften(probs[balanced], TEMPERATURE) if SOFT else noisy.one_hot(classes[balanced], num_classes)
repeats = np.bincount(balanced)
if repeats.max() > 5:  # more than a few times: say so
    worst = classes[repeats.argmax()]
    print(f"warning: balancing repeats one image of class {data_config['class_names'][worst]} {repeats.max()} "
          f"times (the class kept {np.sum(classes[keep] == worst)} images, the largest "
          f"{np.bincount(classes[keep]).max()}); the student sees it that often per epoch. A stronger teacher, "
          "a lower --threshold or --per_class=K (fewer per class) repeats less")

noisy.begin_stage(out_dir, "set of pseudo-labels", wanted, RETRAIN)  # every check passed: replace the old ones
summary = {"pool": len(rows), "kept": len(keep), "balanced": len(balanced),
           "kept_per_class": np.bincount(classes[keep], minlength=num_classes).tolist(),
           "balanced_per_class": np.bincount(classes[balanced], minlength=num_classes).tolist()}
if hidden_labels is not None:
    summary["accuracy_kept"] = float((classes[keep] == hidden_labels[keep]).mean())
    summary["accuracy_balanced"] = float((classes[balanced] == hidden_labels[balanced]).mean())  # the student's targets
    summary["accuracy_pool"] = float((classes == hidden_labels).mean())
    summary["labels_from"] = "the split's hidden labels" if source == "split" else "CINIC-10's class folders"
empty = [data_config["class_names"][c] for c in range(num_classes) if summary["kept_per_class"][c] == 0]
if empty:
    print(f"warning: no image of class(es) {', '.join(empty)} passed the threshold")

noisy.save_npy(os.path.join(out_dir, "pool_probs.npy"), probs)
noisy.save_npy(os.path.join(out_dir, "indices.npy"), rows[balanced])
noisy.save_npy(os.path.join(out_dir, "targets.npy"), targets)
noisy.save_json(os.path.join(out_dir, "summary.json"), summary)
noisy.finish_stage(out_dir, dict(
    settings, stage="pseudo", pool_file=noisy.relative_to_run(pool_file, RUN_DIR), pool_rows=len(rows), data=data_config,
    teacher=teacher_config, sources=noisy.source_hashes()), wanted,
    files=("pool_probs.npy", "indices.npy", "targets.npy", "summary.json"))
print(f"kept {len(keep)} of {len(rows)} images above {THRESHOLD}"
      + (f" ({summary['accuracy_kept']:.1%} correct)" if hidden_labels is not None else "")
      + f"; {len(balanced)} after balancing"
      + (f" ({summary['accuracy_balanced']:.1%} correct)" if hidden_labels is not None else "")
      + f"; per class before {summary['kept_per_class']}")
seconds = time.time() - started
print(f"wrote {out_dir}/: {len(rows)} images in {seconds:.1f} s from model load to last file, "
      f"{len(rows) / seconds:.0f} images/s end to end")
