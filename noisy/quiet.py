"""TensorFlow's start-up notices filtered out of a script's stderr.

TensorFlow prints them while it loads and when it first probes for a GPU, whatever
TF_CPP_MIN_LOG_LEVEL says (absl writes them before its log is set up): oneDNN and CUDA
notices, CPU instruction hints, and on a machine without a GPU a `cuInit` error. They are
caught at the file-descriptor level (they come from C++) and every other line is passed on.
"""
import contextlib
import os
import re
import sys
import tempfile

STARTUP_NOISE = re.compile(r"WARNING: All log messages before absl::InitializeLog|[IW]\d{4} \d\d:\d\d:\d\d|"
                           r"E\d{4} .*failed call to cuInit|To enable the following instructions|"
                           r"rebuild TensorFlow with the appropriate")


@contextlib.contextmanager
def startup_notices_hidden():
    """Run the block with stderr caught, then pass on every line but the notices."""
    with tempfile.TemporaryFile() as caught:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            for line in caught.read().decode(errors="replace").splitlines():
                if not STARTUP_NOISE.match(line):
                    print(line, file=sys.stderr)


def import_keras():
    """Import Keras without TensorFlow's start-up notices, and return it. TensorFlow is imported here too
    where it is installed (the JAX backend loads it later for some utilities, and would
    print them then). A Ctrl-C in the middle is held until the import is done: raised
    inside TensorFlow's C++ start-up it can abort the process instead of stopping it."""
    if "keras" in sys.modules:
        return sys.modules["keras"]
    import importlib.util
    import signal
    held = []
    previous = signal.signal(signal.SIGINT, lambda *_: held.append(True))
    try:
        with startup_notices_hidden():
            if importlib.util.find_spec("tensorflow"):
                import tensorflow  # noqa: F401
            import keras  # noqa: F401
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        raise KeyboardInterrupt
    return sys.modules["keras"]
