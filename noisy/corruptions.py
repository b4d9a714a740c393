"""Common corruptions of test images, for the robustness check the article wanted.

After CIFAR-10-C (Hendrycks & Dietterich 2019), written with numpy and PIL at the same
five severities; uint8 (n, h, w, 3) in, uint8 of the same shape out:

    corruption       severity 1 .. 5
    gaussian_noise   add N(0, s) on the 0..1 scale, s = .04 .06 .08 .09 .10
    gaussian_blur    PIL GaussianBlur radius = .4 .6 .7 .8 1.0 px
    contrast         (x - mean) * c + mean, c = .75 .5 .4 .3 .15
    brightness       x + c on the 0..1 scale, c = .05 .1 .15 .2 .3 (CIFAR-10-C raises
                     the HSV value instead; adding to all channels is close for most pixels)
    jpeg             JPEG quality = 80 65 58 50 40
    pixelate         box-downscale to c of the side and back, c = .95 .9 .85 .75 .65
"""
import io

import numpy as np
from PIL import Image, ImageFilter

SEVERITY = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    "jpeg": (80, 65, 58, 50, 40),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
}
CORRUPTIONS = tuple(SEVERITY)


def _per_image(images, function):
    return np.stack([np.asarray(function(Image.fromarray(im))) for im in images])


def _jpeg(image, quality):
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(buffer).convert("RGB")


def corrupt(images, name, severity, seed=0):
    """Apply corruption `name` at `severity` (1..5) to a uint8 batch."""
    if name not in SEVERITY:
        raise ValueError(f"unknown corruption {name!r}; choose one of {CORRUPTIONS}")
    if severity not in (1, 2, 3, 4, 5):
        raise ValueError(f"severity must be 1..5. Received: severity={severity}")
    c = SEVERITY[name][severity - 1]
    x = np.asarray(images, np.float32) / 255.0
    if name == "gaussian_noise":
        x = x + np.random.default_rng(seed).normal(0, c, x.shape)
    elif name == "contrast":
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        x = (x - mean) * c + mean
    elif name == "brightness":
        x = x + c
    elif name == "gaussian_blur":
        return _per_image(images, lambda im: im.filter(ImageFilter.GaussianBlur(c)))
    elif name == "jpeg":
        return _per_image(images, lambda im: _jpeg(im, c))
    elif name == "pixelate":
        def pixelate(im):
            w, h = im.size
            small = im.resize((max(1, int(w * c)), max(1, int(h * c))), Image.BOX)
            return small.resize((w, h), Image.BOX)
        return _per_image(images, pixelate)
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)
