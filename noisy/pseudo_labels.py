"""Pseudo-labels, the method of stage 2: the teacher's probabilities for a pool (in
inference mode; over several GPUs or machines as shards, noisy/shards.py), the confidence
threshold's guard, soft targets at a temperature, class balancing by index, and the
summary of what was kept."""
import os
import sys

import numpy as np

from noisy.errors import UserError
from noisy.shards import merge_shards, save_shard


def teacher_probabilities(teacher, pool, batch_size, workers, stage, num_shards=1, shard=-1):
    """The teacher's probabilities (float32) for every row of `pool`, predicted in
    inference mode (no dropout, no stochastic depth, no augmentation). With `num_shards`
    > 1 a run labels one contiguous slice, saves it beside the stage and exits; `shard` =
    -1 merges the slices instead, refusing missing ones and ones made from other inputs."""
    shard_dir = os.path.join(stage.dir, "shards")
    shard_id = dict(stage.identity["inputs"], pool_rows=len(pool.rows))
    if num_shards > 1 and shard == -1:
        return merge_shards(shard_dir, num_shards, shard_id)
    from noisy.backend import import_keras
    import_keras()  # without TensorFlow's start-up notices
    from noisy.devices import where_it_runs
    from noisy.streams import ImageBatches
    model = teacher.load_model()
    where_it_runs(labeling=model)
    part = np.array_split(np.arange(len(pool.rows)), num_shards)[max(shard, 0)]
    print(f"labeling {len(part)} images with the teacher ...", flush=True)
    probs = model.predict(ImageBatches(pool.images, pool.rows[part], batch_size, workers=workers),
                          verbose=1 if sys.stdout.isatty() else 0).astype(np.float32)  # a bar on a terminal
    if num_shards > 1:
        save_shard(shard_dir, shard, num_shards, shard_id, probs)
        print(f"wrote shard {shard} of {num_shards}; when all are done, run again with --shard=-1 "
              f"--num_shards={num_shards} to merge, threshold and balance")
        raise SystemExit(0)
    return probs


def require_some_kept(keep, confidence, threshold):
    """A threshold that keeps nothing is an error naming the confidence histogram."""
    if len(keep) == 0:
        counts, edges = np.histogram(confidence, bins=10, range=(0, 1))
        histogram = ", ".join(f"{lo:.1f}-{hi:.1f}: {n}" for lo, hi, n in zip(edges, edges[1:], counts))
        raise UserError(f"--threshold={threshold} keeps none of {len(confidence)} images; teacher "
                        f"confidence histogram: {histogram}")


def labeling_summary(pool, classes, keep, balanced, class_names):
    """summary.json: class counts before and after balancing and, where the pool's true
    labels are known, the accuracy of the kept and balanced labels. Warns of classes
    none passed and of images balancing repeats more than a few times."""
    num_classes = len(class_names)
    summary = {"pool": len(pool.rows), "kept": len(keep), "balanced": len(balanced),
               "kept_per_class": np.bincount(classes[keep], minlength=num_classes).tolist(),
               "balanced_per_class": np.bincount(classes[balanced], minlength=num_classes).tolist()}
    if pool.hidden_labels is not None:
        summary["accuracy_kept"] = float((classes[keep] == pool.hidden_labels[keep]).mean())
        summary["accuracy_balanced"] = float((classes[balanced] == pool.hidden_labels[balanced]).mean())
        summary["accuracy_pool"] = float((classes == pool.hidden_labels).mean())
        summary["labels_from"] = pool.labels_from
    repeats = np.bincount(balanced)
    if repeats.max() > 5:
        worst = classes[repeats.argmax()]
        print(f"warning: balancing repeats one image of class {class_names[worst]} {repeats.max()} times (the class "
              f"kept {np.sum(classes[keep] == worst)} images, the largest {np.bincount(classes[keep]).max()}); the "
              "student sees it that often per epoch. A stronger teacher, a lower --threshold or --per_class=K "
              "(fewer per class) repeats less")
    empty = [class_names[c] for c in range(num_classes) if summary["kept_per_class"][c] == 0]
    if empty:
        print(f"warning: no image of class(es) {', '.join(empty)} passed the threshold")
    return summary


def print_summary(summary, threshold, seconds):
    known = "accuracy_kept" in summary
    print(f"kept {summary['kept']} of {summary['pool']} images above {threshold}"
          + (f" ({summary['accuracy_kept']:.1%} correct)" if known else "")
          + f"; {summary['balanced']} after balancing"
          + (f" ({summary['accuracy_balanced']:.1%} correct)" if known else "")
          + f"; per class before {summary['kept_per_class']}")
    print(f"{summary['pool']} images in {seconds:.1f} s from model load to last file, "
          f"{summary['pool'] / seconds:.0f} images/s end to end")


def soften(probs, temperature):
    """Probabilities at a temperature: softmax(log p / T) = p^(1/T), renormalised; T = 1
    returns them unchanged. Computed in log space so that tiny probabilities do not
    underflow at a low temperature."""
    if temperature == 1:
        return probs
    logits = np.log(np.clip(np.asarray(probs, np.float64), 1e-30, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return (scaled / scaled.sum(axis=1, keepdims=True)).astype(np.float32)


def balance_classes(classes, confidence, num_classes, per_class, rng):
    """Positions (into `classes`) giving every class the same count, by index only.

    per_class = 0: duplicate the smaller classes up to the largest (the article);
    per_class = K: K per class, the K most confident where a class has more, duplicates
    where it has fewer (the Noisy Student paper). A class with no image stays empty.
    Duplicates are whole copies plus a random remainder, so no image is repeated more
    than once more than any other image of its class."""
    counts = np.bincount(classes, minlength=num_classes)
    target = per_class or int(counts.max())
    chosen = []
    for c in range(num_classes):
        members = np.flatnonzero(classes == c)
        if len(members) == 0:
            continue
        if len(members) >= target:
            chosen.append(members[np.argsort(-confidence[members], kind="stable")[:target]])
        else:
            copies, extra = divmod(target, len(members))
            chosen.append(np.concatenate([np.tile(members, copies),
                                          rng.choice(members, extra, replace=False)]))
    return np.concatenate(chosen) if chosen else np.zeros(0, np.int64)
