"""The Keras backend: which one loads (`keras_backend`), and Keras imported without
TensorFlow's start-up notices (`import_keras`), TensorFlow not at all under JAX.

TensorFlow prints the notices while it loads and when it first probes for a GPU, whatever
TF_CPP_MIN_LOG_LEVEL says (absl writes them before its log is set up): oneDNN and CUDA
notices, CPU instruction hints, and on a machine without a GPU a `cuInit` error. They are
caught at the file-descriptor level (they come from C++) and every other line is passed on.
"""
import contextlib
import logging
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


def keras_backend():
    """The backend Keras will load: KERAS_BACKEND, else keras.json's, else tensorflow."""
    import json
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    try:
        with open(os.path.join(home, "keras.json")) as f:
            return json.load(f).get("backend", "tensorflow")
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def import_keras():
    """Import Keras without TensorFlow's start-up notices, and return it. Under the
    tensorflow backend TensorFlow is imported first, here; under another (JAX) it is not
    imported at all (nor later by Keras, below). A Ctrl-C in the middle is held until the import is done: raised
    inside TensorFlow's C++ start-up it can abort the process instead of stopping it."""
    if "keras" in sys.modules:
        return sys.modules["keras"]
    import importlib.util
    import signal
    held = []
    previous = signal.signal(signal.SIGINT, lambda *_: held.append(True))
    try:
        with startup_notices_hidden():
            if keras_backend() == "tensorflow" and importlib.util.find_spec("tensorflow"):
                import tensorflow  # noqa: F401
            import keras  # noqa: F401
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        raise KeyboardInterrupt
    logging.getLogger("absl").setLevel(logging.ERROR)  # Keras' notices that H5, a user's choice, is legacy
    if "tensorflow" not in sys.modules:
        # Keras asks `tensorflow.available` (which imports it) when it seeds and when it
        # saves a model, under every backend; without TensorFlow loaded that answer is "no".
        from keras.src.utils.module_utils import tensorflow
        tensorflow._available = False
    return sys.modules["keras"]
