"""RandAugment, flip and pad-and-crop on the accelerator: `keras.ops` / `keras.random` only.

The same 14 operations and ranges as `noisy.randaugment` (its table is imported, not
copied), plus an optional 15th, Cutout, applied per image inside the compiled train step
on TensorFlow or JAX, under jit:

    augment = DeviceAugment(num_ops=2, magnitude=10, flip_crop=True)
    trainer = keras.Sequential([augment, model])   # fit `trainer`, save/evaluate `model`

Each image draws its own `num_ops` operations (uniform, with replacement) and its own
sign per operation. Under jit a per-image choice cannot branch, so `apply_ops` computes
every operation for the whole batch and keeps, per image, the one it drew: the five
geometric operations are one batched affine warp (each image gets its own matrix), the
four ImageEnhance operations one blend (each image gets its own degenerate image and
factor), the rest are a few elementwise maps. At 32x32 that is cheap (see
docs/device-augment-cpu.txt).

Every operation follows PIL's arithmetic, so results equal `noisy.randaugment.apply_op`
up to float rounding (tests/test_device_augment.py states the tolerance per op):
- Rotate/Shear/Translate: PIL's affine convention, output pixel (x, y) samples input
  (a x' + b y' + c, d x' + e y' + f) at pixel centres x' = x + 0.5, y' = y + 0.5; bilinear
  with edge-clamped neighbours, truncated to an integer; a sample outside the image
  gets FILL. Rotate turns counter-clockwise about the centre, like `Image.rotate`.
- AutoContrast: per channel, (v - lo) * 255 / (hi - lo) truncated; Equalize: PIL's
  histogram lut, (step // 2 + pixels below v) // step with step = (pixels - pixels at
  the top value) // 255, clipped to 255.
- Color/Contrast/Brightness/Sharpness: `Image.blend(degenerate, image, factor)`,
  truncated and clipped; the degenerate image is the L (ITU-R 601-2 luma, PIL's rounded
  integer formula) image, a flat grey at the rounded mean of L, black, and the SMOOTH
  3x3 filter ([[1,1,1],[1,5,1],[1,1,1]] / 13, rounded, border pixels unchanged).
- Cutout (only with cutout=True): a FILL square of half-side h = round(f * size * 40 /
  224) (the official noisystudent cutout_const=40 at 224 px, scaled), rows cy-h..cy+h-1
  and columns cx-h..cx+h-1 clipped to the image, centre (cy, cx) drawn uniformly over
  all pixels; no sign; the identity where h == 0.

Values stay integers 0..255 held in float32 throughout, like PIL's uint8 images.
"""
import keras
import numpy as np
from keras import ops

from noisy.randaugment import CUTOUT_OPS, FILL, MAX_MAGNITUDE, OPS, cutout_half_side

PAPER_OPS = OPS  # the paper's 14
DEVICE_OPS = CUTOUT_OPS  # op_index counts in this tuple; Cutout is drawn only with cutout=True
GEOMETRIC = ("Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY")
BLENDS = ("Color", "Contrast", "Brightness", "Sharpness")


def _rotate_matrix(degrees, w, h):
    """PIL's `Image.rotate` matrix (expand=False, centre of the image), in double precision."""
    angle = -np.radians(degrees % 360.0)
    a, b = round(np.cos(angle), 15), round(np.sin(angle), 15)
    d, e = round(-np.sin(angle), 15), round(np.cos(angle), 15)
    cx, cy = w / 2, h / 2
    return a, b, a * -cx + b * -cy + cx, d, e, d * -cx + e * -cy + cy


