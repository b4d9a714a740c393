"""Pseudo-labeling split over several GPUs or machines: each run saves its slice of the
pool's teacher probabilities with what it was made from (`save_shard`), and the merging
run joins them, refusing missing slices and slices made from other inputs (`merge_shards`)."""
import os

import numpy as np

from noisy.arrays import load_npy
from noisy.errors import UserError
from noisy.files import read_json, save_json, save_npy, sha256


def save_shard(shard_dir, shard, num_shards, pool_id, probs):
    """Save one slice of the pool's teacher probabilities with what it was made from."""
    stem = os.path.join(shard_dir, f"probs-{shard:04d}-of-{num_shards:04d}")
    save_npy(stem + ".npy", probs)
    save_json(stem + ".json", dict(pool_id, shard=shard, rows=len(probs), sha256=sha256(stem + ".npy")))


def merge_shards(shard_dir, num_shards, pool_id):
    """Join the slices saved by `save_shard`, refusing missing ones and slices made by
    another teacher or from another pool, and slices changed since they were written."""
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
        if sha256(stem + ".npy") != meta.get("sha256"):  # read whole anyway: hashed, not dated
            raise UserError(f"{stem}.npy is not the file pseudo_label.py --num_shards={num_shards} --shard={shard} "
                            f"wrote (its sha256 differs from the one {os.path.basename(stem)}.json records); label "
                            f"shard {shard} again")
        parts.append(load_npy(stem + ".npy", mmap=False))
    if missing:
        raise UserError(f"{shard_dir}: shard(s) {', '.join(missing)} of {num_shards} not labeled yet; "
                        f"run pseudo_label.py --num_shards={num_shards} --shard=N for each")
    probs = np.concatenate(parts)
    if len(probs) != pool_id["pool_rows"]:
        raise UserError(f"{shard_dir}: shards hold {len(probs)} rows, the pool {pool_id['pool_rows']}")
    if not (probs.ndim == 2 and np.isfinite(probs).all() and (probs >= 0).all()
            and np.allclose(probs.sum(axis=1), 1, atol=1e-3)):
        raise UserError(f"{shard_dir}: the shards hold rows that are not probabilities; label them again")
    return probs
