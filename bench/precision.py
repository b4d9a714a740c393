"""Does mixed bfloat16 train faster than float32 on this CPU? Training images/s of one
model at one batch size on synthetic 32x32 images, with plain SGD, under the global dtype
policy 'float32' and then 'mixed_bfloat16' (issue #18).

The policy is global to a process, so each measurement runs in its own subprocess (this
script again with --policy=...); the two policies alternate for ROUNDS rounds in one run,
each timing STEPS training steps after WARMUP untimed ones (tracing and the first
steps), and the run ends with the mean ratio bfloat16 / float32.

    python bench/precision.py                      # resnet9_w16, batch 128, 3 rounds
    python bench/precision.py --model=tiny --steps=20

Result on this repository's 2-core Xeon: docs/precision-cpu.txt. A ratio above 1 means
bfloat16 is faster; on a CPU without native bfloat16 matrix units expect below 1.
"""
import os
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.synthetic_run import synthetic_images  # noqa: E402
from noisy.settings import configure  # noqa: E402
from noisy.errors import install_error_hook, require  # noqa: E402

# ------------------------------------------------------------------------------ settings
MODEL = "resnet9_w16"     # preset of noisy.build_resnet
BATCH_SIZE = 128          # images per step
WARMUP = 3                # untimed steps per measurement (the first traces the step)
STEPS = 10                # timed steps per measurement
ROUNDS = 3                # float32 then mixed_bfloat16, this many times
POLICY = ""               # '' = run the comparison; 'float32' / 'mixed_bfloat16' = one measurement
# ------------------------------------------------------------------------------
POLICIES = ("float32", "mixed_bfloat16")


def measure():
    """Images/s of STEPS training steps under POLICY, printed as 'images/s <value>'."""
    import keras
    import noisy
    keras.config.set_dtype_policy(POLICY)
    keras.utils.set_random_seed(0)
    images, labels = synthetic_images(BATCH_SIZE, seed=0)
    x = images.astype("float32") / 255.0
    y = noisy.one_hot(labels, 10)
    model = noisy.build_resnet(MODEL, 10, (32, 32, 3))
    noisy.compile_model(model, keras.optimizers.SGD(0.01, momentum=0.9))
    for _ in range(WARMUP):
        model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(STEPS):
        loss = model.train_on_batch(x, y)
    seconds = time.perf_counter() - start
    conv = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    print(f"images/s {STEPS * BATCH_SIZE / seconds:.1f} loss {float(np.ravel(loss)[0]):.3f} "
          f"conv compute dtype {conv.compute_dtype}, variables {conv.kernel.dtype}")


def run(policy):
    args = [f"--{name.lower()}={value}" for name, value in
            (("MODEL", MODEL), ("BATCH_SIZE", BATCH_SIZE), ("WARMUP", WARMUP), ("STEPS", STEPS))]
    result = subprocess.run([sys.executable, os.path.abspath(__file__), *args, f"--policy={policy}"],
                            capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    lines = [line for line in result.stdout.splitlines() if line.startswith("images/s ")]
    if result.returncode or not lines:
        raise SystemExit(f"the {policy} run failed:\n{result.stdout}\n{result.stderr}")
    return float(lines[-1].split()[1]), lines[-1]


if __name__ == "__main__":
    install_error_hook()
    configure(globals())
    require(POLICY in ("",) + POLICIES, f"--policy={POLICY!r}: expected '' or one of {POLICIES}")
    require(min(BATCH_SIZE, STEPS, ROUNDS) >= 1 and WARMUP >= 1, "--batch_size, --steps, --rounds, --warmup >= 1")
    if POLICY:
        measure()
        sys.exit(0)
    speeds = {policy: [] for policy in POLICIES}
    for r in range(ROUNDS):
        for policy in POLICIES:
            value, line = run(policy)
            speeds[policy].append(value)
            print(f"round {r + 1} {policy:15s} {line}", flush=True)
    import keras
    print(f"model {MODEL}, batch {BATCH_SIZE}, SGD, synthetic 32x32 images, {WARMUP} warm-up + {STEPS} timed "
          f"steps per run, {ROUNDS} rounds; keras {keras.__version__} backend {keras.backend.backend()}, "
          f"{os.cpu_count()} cores")
    for policy in POLICIES:
        print(f"{policy:15s} {np.mean(speeds[policy]):8.1f} images/s  "
              f"({', '.join(f'{v:.1f}' for v in speeds[policy])})")
    ratios = np.array(speeds["mixed_bfloat16"]) / np.array(speeds["float32"])
    print(f"mixed_bfloat16 / float32: {np.mean(ratios):.2f}  (per round {', '.join(f'{v:.2f}' for v in ratios)})")
