"""Pseudo-labeling's pieces: soft targets at a temperature, class balancing by index, and
the shards of a labeling split over several GPUs or machines (saved with what made them,
merged after checking)."""
import os

import numpy as np

from noisy.artifacts import load_npy, read_json, save_json, save_npy
from noisy.settings import UserError


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


def save_shard(shard_dir, shard, num_shards, pool_id, probs):
    """Save one slice of the pool's teacher probabilities with what it was made from."""
    stem = os.path.join(shard_dir, f"probs-{shard:04d}-of-{num_shards:04d}")
    save_npy(stem + ".npy", probs)
    save_json(stem + ".json", dict(pool_id, shard=shard, rows=len(probs)))


def merge_shards(shard_dir, num_shards, pool_id):
    """Join the slices saved by `save_shard`, refusing missing ones and slices made by
    another teacher or from another pool."""
    parts, missing = [], []
    for shard in range(num_shards):
        stem = os.path.join(shard_dir, f"probs-{shard:04d}-of-{num_shards:04d}")
        if not (os.path.isfile(stem + ".json") and os.path.isfile(stem + ".npy")):
            missing.append(str(shard))
            continue
        meta = read_json(stem + ".json", f"label shard {shard} again")
        stale = [k for k in pool_id if meta.get(k) != pool_id[k]]
        if stale:
            raise UserError(f"{stem}.json was made with another {', '.join(stale)}; label shard {shard} again")
        parts.append(load_npy(stem + ".npy", mmap=False))
    if missing:
        raise UserError(f"{shard_dir}: shard(s) {', '.join(missing)} of {num_shards} not labeled yet; "
                        f"run pseudo_label.py --num_shards={num_shards} --shard=N for each")
    probs = np.concatenate(parts)
    if len(probs) != pool_id["pool_rows"]:
        raise UserError(f"{shard_dir}: shards hold {len(probs)} rows, the pool {pool_id['pool_rows']}")
    return probs