def _tables(f, h, w):
    """Per (op, sign) constants, computed in double like PIL then cast: the affine matrix
    (identity for non-geometric ops) and the blend factor (1 for non-blend ops)."""
    matrices = np.tile(np.array([1, 0, 0, 0, 1, 0], np.float64), (len(DEVICE_OPS), 2, 1))
    factors = np.ones((len(DEVICE_OPS), 2))
    for s, sign in enumerate((-1, 1)):
        shear, shift = sign * 0.3 * f, sign * 0.45 * f
        matrices[DEVICE_OPS.index("Rotate"), s] = _rotate_matrix(sign * 30.0 * f, w, h)
        matrices[DEVICE_OPS.index("ShearX"), s] = (1, shear, 0, 0, 1, 0)
        matrices[DEVICE_OPS.index("ShearY"), s] = (1, 0, 0, shear, 1, 0)
        matrices[DEVICE_OPS.index("TranslateX"), s] = (1, 0, shift * w, 0, 1, 0)
        matrices[DEVICE_OPS.index("TranslateY"), s] = (1, 0, 0, 0, 1, shift * h)
        for op in BLENDS:
            factors[DEVICE_OPS.index(op), s] = 1.0 + sign * 0.9 * f
    return (matrices.reshape(-1, 6).astype(np.float32), factors.reshape(-1).astype(np.float32))


def _gather_pixels(images, y, x):
    """images (n, h, w, c), integer y, x (n, h', w') -> (n, h', w', c): images[i, y, x]."""
    n, (h, w, c) = ops.shape(images)[0], images.shape[1:]
    flat = ops.reshape(images, (-1, c))
    base = ops.reshape(ops.arange(n, dtype="int32") * (h * w), (-1, 1, 1))
    return ops.take(flat, base + y * w + x, axis=0)


def affine_warp(images, matrices):
    """PIL `Image.transform(size, AFFINE, matrix, BILINEAR, fillcolor=FILL)` per image;
    images float32 (n, h, w, c), matrices float32 (n, 6)."""
    h, w = images.shape[1], images.shape[2]
    ys, xs = np.mgrid[:h, :w].astype(np.float32) + 0.5
    m = [ops.reshape(matrices[:, i], (-1, 1, 1)) for i in range(6)]
    sx = m[0] * xs + m[1] * ys + m[2]
    sy = m[3] * xs + m[4] * ys + m[5]
    inside = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
    sx, sy = sx - 0.5, sy - 0.5
    x0, y0 = ops.floor(sx), ops.floor(sy)
    dx, dy = ops.expand_dims(sx - x0, -1), ops.expand_dims(sy - y0, -1)
    x0, y0 = ops.cast(x0, "int32"), ops.cast(y0, "int32")
    xa, xb = ops.clip(x0, 0, w - 1), ops.clip(x0 + 1, 0, w - 1)
    ya, yb = ops.clip(y0, 0, h - 1), ops.clip(y0 + 1, 0, h - 1)
    top_left, top_right = _gather_pixels(images, ya, xa), _gather_pixels(images, ya, xb)
    bottom_left, bottom_right = _gather_pixels(images, yb, xa), _gather_pixels(images, yb, xb)
    top = top_left + (top_right - top_left) * dx
    bottom = bottom_left + (bottom_right - bottom_left) * dx
    value = ops.floor(top + (bottom - top) * dy)
    return ops.where(ops.expand_dims(inside, -1), value, ops.convert_to_tensor(FILL, "float32"))


def _luma(images):
    """PIL's RGB -> L: (19595 R + 38470 G + 7471 B + 0x8000) >> 16 (exact in float32)."""
    weights = ops.convert_to_tensor([19595.0, 38470.0, 7471.0], "float32")
    return ops.floor((ops.sum(images * weights, axis=-1, keepdims=True) + 32768.0) / 65536.0)


def _smooth(images):
    """PIL's ImageFilter.SMOOTH: 3x3 [[1,1,1],[1,5,1],[1,1,1]] / 13, rounded; border kept."""
    h, w = images.shape[1], images.shape[2]
    total = 4.0 * images[:, 1:h - 1, 1:w - 1]
    for i in range(3):
        for j in range(3):
            total = total + images[:, i:h - 2 + i, j:w - 2 + j]
    inner = ops.pad(ops.floor(total / 13.0 + 0.5), ((0, 0), (1, 1), (1, 1), (0, 0)))
    border = np.ones((1, h, w, 1), bool)
    border[:, 1:-1, 1:-1] = False
    return ops.where(border, images, inner)


