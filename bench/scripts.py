"""Run one of the repository's scripts in a fresh Python process: the one way the tests,
the benchmarks and the experiment runner start a stage (each stage is its own process, as
a user runs it, so the backend and the dtype policy start afresh)."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(script, *args, log=None, check=True, timeout=None, env=None):
    """`python REPO/script args...` from the repository root with TensorFlow's C++ log
    silenced. Output is captured in the returned CompletedProcess, or appended to the open
    file `log`. With `check`, a non-zero exit raises RuntimeError carrying the output."""
    output = dict(stdout=log, stderr=subprocess.STDOUT) if log else dict(capture_output=True)
    result = subprocess.run([sys.executable, os.path.join(REPO, script), *args], cwd=REPO, text=True,
                            timeout=timeout, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **(env or {})),
                            **output)
    if check and result.returncode != 0:
        where = f"see {log.name}" if log else f"\n{result.stdout}\n{result.stderr}"
        raise RuntimeError(f"{script} {' '.join(args)} failed with exit code {result.returncode}: {where}")
    return result
