"""The CIFAR-10-C corruptions of noisy/corruptions.py and their family means."""
import numpy as np
import pytest

from noisy.corruptions import ALIASES, CORRUPTIONS, FAMILIES, SEVERITY, corrupt, family_means

RANDOM = {"gaussian_noise", "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "snow", "frost", "fog",
          "elastic_transform"}


def scenes(n=8, height=32, width=32, seed=0):
    """Real-looking images: a sky gradient, a coloured disk and a box, mild sensor noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:height, :width]
    out = []
    for _ in range(n):
        sky = np.stack([40 + 4 * y, 80 + 3 * y, 150 + 2 * y], -1) * rng.uniform(0.6, 1.1)
        cy, cx, r = rng.uniform(8, 24), rng.uniform(8, 24), rng.uniform(4, 9)
        sky[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.integers(20, 235, 3)
        top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
        sky[top:top + 10, left:left + 12] = rng.integers(20, 235, 3)
        out.append(sky + rng.normal(0, 3, sky.shape))
    return np.clip(np.stack(out), 0, 255).astype(np.uint8)


def distance(a, b):
    return np.abs(a.astype(int) - b).mean()


def test_the_15_corruptions_in_4_families():
    assert len(CORRUPTIONS) == 15 and len(set(CORRUPTIONS)) == 15
    assert [len(FAMILIES[f]) for f in ("noise", "blur", "weather", "digital")] == [3, 4, 3, 5]
    assert set(CORRUPTIONS) | {"gaussian_blur"} == set(SEVERITY)
    assert all(len(SEVERITY[name]) == 5 for name in SEVERITY)


@pytest.mark.parametrize("name", CORRUPTIONS + ("gaussian_blur", "jpeg"))
@pytest.mark.parametrize("shape", [(4, 32, 32), (3, 24, 40)])
def test_shape_dtype_and_determinism(name, shape):
    images = scenes(*shape)
    a = corrupt(images, name, 4, seed=1)
    assert a.shape == images.shape and a.dtype == np.uint8
    assert not np.array_equal(a, images), name
    assert np.array_equal(a, corrupt(images, name, 4, seed=1))
    other = corrupt(images, name, 4, seed=2)
    assert np.array_equal(a, other) != (ALIASES.get(name, name) in RANDOM), name


# Where the official constants do not make the change grow (mean |change| on such images):
# glass_blur 1 ~ 3 (one pass both, a wider second blur at 3 smooths the jitter back);
# frost 3 > 5 (the image's weight drops .9 -> .75 as the frost's rises .4 -> .45);
# elastic_transform shrinks (the random affine shrinks 2.56 -> .96 px while the local
# displacement field, small in |change|, grows).
EXCEPTIONS = {"glass_blur": lambda d: d[2] > max(d[0], d[1]),
              "frost": lambda d: d[0] < d[1] and d[2] > d[0],
              "elastic_transform": lambda d: d[0] > d[1] > d[2] > 0}


@pytest.mark.parametrize("name", CORRUPTIONS + ("gaussian_blur",))
def test_the_change_grows_with_severity(name):
    images = scenes(8)
    d = [distance(corrupt(images, name, s, seed=3), images) for s in (1, 3, 5)]
    if name in EXCEPTIONS:
        assert EXCEPTIONS[name](d), (name, d)
    else:
        assert 0 < d[0] < d[1] < d[2], (name, d)


def test_contrast_brightness_and_noise_follow_the_constants():
    images = scenes(4)
    x = images / 255.0
    low = corrupt(images, "contrast", 5) / 255.0  # c = .15 around each channel's mean
    assert np.allclose(low.mean((1, 2)), x.mean((1, 2)), atol=2 / 255)
    assert np.allclose(low.std((1, 2)), 0.15 * x.std((1, 2)), atol=2 / 255)
    grey = np.full((1, 4, 4, 3), 100, np.uint8)
    assert (corrupt(grey, "brightness", 5) == 100 + round(0.3 * 255)).all()  # HSV value + .3
    red = np.zeros((1, 4, 4, 3), np.uint8)
    red[..., 0] = 200
    out = corrupt(red, "brightness", 2)[0, 0, 0]  # value .784 + .1; hue and saturation kept
    assert out.tolist() == [round(200 / 255 * 255 + 0.1 * 255), 0, 0]
    flat = np.full((50, 32, 32, 3), 128, np.uint8)
    noise = corrupt(flat, "gaussian_noise", 2).astype(float) - 128
    assert noise.std() == pytest.approx(0.06 * 255, rel=0.02)
    share = (corrupt(flat, "impulse_noise", 5) != 128).mean()
    assert share == pytest.approx(0.07, abs=0.005)  # per value, half salt, half pepper


def test_family_means_on_hand_computed_numbers():
    accuracy = {"gaussian_noise": {"1": 0.8, "3": 0.6, "5": 0.4},   # mean .6
                "shot_noise": {"1": 0.9, "3": 0.7, "5": 0.5},       # mean .7
                "zoom_blur": {"1": 0.85, "3": 0.75, "5": 0.65},     # mean .75
                "fog": {"1": 0.7, "3": 0.5, "5": 0.3},              # mean .5
                "contrast": {"1": 0.9, "3": 0.6, "5": 0.2},         # mean .5666...
                "jpeg": {"1": 0.82, "3": 0.8, "5": 0.78}}           # old name: mean .8
    means = family_means(accuracy)
    assert set(means) == {"noise", "blur", "weather", "digital", "all"}
    assert means["noise"] == pytest.approx(0.65)
    assert means["blur"] == pytest.approx(0.75)
    assert means["weather"] == pytest.approx(0.5)
    assert means["digital"] == pytest.approx((0.5 + 0.2 / 3 + 0.8) / 2)
    assert means["all"] == pytest.approx((0.6 + 0.7 + 0.75 + 0.5 + 0.5 + 0.2 / 3 + 0.8) / 6)
    # each corruption weighs the same, whatever its number of severities
    assert family_means({"fog": {"1": 0.9}, "snow": {"1": 0.5, "3": 0.3, "5": 0.1}})["weather"] == pytest.approx(0.6)


def test_bad_names_and_severities_are_refused():
    images = scenes(2)
    with pytest.raises(ValueError, match="unknown corruption 'frosty'"):
        corrupt(images, "frosty", 1)
    for severity in (0, 6, 2.5, "3", True):
        with pytest.raises(ValueError, match=f"Received: severity={severity!r}"):
            corrupt(images, "jpeg", severity)
    with pytest.raises(ValueError, match=r"Received: float64 \(2, 32, 32, 3\)"):
        corrupt(images.astype(float), "fog", 1)
    with pytest.raises(ValueError, match="unknown corruption 'blurr'"):
        family_means({"blurr": {"1": 0.5}})
