"""RandAugment (Cubuk et al. 2020) on PIL images, one draw per image, plus flip and crop.

Each call picks `num_ops` operations uniformly (with replacement) from the paper's 14
(`OPS`; with `cutout=True` from those and Cutout, `CUTOUT_OPS`) and applies each at the fixed magnitude M on the 0..30 scale (f = M / 30); geometric and
enhance operations take a random sign. Ranges at full magnitude follow the paper lineage
(AutoAugment's table, torchvision's `RandAugment`):

    operation      value at magnitude fraction f            at M=10 (default)
    Identity       -                                        -
    AutoContrast   -                                        -
    Equalize       -                                        -
    Rotate         +-30 f degrees                           +-10 degrees
    Solarize       invert pixels >= 255 (1 - f)             >= 170
    Color          factor 1 +- 0.9 f                        1 +- 0.3
    Posterize      keep 8 - round(4 f) bits                 7 bits
    Contrast       factor 1 +- 0.9 f                        1 +- 0.3
    Brightness     factor 1 +- 0.9 f                        1 +- 0.3
    Sharpness      factor 1 +- 0.9 f                        1 +- 0.3
    ShearX/ShearY  +-0.3 f                                  +-0.1
    TranslateX/Y   +-0.45 f of the image side (150/331)     +-4.8 px of 32
    Cutout         grey square of half-side                 2 px of 32 (a 4x4 square)
                   h = round(f * side * 40 / 224) px

Cutout (only with `cutout=True`) is the official Noisy Student code's extra op
(google-research/noisystudent, `cutout_const=40` on 224-px images, scaled here to the
image height `side`): a (128, 128, 128) square covering rows cy-h .. cy+h-1 and columns
cx-h .. cx+h-1, clipped to the image, with its centre (cy, cx) drawn uniformly over all
pixels; it takes no sign, and h == 0 is the identity. `round` is half-to-even, as
Python's, numpy's and keras.ops' (at side 32 no magnitude 0..30 falls on a tie).

Why M=10 for 32x32 images: at 10 a translation reaches about 4.8 px, the size of the
4-px pad-and-crop every CIFAR recipe uses, and a rotation 10 degrees; at the paper's
ImageNet setting M=27 a 32-px object would be shifted by 13 px and cut in half. The
article also used 10. Tune it with `--magnitude` on the validation split.

Keras' `keras.layers.RandAugment` is not used: its ranges are one-sided and not the
paper's, and it draws one set of ops for a whole batch.
"""
import numpy as np
from PIL import Image, ImageEnhance, ImageOps

OPS = ("Identity", "AutoContrast", "Equalize", "Rotate", "Solarize", "Color", "Posterize",
       "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY")
CUTOUT_OPS = OPS + ("Cutout",)  # the op list of RandAugment(..., cutout=True)
MAX_MAGNITUDE = 30
FILL = (128, 128, 128)  # grey for pixels that geometric ops bring in, and Cutout's square
CUTOUT_CONST = 40  # official Cutout half-side in px at f=1 on 224-px images (cutout_const)


def cutout_half_side(f, side):
    """Cutout's half-side in pixels at magnitude fraction f on an image of height `side`."""
    return round(f * side * CUTOUT_CONST / 224)


def cutout(image, f, rng=None, centre=None):
    """The grey square of Cutout on an RGB PIL image; `centre` = (cy, cx) fixes its
    centre, otherwise it is drawn from `rng` uniformly over all pixels."""
    width, height = image.size
    h = cutout_half_side(f, height)
    if h == 0:
        return image
    if centre is None:
        if rng is None:
            raise ValueError("Cutout needs rng= or centre= to place its square. Received: rng=None, centre=None")
        cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
    else:
        cy, cx = centre
    pixels = np.array(image)
    pixels[max(cy - h, 0):cy + h, max(cx - h, 0):cx + h] = FILL  # numpy clips the far ends
    return Image.fromarray(pixels)


