"""TensorFlow's CPU kernels: oneDNN's by default (3x faster on CPUs where TensorFlow would
pick Eigen's, docs/PERFORMANCE.md section 7), unless the shell says otherwise."""
import os
import subprocess
import sys

import pytest

from conftest import REPO

pytest.importorskip("tensorflow")
ASK = ("import noisy; noisy.import_keras(); "
       "from tensorflow.python.util import _pywrap_util_port as p; print(p.IsMklEnabled())")


def onednn_in_a_fresh_process(**env):
    clean = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    result = subprocess.run([sys.executable, "-c", ASK], cwd=REPO, env=dict(clean, **env), capture_output=True,
                            text=True, check=True)
    return result.stdout.strip().splitlines()[-1]


def test_noisy_turns_onednn_on_before_tensorflow_loads_and_the_shell_wins():
    assert onednn_in_a_fresh_process() == "True"
    assert onednn_in_a_fresh_process(TF_ENABLE_ONEDNN_OPTS="0") == "False"
