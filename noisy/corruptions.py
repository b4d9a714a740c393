"""Common corruptions of test images: the 15 of CIFAR-10-C (Hendrycks & Dietterich 2019).

Written with numpy and PIL only, on whole batches: uint8 (n, h, w, 3) in, uint8 of the
same shape out, the same result for the same seed. Every constant below is the one of
the authors' `ImageNet-C/create_c/make_cifar_c.py` (github.com/hendrycks/robustness),
the script that made CIFAR-10-C, listed for severities 1 .. 5 (x on the 0..1 scale):

    noise     gaussian_noise     x + N(0, s), s = .04 .06 .08 .09 .10
              shot_noise         Poisson(x c) / c, c = 500 250 100 75 50
              impulse_noise      salt or pepper (1/2 each) on a share c of the values,
                                 c = .01 .02 .03 .05 .07 (skimage's 's&p', per channel)
    blur      defocus_blur       disk of radius r, antialiased by a 3x3 Gaussian of
                                 sigma a: (r, a) = (.3,.4) (.4,.5) (.5,.6) (1,.2) (1.5,.1)
              glass_blur         Gaussian blur s, copy into each pixel a neighbour at
                                 offsets in {-d .. d-1} (make_cifar_c's randint and its
                                 swap that only copies), k passes, blur again:
                                 (s, d, k) = (.05,1,1) (.25,1,1) (.4,1,1) (.25,1,2) (.4,1,2)
              motion_blur        ImageMagick's one-sided motion blur, radius 6 6 6 8 9,
                                 sigma 1 1.5 2 2 2.5, angle uniform in -45 .. 45 degrees
              zoom_blur          mean of the image and its centre zooms by
                                 np.arange(1, z, .01), z = 1.06 1.11 1.16 1.21 1.26
    weather   snow               make_cifar_c's snow layer (Gaussian flakes, zoom,
                                 threshold, motion blur at -135 .. -45 degrees, added
                                 and added rotated by 180 degrees) with its 7 constants
              frost              NOT CIFAR-10-C's frost: that blends crops of six frost
                                 photographs we do not have. Here the same blend,
                                 a x + b frost, (a, b) = (1,.2) (1,.3) (.9,.4) (.85,.4)
                                 (.75,.45), with a procedural frost-like layer (a rough
                                 plasma fractal, bluish white). Its numbers are not
                                 comparable with published frost results.
              fog                x + c plasma fractal (wibble decay w), rescaled by
                                 max / (max + c): (c, w) = (.2,3) (.5,3) (.75,2.5) (1,2)
                                 (1.5,1.75)
    digital   contrast           (x - mean) c + mean, per channel, c = .75 .5 .4 .3 .15
              brightness         HSV value + c, c = .05 .1 .15 .2 .3
              elastic_transform  random affine (corners moved by up to e px) then a
                                 displacement field of Gaussian-smoothed (sigma s) uniform
                                 noise times a, all x 32 px: (a, s, e) = (0,0,.08)
                                 (.05,.2,.07) (.08,.06,.06) (.1,.04,.05) (.1,.03,.03)
              pixelate           box-downscale to c of the side and back,
                                 c = .95 .9 .85 .75 .65
              jpeg_compression   JPEG quality = 80 65 58 50 40

`gaussian_blur` (skimage Gaussian, sigma = .4 .6 .7 .8 1) is kept as one of CIFAR-10-C's
four extra corruptions (outside the 15 and their means); `jpeg` is the old name of
jpeg_compression. Differences from make_cifar_c.py, all small: results are rounded to
the nearest integer (np.uint8 truncates there); scipy's zoom and map_coordinates and
OpenCV's filters are rewritten in numpy with the same coordinates and border rules
(OpenCV's fixed-point bilinear weights are not copied); the random draws differ.

    images_c = corrupt(images, "motion_blur", severity=3, seed=0)
    subset = corruption_subset(test_labels, 10, 2000)  # the fixed test images corrupted
    family_means({"shot_noise": {"1": .8, "3": .6}, "fog": {"1": .7, "3": .5}})
"""
import io

import numpy as np
from PIL import Image