def _autocontrast(images):
    lo = ops.min(images, axis=(1, 2), keepdims=True)
    hi = ops.max(images, axis=(1, 2), keepdims=True)
    spread = ops.where(hi > lo, hi - lo, 1.0)
    stretched = ops.clip(ops.floor((images - lo) * (255.0 / spread)), 0, 255)
    return ops.where(hi > lo, stretched, images)


def _histogram(images):
    """(n, h, w, c) integer values -> (n, c, 256) counts: one segment sum (a scatter-add)
    over bins image * c * 256 + channel * 256 + value. (A one-hot contraction was 12x
    slower at 32x32 on the CPU.)"""
    h, w, c = images.shape[1:]
    n = ops.shape(images)[0]
    values = ops.cast(ops.reshape(images, (-1, h * w, c)), "int32")
    bins = (ops.reshape(ops.arange(n, dtype="int32"), (-1, 1, 1)) * c + np.arange(c, dtype=np.int32)) * 256 + values
    bins = ops.reshape(bins, (-1,))
    return ops.reshape(ops.segment_sum(ops.ones_like(bins, "float32"), bins, num_segments=n * c * 256), (-1, c, 256))


def _equalize(images):
    h, w, c = images.shape[1:]
    hist = _histogram(images)  # (n, c, 256)
    top = ops.max(images, axis=(1, 2))  # (n, c): the last non-empty bin
    bottom = ops.min(images, axis=(1, 2))
    at_top = ops.sum(hist * ops.one_hot(ops.cast(top, "int32"), 256), axis=-1)
    step = ops.floor((h * w - at_top) / 255.0)
    below = ops.cumsum(hist, axis=-1) - hist  # pixels with a smaller value
    safe_step = ops.expand_dims(ops.maximum(step, 1.0), -1)
    lut = ops.minimum(ops.floor((ops.floor(safe_step / 2) + below) / safe_step), 255.0)
    values = ops.cast(ops.transpose(ops.reshape(images, (-1, h * w, c)), (0, 2, 1)), "int32")
    mapped = ops.reshape(ops.transpose(ops.take_along_axis(lut, values, axis=2), (0, 2, 1)), (-1, h, w, c))
    keep = ops.reshape((top > bottom) & (step > 0), (-1, 1, 1, c))
    return ops.where(keep, mapped, images)


def _cutout(images, centre, half):
    h, w = images.shape[1], images.shape[2]
    cy, cx = ops.reshape(centre[:, 0], (-1, 1, 1)), ops.reshape(centre[:, 1], (-1, 1, 1))
    rows, cols = np.arange(h).reshape(1, h, 1), np.arange(w).reshape(1, 1, w)
    inside = (rows >= cy - half) & (rows < cy + half) & (cols >= cx - half) & (cols < cx + half)
    return ops.where(ops.expand_dims(inside, -1), ops.convert_to_tensor(FILL, "float32"), images)


