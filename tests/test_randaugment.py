import numpy as np
import pytest
from PIL import Image

import noisy.randaugment
from noisy.randaugment import CUTOUT_OPS, OPS, RandAugment, apply_op, augment_batch, flip_and_crop


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
    ({"num_ops": 1.5}, r"Received: num_ops=1.5"), ({"num_ops": 16, "cutout": True}, r"\[0, 15\]. Received: num_ops=16"),
    ({"cutout": "yes"}, r"Received: cutout='yes'")])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RandAugment(**kwargs)


def test_cutout_square_position_and_size_for_a_fixed_centre():
    image = photo()
    # M=20 on 32 px: h = round(20/30 * 32 * 40 / 224) = round(3.81) = 4, an 8x8 square
    out = np.asarray(apply_op(image, "Cutout", 20 / 30, centre=(10, 21)))
    grey = (out == 128).all(-1)
    assert np.array_equal(np.argwhere(grey.any(1)).ravel(), np.arange(6, 14))   # rows cy-4 .. cy+3
    assert np.array_equal(np.argwhere(grey.any(0)).ravel(), np.arange(17, 25))  # cols cx-4 .. cx+3
    assert grey.sum() == 64
    outside = ~grey
    assert np.array_equal(out[outside], np.asarray(image)[outside])


def test_cutout_is_clipped_at_the_border_and_takes_no_sign():
    image = photo()
    out = np.asarray(apply_op(image, "Cutout", 1.0, sign=-1, centre=(1, 30)))  # h = round(5.71) = 6
    grey = (out == 128).all(-1)
    assert np.array_equal(np.argwhere(grey.any(1)).ravel(), np.arange(0, 7))    # rows -5 .. 6 -> 0 .. 6
    assert np.array_equal(np.argwhere(grey.any(0)).ravel(), np.arange(24, 32))  # cols 24 .. 35 -> 24 .. 31
    assert grey.sum() == 7 * 8
    assert np.array_equal(out, np.asarray(apply_op(image, "Cutout", 1.0, sign=1, centre=(1, 30))))


def test_cutout_half_side_scales_with_the_image_and_is_the_identity_at_zero():
    assert [noisy.randaugment.cutout_half_side(m / 30, 32) for m in (0, 2, 3, 10, 27, 30)] == [0, 0, 1, 2, 5, 6]
    assert noisy.randaugment.cutout_half_side(1.0, 224) == 40  # the official cutout_const
    image = photo()
    assert apply_op(image, "Cutout", 0.0, rng=np.random.default_rng(0)) is image
    assert apply_op(image, "Cutout", 2 / 30, centre=(16, 16)) is image  # h = round(0.38) = 0
    with pytest.raises(ValueError, match="Received: rng=None"):
        apply_op(image, "Cutout", 0.5)


def test_cutout_centre_is_drawn_over_all_pixels():
    image = Image.fromarray(np.zeros((32, 24, 3), np.uint8))  # 32 rows, 24 columns
    rng = np.random.default_rng(0)
    centres = []
    for _ in range(2000):  # h = round(3/30 * 32 * 40 / 224) = 1: the square is rows cy-1, cy
        grey = (np.asarray(apply_op(image, "Cutout", 3 / 30, rng=rng)) == 128).all(-1)
        centres.append((np.flatnonzero(grey.any(1)).max(), np.flatnonzero(grey.any(0)).max()))
    cy, cx = np.array(centres).T
    assert set(cy) == set(range(32)) and set(cx) == set(range(24))
    assert abs(cy.mean() - 15.5) < 0.6 and abs(cx.mean() - 11.5) < 0.45  # uniform: sd/sqrt(n) = 0.21, 0.15


def record_ops(monkeypatch):
    seen = []

    def fake_apply_op(image, op, f, sign=1, rng=None, centre=None):
        seen.append(op)
        return image
    monkeypatch.setattr(noisy.randaugment, "apply_op", fake_apply_op)
    return seen


def test_cutout_is_drawn_as_one_op_in_15_only_when_asked(monkeypatch):
    image, rng = photo(), np.random.default_rng(1)
    seen = record_ops(monkeypatch)
    augment = RandAugment(num_ops=2, magnitude=10, cutout=True)
    assert augment.ops == CUTOUT_OPS and len(CUTOUT_OPS) == 15
    for _ in range(3000):
        augment(image, rng)
    assert len(seen) == 6000 and 340 < seen.count("Cutout") < 460  # 400 expected, sd 19
    seen.clear()
    for _ in range(3000):
        RandAugment(num_ops=2, magnitude=10)(image, rng)
    assert "Cutout" not in seen and set(seen) == set(OPS)


def test_cutout_false_keeps_the_default_op_stream():
    images = np.stack([np.asarray(photo(seed=s)) for s in range(16)])
    a = augment_batch(images, np.random.default_rng(5), RandAugment(2, 10))
    b = augment_batch(images, np.random.default_rng(5), RandAugment(2, 10, cutout=False))
    assert np.array_equal(a, b) and RandAugment(2, 10).ops == OPS


def test_randaugment_with_cutout_is_seeded():
    augment = RandAugment(num_ops=3, magnitude=20, cutout=True)
    images = np.stack([np.asarray(photo(seed=s)) for s in range(32)])
    a = augment_batch(images, np.random.default_rng(7), augment, flip_crop=False)
    b = augment_batch(images, np.random.default_rng(7), augment, flip_crop=False)
    c = augment_batch(images, np.random.default_rng(8), augment, flip_crop=False)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.shape == images.shape and a.dtype == np.uint8
