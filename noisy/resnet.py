"""CIFAR-style bottleneck ResNets with the two model noises of Noisy Student.

The default preset is the article's ResNet50 for 32x32 images: a 5x5 stem conv (32
filters, stride 1), bottleneck stages of [3, 4, 6, 3] blocks with widths 64/128/256/512
(x4 expansion), downsampling only at the first block of stages 2 and 4 (32 -> 16 -> 16
-> 8 pixels), the stride on each downsampling block's 3x3 conv (the README says why the
article's placement was changed).

Noise (training only; both are the identity at inference):
- dropout before the classifier (Noisy Student: 0.5);
- stochastic depth, per sample: residual block l of L keeps its branch with probability
  p_l = 1 - (l / L) * (1 - p_L), p_L = 0.8 at the last block (Huang et al. 2016).
  Keras' own `Dropout(rate, noise_shape=(None, 1, 1, 1))` is exactly that: it zeroes the
  whole branch of each image independently and scales survivors by 1 / p_l, so no new
  layer class is needed (Keras' EfficientNet does the same).

The `resnet9_*` presets are the fast CIFAR ResNet of the DAWNBench / airbench lineage
(Page 2018, "How to train your ResNet"; Jordan 2024, airbench): per stage a 3x3 conv that
widens, a 2x2 max-pool that halves the image, then basic residual blocks (two 3x3 convs).
They trade the bottleneck ResNet's full-resolution stages for width at low resolution,
so an image costs far fewer activations and FLOPs; that is what lets the whole Noisy
Student table run on two CPU cores (bench/effect.py --config=cpu). The same noises
apply: stochastic depth on their residual blocks, dropout before the classifier.
"""
import keras
from keras import layers

from noisy.presets import MODELS, PRESETS, Bottleneck, ResNet9  # noqa: F401  (MODELS: the names, for callers)

EXPANSION = 4  # a bottleneck block's output width over its inner width


def survival_probabilities(num_blocks, survival_last):
    """p_l = 1 - (l / L)(1 - p_L) for blocks l = 1..L (Huang et al. 2016, eq. 4)."""
    return [1.0 - (l / num_blocks) * (1.0 - survival_last) for l in range(1, num_blocks + 1)]


def _conv_bn(x, filters, kernel, stride, name, l2, relu=True, zero_gamma=False):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                      kernel_initializer="he_normal", kernel_regularizer=l2, name=name + "_conv")(x)
    x = layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name + "_bn",
                                  gamma_initializer="zeros" if zero_gamma else "ones")(x)
    return layers.Activation("relu", name=name + "_relu")(x) if relu else x


def _add_branch(shortcut, branch, survival, name):
    """shortcut + branch, the branch dropped per image with probability 1 - survival
    (stochastic depth; see the module docstring)."""
    if survival < 1.0:  # a block that never drops gets no layer
        branch = layers.Dropout(1.0 - survival, noise_shape=(None, 1, 1, 1), name=name + "_drop")(branch)
    return layers.Add(name=name + "_add")([shortcut, branch])


def _bottleneck(x, width, stride, survival, name, l2):
    shortcut = x
    out_filters = width * EXPANSION
    if stride != 1 or x.shape[-1] != out_filters:
        shortcut = _conv_bn(x, out_filters, 1, stride, name + "_short", l2, relu=False)
    y = _conv_bn(x, width, 1, 1, name + "_1", l2)
    y = _conv_bn(y, width, 3, stride, name + "_2", l2)  # stride on the 3x3, not on the 1x1
    # Zero-initialised last BN: every block starts as the identity (Goyal et al. 2017).
    y = _conv_bn(y, out_filters, 1, 1, name + "_3", l2, relu=False, zero_gamma=True)
    x = _add_branch(shortcut, y, survival, name)
    return layers.Activation("relu", name=name + "_out")(x)


def _basic(x, width, survival, name, l2):
    """Two 3x3 conv-BN(-ReLU) layers added to the input (no projection: same width)."""
    y = _conv_bn(x, width, 3, 1, name + "_1", l2)
    y = _conv_bn(y, width, 3, 1, name + "_2", l2, zero_gamma=True)
    return _add_branch(x, y, survival, name)


def _resnet9_trunk(x, preset, survival_last, l2):
    survival = iter(survival_probabilities(sum(preset.blocks), survival_last))
    x = _conv_bn(x, preset.stem, 3, 1, "stem", l2)
    for stage, (width, depth) in enumerate(zip(preset.widths, preset.blocks), start=1):
        x = _conv_bn(x, width, 3, 1, f"stage{stage}_widen", l2)
        x = layers.MaxPooling2D(2, name=f"stage{stage}_pool")(x)
        for block in range(depth):
            x = _basic(x, width, next(survival), f"stage{stage}_block{block + 1}", l2)
    return x


def build_resnet(preset="resnet50", num_classes=10, input_shape=(32, 32, 3),
                 dropout=0.0, survival_last=1.0, weight_decay=0.0):
    """Build a ResNet preset. Inputs are uint8-range pixels (0..255); outputs are softmax
    probabilities. `dropout` is the rate before the classifier; `survival_last` is p_L of
    stochastic depth (1.0 = off, Noisy Student: 0.8); `weight_decay` is applied as an L2
    penalty (weight_decay / 2) * |w|^2 on conv and dense kernels, not on BN or biases.
    It lives in the model rather than the optimizer so that it survives save and resume."""
    if preset not in MODELS:
        raise ValueError(f"unknown model preset {preset!r}; choose one of {MODELS}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout}")
    if not 0.0 < survival_last <= 1.0:
        raise ValueError(f"survival_last must be in (0, 1]. Received: survival_last={survival_last}")
    l2 = keras.regularizers.L2(weight_decay / 2) if weight_decay > 0 else None
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    spec = PRESETS[preset]
    if isinstance(spec, ResNet9):
        x = _resnet9_trunk(x, spec, survival_last, l2)
    else:
        survival = iter(survival_probabilities(sum(spec.depths), survival_last))
        x = _conv_bn(x, spec.stem, 5, 1, "stem", l2)
        for stage, (depth, width, stride) in enumerate(zip(spec.depths, spec.widths, spec.strides), start=1):
            for block in range(depth):
                x = _bottleneck(x, width, stride if block == 0 else 1, next(survival),
                                f"stage{stage}_block{block + 1}", l2)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    # float32 even under a mixed-precision policy: a bfloat16 softmax is too coarse.
    outputs = layers.Dense(num_classes, activation="softmax", kernel_regularizer=l2,
                           dtype="float32", name="classifier")(x)
    return keras.Model(inputs, outputs, name=preset)