def apply_ops(images, op_index, sign, f, centre=None):
    """Apply to image i the operation DEVICE_OPS[op_index[i]] with sign sign[i] at magnitude
    fraction f (a Python float in [0, 1]); the pure function DeviceAugment uses.

    images:   float32 (n, h, w, 3), integer values 0..255
    op_index: int (n,), indices into DEVICE_OPS
    sign:     (n,) of -1 / +1 (ignored by unsigned ops)
    centre:   int (n, 2) Cutout centres (row, column); None: Cutout is not computed
              (an image that drew it is returned unchanged)
    Returns float32 (n, h, w, 3), integer values 0..255.
    """
    images = ops.cast(images, "float32")
    h, w = images.shape[1], images.shape[2]
    op_index = ops.cast(op_index, "int32")
    column = op_index * 2 + ops.cast(ops.cast(sign, "float32") > 0, "int32")
    matrices, factors = _tables(f, h, w)
    out = images  # Identity
    is_op = {op: ops.reshape(op_index == DEVICE_OPS.index(op), (-1, 1, 1, 1)) for op in DEVICE_OPS}

    geometric = is_op["Rotate"] | is_op["ShearX"] | is_op["ShearY"] | is_op["TranslateX"] | is_op["TranslateY"]
    out = ops.where(geometric, affine_warp(images, ops.take(matrices, column, axis=0)), out)

    luma = _luma(images)
    grey = ops.floor((2.0 * ops.sum(luma, axis=(1, 2, 3), keepdims=True) + h * w) / (2.0 * h * w))
    degenerate = ops.where(is_op["Color"], luma, ops.where(is_op["Contrast"], grey, 0.0))
    degenerate = ops.where(is_op["Sharpness"], _smooth(images), degenerate)
    factor = ops.reshape(ops.take(factors, column, axis=0), (-1, 1, 1, 1))
    blended = ops.clip(ops.floor(degenerate + factor * (images - degenerate)), 0, 255)
    blends = is_op["Color"] | is_op["Contrast"] | is_op["Brightness"] | is_op["Sharpness"]
    out = ops.where(blends, blended, out)

    threshold = int(round(255 * (1 - f)))
    out = ops.where(is_op["Solarize"], ops.where(images >= threshold, 255.0 - images, images), out)
    quantum = 2.0 ** int(round(4 * f))
    out = ops.where(is_op["Posterize"], ops.floor(images / quantum) * quantum, out)
    out = ops.where(is_op["AutoContrast"], _autocontrast(images), out)
    out = ops.where(is_op["Equalize"], _equalize(images), out)
    if centre is not None:
        out = ops.where(is_op["Cutout"], _cutout(images, ops.cast(centre, "int32"), cutout_half_side(f, h)), out)
    return out


def flip_and_crop(images, flip, dy, dx, pad=4):
    """Like `noisy.randaugment.flip_and_crop`: image i is mirrored left-right where flip[i],
    then cut at offset (dy[i], dx[i]) in 0..2*pad from the image padded by `pad` reflected
    pixels; one gather, no padded copy. images (n, h, w, c) -> same shape and dtype."""
    h, w = images.shape[1], images.shape[2]

    def reflect(i, size):  # numpy's 'reflect' padding: -1 -> 1, size -> size - 2
        i = ops.abs(i)
        return ops.where(i > size - 1, 2 * (size - 1) - i, i)

    dy, dx = ops.reshape(ops.cast(dy, "int32"), (-1, 1, 1)), ops.reshape(ops.cast(dx, "int32"), (-1, 1, 1))
    y = reflect(dy - pad + np.arange(h, dtype=np.int32).reshape(1, h, 1), h)
    x = reflect(dx - pad + np.arange(w, dtype=np.int32).reshape(1, 1, w), w)
    x = ops.where(ops.reshape(flip, (-1, 1, 1)), w - 1 - x, x)
    return _gather_pixels(images, y + 0 * x, x + 0 * y)


