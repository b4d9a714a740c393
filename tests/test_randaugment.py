import numpy as np
import pytest
from PIL import Image

from noisy.randaugment import OPS, RandAugment, apply_op, augment_batch, flip_and_crop


def photo(size=32, seed=0):
    """A low-contrast, coloured, textured RGB image: every op has something to change."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size]
    base = np.stack([60 + 3 * x, 70 + 2 * y, 90 + x + y], -1)
    return Image.fromarray(np.clip(base + rng.integers(0, 20, base.shape), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("op", [op for op in OPS if op != "Identity"])
@pytest.mark.parametrize("sign", [-1, 1])
def test_every_op_changes_the_image_at_full_magnitude(op, sign):
    image = photo()
    out = apply_op(image, op, 1.0, sign)
    assert out.size == image.size and out.mode == "RGB"
    assert not np.array_equal(np.asarray(out), np.asarray(image)), op


@pytest.mark.parametrize("op", ["Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY", "Color",
                                "Contrast", "Brightness", "Sharpness", "Posterize", "Solarize"])
def test_magnitude_zero_is_the_identity(op):
    image = photo()
    assert np.array_equal(np.asarray(apply_op(image, op, 0.0, 1)), np.asarray(image))


def test_equalize_really_equalizes():
    out = np.asarray(apply_op(photo(), "Equalize", 0.5))
    assert out.max() - out.min() > 200  # the input spans about 60..200


def test_rotation_is_bounded_by_30_degrees():
    # A 30-degree rotation leaves the corners grey; 360 (the article's bug) would not.
    square = Image.fromarray(np.full((32, 32, 3), 255, np.uint8))
    out = np.asarray(apply_op(square, "Rotate", 1.0, 1))
    assert (out[0, 0] == 128).all()
    small = np.asarray(apply_op(square, "Rotate", 0.1, 1))
    assert (small[16] == 255).all()  # 3 degrees keeps the middle row white


def test_solarize_and_posterize_follow_the_table():
    image = photo()
    full = np.asarray(apply_op(image, "Solarize", 1.0))
    assert np.array_equal(full, 255 - np.asarray(image))  # threshold 0 inverts everything
    bits4 = np.asarray(apply_op(image, "Posterize", 1.0))
    assert (bits4 % 16 == 0).all()


def test_randaugment_keeps_shape_and_dtype_and_is_seeded():
    augment = RandAugment(num_ops=2, magnitude=10)
    images = np.stack([np.asarray(photo(seed=s)) for s in range(16)])
    a = augment_batch(images, np.random.default_rng(3), augment)
    b = augment_batch(images, np.random.default_rng(3), augment)
    c = augment_batch(images, np.random.default_rng(4), augment)
    assert a.shape == images.shape and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_each_image_gets_its_own_ops():
    augment = RandAugment(num_ops=1, magnitude=30)
    image = np.asarray(photo())
    images = np.stack([image] * 64)
    out = augment_batch(images, np.random.default_rng(0), augment, flip_crop=False)
    distinct = {o.tobytes() for o in out}
    assert len(distinct) > 8  # a batch-wide draw would give one result


def test_flip_and_crop_moves_pixels_but_keeps_content_size():
    images = np.stack([np.asarray(photo(seed=s)) for s in range(32)])
    out = flip_and_crop(images, np.random.default_rng(0))
    assert out.shape == images.shape and out.dtype == np.uint8
    assert sum(not np.array_equal(o, i) for o, i in zip(out, images)) > 24


@pytest.mark.parametrize("kwargs, message", [
    ({"num_ops": 15}, r"Received: num_ops=15"), ({"magnitude": 31}, r"Received: magnitude=31"),
    ({"num_ops": 1.5}, r"Received: num_ops=1.5")])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RandAugment(**kwargs)


def test_every_corruption_changes_images_and_grows_with_severity():
    from noisy.corruptions import CORRUPTIONS, corrupt
    images = np.stack([np.asarray(photo(seed=s)) for s in range(8)])
    for name in CORRUPTIONS:
        mild, severe = corrupt(images, name, 1), corrupt(images, name, 5)
        assert mild.shape == images.shape and mild.dtype == np.uint8, name
        distance = [np.abs(c.astype(int) - images).mean() for c in (mild, severe)]
        assert 0 < distance[0] < distance[1], (name, distance)
    assert np.array_equal(corrupt(images, "gaussian_noise", 3, seed=1), corrupt(images, "gaussian_noise", 3, seed=1))
    with pytest.raises(ValueError, match="Received: severity=6"):
        corrupt(images, "jpeg", 6)