SEVERITY = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "shot_noise": (500, 250, 100, 75, 50),
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
    "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
    "zoom_blur": (1.06, 1.11, 1.16, 1.21, 1.26),
    "snow": ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
             (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
             (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)),
    "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
    "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    "elastic_transform": ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05),
                          (0.1, 0.03, 0.03)),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
    "jpeg_compression": (80, 65, 58, 50, 40),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),  # an extra: not in CORRUPTIONS
}
FAMILIES = {
    "noise": ("gaussian_noise", "shot_noise", "impulse_noise"),
    "blur": ("defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    "weather": ("snow", "frost", "fog"),
    "digital": ("contrast", "brightness", "elastic_transform", "pixelate", "jpeg_compression"),
}
CORRUPTIONS = tuple(name for names in FAMILIES.values() for name in names)  # the 15, in CIFAR-10-C's order
ALIASES = {"jpeg": "jpeg_compression"}  # old names still accepted


# ------------------------------------------------------------------------------ helpers
def _reflect(index, size, edge_twice):
    """Fold integer indices into 0..size-1: 'dcba|abcd' (scipy 'reflect', numpy
    'symmetric') when edge_twice, else 'dcb|abcd' (OpenCV's default REFLECT_101)."""
    if size == 1:
        return np.zeros_like(index)
    period = 2 * size if edge_twice else 2 * size - 2
    index = np.mod(index, period)
    return np.where(index < size, index, period - 1 - index if edge_twice else period - index)


def _gaussian(x, sigma, axes=(1, 2), mode="edge", truncate=4.0):
    """scipy.ndimage.gaussian_filter (what skimage's `gaussian` calls) along `axes`;
    mode 'edge' is scipy's 'nearest' (skimage's default), 'symmetric' its 'reflect'."""
    radius = int(truncate * sigma + 0.5)
    if sigma <= 0 or radius == 0:
        return x
    weights = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    weights /= weights.sum()
    for axis in axes:
        pad = [(0, 0)] * x.ndim
        pad[axis] = (radius, radius)
        padded, size = np.pad(x, pad, mode=mode), x.shape[axis]
        x = sum(w * np.take(padded, np.arange(i, i + size), axis=axis) for i, w in enumerate(weights))
    return x


def _filter2d(x, kernel):
    """OpenCV's filter2D (a correlation) with its default border, on (n, h, w, c)."""
    r = kernel.shape[0] // 2
    padded = np.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), mode="reflect")
    h, w = x.shape[1:3]
    return sum(kernel[i, j] * padded[:, i:i + h, j:j + w] for i, j in zip(*np.nonzero(kernel)))


def _disk(radius, alias_blur):
    """make_cifar_c's defocus kernel: an aliased disk on a 17x17 grid, blurred by OpenCV's
    3x3 Gaussian of sigma alias_blur, cropped to where it is non-zero."""
    grid = np.arange(-8, 9)
    disk = (grid[:, None] ** 2 + grid[None, :] ** 2 <= radius ** 2).astype(np.float64)
    disk /= disk.sum()
    g = np.exp(-np.arange(-1, 2) ** 2 / (2 * alias_blur ** 2))
    g /= g.sum()
    blurred = _filter2d(disk[None, :, :, None], np.outer(g, g))[0, :, :, 0]
    keep = np.flatnonzero(blurred.any(0) | blurred.any(1))
    half = max(8 - keep.min(), keep.max() - 8)
    return blurred[8 - half:9 + half, 8 - half:9 + half]


def _interp(x, coords, axis):
    """Linear interpolation of x at fractional `coords` (within range) along `axis`."""
    low = np.floor(coords).astype(int)
    high = np.minimum(low + 1, x.shape[axis] - 1)
    shape = [1] * x.ndim
    shape[axis] = len(coords)
    frac = (coords - low).reshape(shape)
    return np.take(x, low, axis=axis) * (1 - frac) + np.take(x, high, axis=axis) * frac


def _zoom_coords(size, zoom):
    """Where make_cifar_c's clipped_zoom reads along one axis: scipy's order-1 zoom of the
    centre crop of ceil(size / zoom) pixels, cut back to the centre `size` pixels."""
    crop = int(np.ceil(size / zoom))
    top = (size - crop) // 2
    out = int(round(crop * zoom))
    coords = top + np.arange(out) * ((crop - 1) / (out - 1) if out > 1 else 0.0)
    trim = (out - size) // 2
    return coords[trim:trim + size]