@keras.saving.register_keras_serializable(package="noisy")
class DeviceAugment(keras.layers.Layer):
    """Per-image RandAugment (N ops at magnitude M on the 0..30 scale), then flip and
    pad-and-crop, inside the model: put it in front of the model for training only,

        trainer = keras.Sequential([DeviceAugment(2, 10), model])

    num_ops:   operations per image (0..len of the op list)
    magnitude: M on the 0..30 scale (f = M / 30), like `RandAugment`
    flip_crop: the CIFAR flip (p=0.5) and 4-px reflect pad-and-crop after RandAugment
    cutout:    add Cutout as a 15th operation (the default list is the paper's 14)
    seed:      seed of the layer's SeedGenerator

    Input uint8 or float 0..255, (n, h, w, 3). In training the output is float32 with
    integer values 0..255 (what PIL's uint8 would hold); at inference (training=False
    or unset) the input is returned untouched, whatever its dtype.
    """

    def __init__(self, num_ops=2, magnitude=10, flip_crop=True, cutout=False, seed=None, **kwargs):
        super().__init__(**kwargs)
        ops_count = len(PAPER_OPS) + bool(cutout)
        if not (isinstance(num_ops, int) and not isinstance(num_ops, bool) and 0 <= num_ops <= ops_count):
            raise ValueError(f"num_ops must be an int in [0, {ops_count}]. Received: num_ops={num_ops}")
        if isinstance(magnitude, bool) or not isinstance(magnitude, (int, float)) \
                or not 0 <= magnitude <= MAX_MAGNITUDE:
            raise ValueError(f"magnitude must be a number in [0, {MAX_MAGNITUDE}]. Received: magnitude={magnitude}")
        for name, value in (("flip_crop", flip_crop), ("cutout", cutout)):
            if not isinstance(value, bool):
                raise ValueError(f"{name} must be True or False. Received: {name}={value!r}")
        self.num_ops, self.magnitude = num_ops, magnitude
        self.flip_crop, self.cutout, self.seed = flip_crop, cutout, seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def draw(self, n, h, w):
        """The random choices for a batch of n images of h x w pixels, as a dict:
        op_index, sign and (with cutout) centre, each with a leading axis of num_ops;
        with flip_crop also flip (bool), dy and dx (0..8), each (n,)."""
        seed = self.seed_generator
        k = self.num_ops
        draws = {"op_index": keras.random.randint((k, n), 0, len(PAPER_OPS) + self.cutout, dtype="int32", seed=seed),
                 "sign": 2 * keras.random.randint((k, n), 0, 2, dtype="int32", seed=seed) - 1}
        if self.cutout:
            draws["centre"] = ops.stack([keras.random.randint((k, n), 0, h, dtype="int32", seed=seed),
                                         keras.random.randint((k, n), 0, w, dtype="int32", seed=seed)], -1)
        if self.flip_crop:
            draws["flip"] = keras.random.uniform((n,), seed=seed) < 0.5
            draws["dy"] = keras.random.randint((n,), 0, 9, dtype="int32", seed=seed)
            draws["dx"] = keras.random.randint((n,), 0, 9, dtype="int32", seed=seed)
        return draws

    def call(self, images, training=False):
        if not training:
            return images
        draws = self.draw(ops.shape(images)[0], images.shape[1], images.shape[2])
        out = ops.cast(images, "float32")
        for i in range(self.num_ops):
            out = apply_ops(out, draws["op_index"][i], draws["sign"][i], self.magnitude / MAX_MAGNITUDE,
                            draws["centre"][i] if self.cutout else None)
        if self.flip_crop:
            out = flip_and_crop(out, draws["flip"], draws["dy"], draws["dx"])
        return out

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "num_ops": self.num_ops, "magnitude": self.magnitude,
                "flip_crop": self.flip_crop, "cutout": self.cutout, "seed": self.seed}


def with_device_noise(model, num_ops, magnitude, cutout, seed):
    """The model `fit` trains when the input noise runs on the accelerator: DeviceAugment
    (RandAugment, flip and crop) in front of `model`, active in training only."""
    augment = DeviceAugment(num_ops, magnitude, flip_crop=True, cutout=cutout, seed=seed, name="device_noise")
    return keras.Sequential([keras.Input(model.input_shape[1:]), augment, model], name="trainer")


def without_device_noise(trainer):
    """The plain model inside a `with_device_noise` trainer (or the model itself): what is
    saved, so that it loads without this repository."""
    if isinstance(trainer, keras.Sequential) and isinstance(trainer.layers[0], DeviceAugment):
        return trainer.layers[-1]
    return trainer
