"""TensorFlow's CPU kernels: oneDNN's by default (3x faster on CPUs where TensorFlow would
pick Eigen's, docs/PERFORMANCE.md section 7), unless the shell says otherwise."""
import os
import subprocess
import sys

import pytest

from conftest import REPO

pytest.importorskip("tensorflow")
ASK = ("import os, noisy; noisy.import_keras(); "
       "from tensorflow.python.util import _pywrap_util_port as p; "
       "print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'), p.IsMklEnabled())")


def onednn_in_a_fresh_process(**env):
    clean = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    result = subprocess.run([sys.executable, "-c", ASK], cwd=REPO, env=dict(clean, **env), capture_output=True,
                            text=True, check=True)
    variable, enabled = result.stdout.strip().splitlines()[-1].split()
    return variable, enabled


def test_noisy_turns_onednn_on_before_tensorflow_loads_and_the_shell_wins():
    # The variable is what noisy sets on every CPU; TensorFlow taking it is what it changes here.
    assert onednn_in_a_fresh_process() == ("1", "True")
    assert onednn_in_a_fresh_process(TF_ENABLE_ONEDNN_OPTS="0") == ("0", "False")


def test_the_timing_bench_passes_on_a_failing_childs_own_error():
    # Keras' numpy backend cannot train: the child refuses it, after the parent's checks.
    result = subprocess.run([sys.executable, "bench/perf/cpu_env.py", "--environments=onednn", "--repeats=1"], cwd=REPO,
                            capture_output=True, text=True, env=dict(os.environ, KERAS_BACKEND="numpy"))
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0] == ("error: the onednn child failed (exit 2): bench/perf/cpu_env.py times TensorFlow's CPU kernels: "
                        "run it with KERAS_BACKEND=tensorflow")
    # A bad RandAugment setting is refused before any child starts.
    result = subprocess.run([sys.executable, "bench/perf/cpu_env.py", "--magnitude=99"], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 2 and result.stderr.startswith("error: --num_ops=2 --magnitude=99: magnitude must")