def apply_op(image, op, f, sign=1, rng=None, centre=None):
    """Apply one operation to an RGB PIL image at magnitude fraction f in [0, 1].
    Only Cutout uses `rng` (to draw its centre) or `centre` (to fix it, for tests)."""
    if op == "Identity":
        return image
    if op == "Cutout":
        return cutout(image, f, rng, centre)
    if op == "AutoContrast":
        return ImageOps.autocontrast(image)
    if op == "Equalize":
        return ImageOps.equalize(image)
    if op == "Rotate":
        return image.rotate(sign * 30.0 * f, resample=Image.BILINEAR, fillcolor=FILL)
    if op == "Solarize":
        return ImageOps.solarize(image, threshold=int(round(255 * (1 - f))))
    if op == "Posterize":
        return ImageOps.posterize(image, 8 - int(round(4 * f)))
    if op in ("Color", "Contrast", "Brightness", "Sharpness"):
        return getattr(ImageEnhance, op)(image).enhance(1.0 + sign * 0.9 * f)
    if op in ("ShearX", "ShearY"):
        s = sign * 0.3 * f
        matrix = (1, s, 0, 0, 1, 0) if op == "ShearX" else (1, 0, 0, s, 1, 0)
        return image.transform(image.size, Image.AFFINE, matrix, Image.BILINEAR, fillcolor=FILL)
    if op in ("TranslateX", "TranslateY"):
        shift = sign * 0.45 * f * image.size[0 if op == "TranslateX" else 1]
        matrix = (1, 0, shift, 0, 1, 0) if op == "TranslateX" else (1, 0, 0, 0, 1, shift)
        return image.transform(image.size, Image.AFFINE, matrix, Image.BILINEAR, fillcolor=FILL)
    raise ValueError(f"unknown RandAugment op {op!r}; choose one of {CUTOUT_OPS}")


class RandAugment:
    """RandAugment with N ops at magnitude M (0..30) on one RGB PIL image per call;
    `cutout=True` adds Cutout to the paper's 14 ops (the official Noisy Student list).

    >>> augment = RandAugment(num_ops=2, magnitude=10)
    >>> image = augment(image, rng=np.random.default_rng(0))
    """

    def __init__(self, num_ops=2, magnitude=10, cutout=False):
        if not isinstance(cutout, bool):
            raise ValueError(f"cutout must be True or False. Received: cutout={cutout!r}")
        self.ops = CUTOUT_OPS if cutout else OPS
        if not (isinstance(num_ops, int) and 0 <= num_ops <= len(self.ops)):
            raise ValueError(f"num_ops must be an int in [0, {len(self.ops)}]. Received: num_ops={num_ops}")
        if not 0 <= magnitude <= MAX_MAGNITUDE:
            raise ValueError(f"magnitude must be in [0, {MAX_MAGNITUDE}]. Received: magnitude={magnitude}")
        self.num_ops = num_ops
        self.magnitude = magnitude
        self.cutout = cutout

    def __call__(self, image, rng):
        f = self.magnitude / MAX_MAGNITUDE
        for op in rng.choice(self.ops, size=self.num_ops):
            image = apply_op(image, op, f, sign=rng.choice((-1, 1)), rng=rng)
        return image


def flip_and_crop(images, rng, pad=4):
    """The usual CIFAR augmentation on a uint8 batch (n, h, w, c): a random horizontal
    flip and a random crop from the image padded by `pad` reflected pixels."""
    n, h, w, _ = images.shape
    flip = rng.random(n) < 0.5
    images = np.where(flip[:, None, None, None], images[:, :, ::-1], images)
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    dy, dx = rng.integers(0, 2 * pad + 1, size=(2, n))
    return np.stack([padded[i, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def augment_batch(images, rng, randaugment=None, flip_crop=True):
    """RandAugment each image (when given), then flip and crop (when asked);
    uint8 (n, h, w, 3) in, uint8 of the same shape out."""
    if randaugment is not None:
        images = np.stack([np.asarray(randaugment(Image.fromarray(im), rng)) for im in images])
    return flip_and_crop(images, rng) if flip_crop else images
