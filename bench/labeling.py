"""Labeling throughput: pseudo_label.py end to end against bare `model.predict` and
against the article's loop that predicts one image at a time (issue #4, item 1).

    python bench/labeling.py                      # tiny teacher, 20,000 synthetic images
    python bench/labeling.py --model=resnet50 --images=100000   # on a GPU box

Prints images/s of each and the two ratios, all measured in this one run. Targets:
end to end >= 90% of bare predict, and >= 20x the one-image loop.
"""
import os
import re
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.scripts import run_script  # noqa: E402
from bench.synthetic_run import synthetic_images, teacher_run  # noqa: E402
from noisy.settings import configure  # noqa: E402
from noisy.errors import install_error_hook  # noqa: E402

# ------------------------------------------------------------------------------ settings
MODEL = "tiny"        # teacher preset
IMAGES = 20_000       # pool size for predict and pseudo_label.py
LOOP_IMAGES = 200     # images for the one-at-a-time loop (its rate is per image)
BATCH_SIZE = 1024     # prediction batch, the same for bare predict and pseudo_label.py
WORK_DIR = ""         # '' = a temporary folder
# ------------------------------------------------------------------------------

if __name__ == "__main__":
    install_error_hook()
    configure(globals())
    import keras
    work = WORK_DIR or tempfile.mkdtemp(prefix="bench-labeling-")
    run_dir = teacher_run(os.path.join(work, "run"), MODEL)
    pool_file = os.path.join(work, "pool.npy")
    synthetic_images(IMAGES, seed=3, path=pool_file)
    pool = np.load(pool_file)
    model = keras.models.load_model(os.path.join(run_dir, "teacher", "model.keras"))
    model.predict(pool[:BATCH_SIZE], batch_size=BATCH_SIZE, verbose=0)  # build and warm up

    start = time.time()
    model.predict(pool, batch_size=BATCH_SIZE, verbose=0)
    bare = IMAGES / (time.time() - start)

    start = time.time()
    for i in range(LOOP_IMAGES):  # the article: batch_size = 1, x / 255 and predict per image
        model.predict(pool[i:i + 1], verbose=0)
    loop = LOOP_IMAGES / (time.time() - start)

    out = run_script("pseudo_label.py", f"--run_dir={run_dir}", f"--unlabeled={pool_file}", "--threshold=0.0",
                     f"--batch_size={BATCH_SIZE}").stdout
    end_to_end = float(re.search(r"([\d.]+) images/s end to end", out).group(1))

    print(f"model {MODEL}, {IMAGES} synthetic 32x32 images, batch {BATCH_SIZE}, keras backend "
          f"{keras.backend.backend()}, {os.cpu_count()} cores")
    print(f"bare model.predict          {bare:10.0f} images/s")
    print(f"pseudo_label.py end to end  {end_to_end:10.0f} images/s  (load, predict, threshold, balance, write)")
    print(f"article one-image loop      {loop:10.1f} images/s")
    print(f"end to end / bare predict   {end_to_end / bare:10.2f}   (target >= 0.90)")
    print(f"end to end / article loop   {end_to_end / loop:10.1f}x  (target >= 20x)")