def _clipped_zoom(x, zoom):
    """make_cifar_c's clipped_zoom (a centre zoom by `zoom` >= 1) on (n, h, w, c)."""
    return _interp(_interp(x, _zoom_coords(x.shape[1], zoom), 1), _zoom_coords(x.shape[2], zoom), 2)


def _sample(x, rows, cols, edge_twice):
    """Bilinear samples of each image of x (n, h, w, c) at per-image fractional
    coordinates rows, cols (n, H, W), with reflected borders."""
    n, h, w, _ = x.shape
    r0, c0 = np.floor(rows).astype(int), np.floor(cols).astype(int)
    fr, fc = (rows - r0)[..., None], (cols - c0)[..., None]
    image = np.arange(n)[:, None, None]
    r0, r1 = _reflect(r0, h, edge_twice), _reflect(r0 + 1, h, edge_twice)
    c0, c1 = _reflect(c0, w, edge_twice), _reflect(c0 + 1, w, edge_twice)
    return ((x[image, r0, c0] * (1 - fc) + x[image, r0, c1] * fc) * (1 - fr)
            + (x[image, r1, c0] * (1 - fc) + x[image, r1, c1] * fc) * fr)


def _motion_blur(x, radius, sigma, angles):
    """ImageMagick's MotionBlurImage on (n, h, w, c), one angle (degrees) per image: the
    mean of 2 ceil(radius) + 1 pixels along the angle, weighted exp(-i^2 / 2 sigma^2)
    for the i-th, edge pixels repeated beyond the border."""
    n, h, w, _ = x.shape
    taps = np.arange(2 * int(np.ceil(radius)) + 1)
    weights = np.exp(-taps ** 2 / (2 * sigma ** 2))
    weights /= weights.sum()
    theta = np.deg2rad(angles)[:, None]
    dx = np.ceil(taps * np.cos(theta) - 0.5).astype(int)  # (n, taps)
    dy = np.ceil(taps * np.sin(theta) - 0.5).astype(int)
    image = np.arange(n)[:, None, None]
    out = 0.0
    for i, weight in enumerate(weights):
        rows = np.clip(np.arange(h)[None, :] + dy[:, i:i + 1], 0, h - 1)[:, :, None]
        cols = np.clip(np.arange(w)[None, :] + dx[:, i:i + 1], 0, w - 1)[:, None, :]
        out = out + weight * x[image, rows, cols]
    return out


def _plasma_fractal(rng, n, size, wibble_decay):
    """make_cifar_c's plasma_fractal (diamond-square) for n maps at once, 0..1 each."""
    size = 1 << int(np.ceil(np.log2(max(size, 2))))
    maps = np.zeros((n, size, size))
    step, wibble = size, 100.0

    def wibbled_mean(array):
        return array / 4 + wibble * rng.uniform(-wibble, wibble, array.shape)

    while step >= 2:
        half = step // 2
        corners = maps[:, 0:size:step, 0:size:step]
        squares = corners + np.roll(corners, -1, axis=1)
        squares = squares + np.roll(squares, -1, axis=2)
        maps[:, half:size:step, half:size:step] = wibbled_mean(squares)
        centres = maps[:, half:size:step, half:size:step]
        corners = maps[:, 0:size:step, 0:size:step]
        sums = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=2)
        maps[:, 0:size:step, half:size:step] = wibbled_mean(sums)
        sums = centres + np.roll(centres, 1, axis=2) + corners + np.roll(corners, -1, axis=1)
        maps[:, half:size:step, 0:size:step] = wibbled_mean(sums)
        step //= 2
        wibble /= wibble_decay
    maps -= maps.min(axis=(1, 2), keepdims=True)
    return maps / maps.max(axis=(1, 2), keepdims=True)


def _per_image(images, function):
    return np.stack([np.asarray(function(Image.fromarray(im)).convert("RGB")) for im in images])


def _jpeg(image, quality):
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(buffer)


