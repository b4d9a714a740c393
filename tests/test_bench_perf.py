"""The speed benchmarks in their smallest modes, so that they cannot rot:
bench/perf/step_cost.py (both backends, each in its child process) and bench/perf/gpu.py's
dry run on this CPU (its train, epoch and label parts, without XLA, whose compilation
takes minutes on this CPU; effect.py left out: minutes too)."""
import math
import os
import re
import subprocess
import sys

from conftest import REPO


def run(tmp_path, *args, backend=None):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **({"KERAS_BACKEND": backend} if backend else {}))
    out = tmp_path / "out.txt"
    result = subprocess.run([sys.executable, *args, f"--out={out}"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=400)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return out.read_text()


def test_step_cost_times_every_variant_on_both_clocks_and_divides_fastest_by_fastest(tmp_path):
    text = run(tmp_path, "bench/perf/step_cost.py", "--quick=True", "--rounds=2", "--backends=('tensorflow',)")
    assert text.startswith("$ python bench/perf/step_cost.py --quick=True --rounds=2 --backends=('tensorflow',) --out=")
    assert re.search(r"; commit [0-9a-f]{7,}", text) and "cores usable" in text
    section = text.split("\ntensorflow: keras ")[1].split("\n", 1)[0]
    assert "backend tensorflow" in section
    rows = re.findall(r"^ +8  (\w+) +([\d.]+) ms +(?:([\d.]+)x)? +([\d.]+) ms +(?:([\d.]+)x)? +\[([\d., ]+)\]$",
                      text, re.M)
    assert [variant for variant, *_ in rows] == ["bare", "default", "average"]
    bare_wall, bare_cpu = float(rows[0][1]), float(rows[0][3])
    for variant, wall, wall_ratio, cpu, cpu_ratio, rounds in rows:
        per_round = [float(s) for s in rounds.split(", ")]
        assert len(per_round) == 2 and all(s > 0 for s in per_round) and float(cpu) > 0
        assert float(wall) == min(per_round), (variant, wall, rounds)  # the fastest round's
        if variant != "bare":  # to the printed digits: the ratio's 0.005, and each time's 0.05 ms relative to it
            for ratio, value, bare in ((wall_ratio, float(wall), bare_wall), (cpu_ratio, float(cpu), bare_cpu)):
                r = value / bare
                assert abs(float(ratio) - r) <= 0.005 + r * (0.05 / value + 0.05 / bare) + 1e-9, (variant, ratio, r)


def test_gpu_dry_run_sets_each_rows_precision_and_measures_the_epochs_costs(tmp_path):
    # bfloat16 first: a float32 row after it must not inherit its policy through clear_session.
    text = run(tmp_path, "bench/perf/gpu.py", "--dry_run=True", "--parts=('train','epoch','label')", "--steps=3",
               "--train_runs=(('bfloat16',8,'sgd','cpu'),('',8,'adam','device'))", "--epoch_images=192",
               "--epoch_augment=cpu", "--label_images=1024", "--peak_tflops=100.0", "--jit_compile=false",
               "--train_seconds=150", "--epoch_seconds=100", f"--work={tmp_path / 'work'}")
    bf16 = re.search(r"^  train bfloat16 batch    8 sgd  noise on cpu   : .*$", text, re.M).group(0)
    f32 = re.search(r"^  train float32  batch    8 adam noise on device: .*$", text, re.M).group(0)
    assert "policy mixed_bfloat16)" in bf16 and "of the bf16 peak" in bf16
    assert "policy float32)" in f32 and "of the bf16 peak" not in f32
    for row in (bf16, f32):
        assert float(re.search(r": +(\d+) images/s", row).group(1)) > 0
        assert re.search(r"; [2-9] steps timed in", row)
    assert "an epoch of 192 images = 3 steps" in text
    fits = re.findall(r"^    noisy\.fit average=(.*?): .* -> epoch ([\d.]+) s; checkpoint written in ([\d.]+) s = "
                      r"([\d.]+)% of the epoch \((.*)\)$", text, re.M)
    assert [f[0] for f in fits] == ["0.0", "0.9999"]
    assert all("model.keras" in f[4] and "random_state.npz" in f[4] for f in fits)
    sizes = [float(re.search(r"model\.keras ([\d.]+) MB", f[4]).group(1)) for f in fits]
    assert sizes[1] > sizes[0]  # the average's values are in the model file
    for _, epoch, write, percent, _ in fits:  # the share is the write over the epoch
        assert abs(float(percent) - 100 * float(write) / float(epoch)) < 1
    for label, (_, epoch, write, _, _) in zip(("without the average", "with it"), fits):
        k = int(re.search(rf"under 3% of an epoch {label} from k = (\d+)", text).group(1))
        assert abs(k - max(1, math.ceil(float(write) / (0.03 * float(epoch))))) <= 1  # to the printed digits
    assert re.search(r"^  label bfloat16 batch 256: +\d+ images/s.*of the bf16 peak", text, re.M)
    assert "== effect" not in text and "done in" in text