def _grey(x):
    return (x @ np.array([0.299, 0.587, 0.114]))[..., None]  # OpenCV's RGB2GRAY


# ------------------------------------------------------------------------------ corruptions
def _corrupt(images, x, name, c, rng):
    """The corruption on float x (images / 255); a uint8 result is returned as is."""
    n, h, w, _ = x.shape
    if name == "gaussian_noise":
        return x + rng.normal(0, c, x.shape)
    if name == "shot_noise":
        return rng.poisson(x * c) / c
    if name == "impulse_noise":
        flipped, salt = rng.random(x.shape) <= c, rng.random(x.shape) <= 0.5
        return np.where(flipped, salt.astype(x.dtype), x)
    if name == "defocus_blur":
        return _filter2d(x, _disk(*c))
    if name == "glass_blur":
        # make_cifar_c "swaps" pixel (i, j) with (i + dy, j + dx), dx, dy in {-d .. d-1},
        # for i, j from the far corner back to d + 1, by a tuple assignment of numpy views:
        # that copies the neighbour into (i, j) and leaves the neighbour as it was, and the
        # neighbours (up and left) are always still unvisited. So each pass is one copy.
        sigma, delta, passes = c
        x = np.floor(np.clip(_gaussian(x, sigma), 0, 1) * 255)  # np.uint8() in the original
        rows, cols = np.arange(delta + 1, h - delta + 1), np.arange(delta + 1, w - delta + 1)
        image = np.arange(n)[:, None, None]
        for _ in range(passes):
            dx, dy = rng.integers(-delta, delta, size=(2, n, len(rows), len(cols)))
            x[:, delta + 1:h - delta + 1, delta + 1:w - delta + 1] = \
                x[image, rows[None, :, None] + dy, cols[None, None, :] + dx]
        return _gaussian(x / 255, sigma)
    if name == "motion_blur":
        return _motion_blur(x, c[0], c[1], rng.uniform(-45, 45, n))
    if name == "zoom_blur":
        zooms = np.arange(1, c, 0.01)  # make_cifar_c's own float steps: 7, 12, 16, 21, 26 zooms
        return (x + sum(_clipped_zoom(x, z) for z in zooms)) / (len(zooms) + 1)
    if name == "snow":
        loc, scale, zoom, threshold, radius, sigma, keep = c
        layer = _clipped_zoom(rng.normal(loc, scale, (n, h, w, 1)), zoom)
        layer = np.round(np.clip(np.where(layer < threshold, 0, layer), 0, 1) * 255)  # an 8-bit image
        layer = np.round(_motion_blur(layer, radius, sigma, rng.uniform(-135, -45, n))) / 255
        x = keep * x + (1 - keep) * np.maximum(x, _grey(x) * 1.5 + 0.5)
        return x + layer + layer[:, ::-1, ::-1]
    if name == "frost":
        image_weight, frost_weight = c
        rough = _plasma_fractal(rng, n, max(h, w), 1.5)[:, :h, :w, None]
        crystals = 255 * (0.35 + 0.65 * rough ** 1.5) * np.array([0.85, 0.93, 1.0])  # bluish white
        return (image_weight * images + frost_weight * crystals) / 255
    if name == "fog":
        strength, decay = c
        top = x.max(axis=(1, 2, 3), keepdims=True)
        x = x + strength * _plasma_fractal(rng, n, max(h, w), decay)[:, :h, :w, None]
        return x * top / (top + strength)
    if name == "contrast":
        mean = x.mean(axis=(1, 2), keepdims=True)
        return (x - mean) * c + mean
    if name == "brightness":  # HSV value + c: with hue and saturation fixed, RGB scales with V
        value = x.max(axis=-1, keepdims=True)
        raised = np.minimum(value + c, 1)
        return np.where(value > 0, x * raised / np.maximum(value, 1e-12), raised)
    if name == "elastic_transform":
        alpha, sigma, shift = (32 * v for v in c)  # make_cifar_c's IMSIZE = 32
        centre, side = np.float64(h // 2), min(h, w) // 3
        source = np.array([[centre + side, centre + side], [centre + side, centre - side],
                           [centre - side, centre - side]])  # (x, y) points, as OpenCV reads them
        target = source + rng.uniform(-shift, shift, (n, 3, 2))
        ones = np.ones((n, 3, 1))
        affine = np.linalg.solve(np.concatenate([np.broadcast_to(source, (n, 3, 2)), ones], 2), target)
        forward = np.concatenate([np.swapaxes(affine, 1, 2), np.tile([[[0, 0, 1]]], (n, 1, 1))], 1)
        inverse = np.linalg.inv(forward)  # warpAffine: output (x, y) reads the input at M^-1 (x, y)
        ys, xs = np.mgrid[:h, :w].astype(np.float64)
        points = np.stack([xs, ys, np.ones_like(xs)])  # (3, h, w)
        at = np.einsum("nij,jhw->nihw", inverse, points)
        x = _sample(x, at[:, 1], at[:, 0], edge_twice=False)
        dx = _gaussian(rng.uniform(-1, 1, (n, h, w)), sigma, mode="symmetric", truncate=3) * alpha
        dy = _gaussian(rng.uniform(-1, 1, (n, h, w)), sigma, mode="symmetric", truncate=3) * alpha
        return _sample(x, ys + dy, xs + dx, edge_twice=True)
    if name == "pixelate":
        def pixelate(image):
            small = image.resize((max(1, int(w * c)), max(1, int(h * c))), Image.BOX)
            return small.resize((w, h), Image.BOX)
        return _per_image(images, pixelate)
    if name == "jpeg_compression":
        return _per_image(images, lambda image: _jpeg(image, c))
    if name == "gaussian_blur":
        return _gaussian(x, c)
    raise AssertionError(name)


def corrupt(images, name, severity, seed=0):
    """Apply corruption `name` (one of CORRUPTIONS, 'gaussian_blur' or an old name in
    ALIASES) at `severity` (1..5) to a uint8 batch (n, h, w, 3); the same seed gives the
    same result."""
    name = ALIASES.get(name, name)
    if name not in SEVERITY:
        raise ValueError(f"unknown corruption {name!r}; choose one of {CORRUPTIONS + ('gaussian_blur',)}")
    if isinstance(severity, bool) or severity not in (1, 2, 3, 4, 5):
        raise ValueError(f"severity must be 1..5. Received: severity={severity!r}")
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images of shape (n, h, w, 3). Received: {images.dtype} {images.shape}")
    if len(images) == 0:
        return images.copy()
    x = images.astype(np.float64) / 255.0
    out = _corrupt(images, x, name, SEVERITY[name][int(severity) - 1], np.random.default_rng(seed))
    if out.dtype == np.uint8:
        return out
    return np.rint(np.clip(out, 0, 1) * 255).astype(np.uint8)


def family_means(accuracy_by_corruption):
    """Mean accuracy per family of FAMILIES and over all corruptions ('all'), from
    {name: {severity (str): accuracy}} as evaluate.py stores it. Each corruption first
    gets the mean over its severities, so every corruption weighs the same (CIFAR-10-C's
    mean over 15); a family none of whose corruptions was given is left out. Names
    outside the families (gaussian_blur) count in 'all' only."""
    if not accuracy_by_corruption:
        raise ValueError("family_means needs at least one corruption. Received: {}")
    per_corruption = {}
    for name, by_severity in accuracy_by_corruption.items():
        if ALIASES.get(name, name) not in SEVERITY:
            raise ValueError(f"unknown corruption {name!r}; choose one of {CORRUPTIONS}")
        if not by_severity:
            raise ValueError(f"no accuracies for corruption {name!r}. Received: {by_severity!r}")
        per_corruption[ALIASES.get(name, name)] = float(np.mean(list(by_severity.values())))
    means = {family: float(np.mean([per_corruption[n] for n in names if n in per_corruption]))
             for family, names in FAMILIES.items() if any(n in per_corruption for n in names)}
    means["all"] = float(np.mean(list(per_corruption.values())))
    return means


def corruption_subset(labels, num_classes, count):
    """A fixed, class-balanced subset of the test images for the corruption check
    (the first `count` / classes of each class; 0 = all), identical for every model."""
    if not 0 < count < len(labels):
        return np.arange(len(labels))
    per_class = max(1, count // num_classes)
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(num_classes)]))
