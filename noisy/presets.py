"""The model presets by name and their shapes (noisy/resnet.py builds them), without
Keras: a script checks --model before TensorFlow loads."""
from typing import NamedTuple


class Bottleneck(NamedTuple):
    """A bottleneck ResNet: 5x5 stem conv, then stages of bottleneck blocks (x4 expansion)."""
    stem: int        # stem filters
    depths: tuple    # blocks per stage
    widths: tuple    # bottleneck width per stage (output: 4x)
    strides: tuple   # stride of each stage's first block


class ResNet9(NamedTuple):
    """The DAWNBench / airbench ResNet: per stage a widening 3x3 conv, a 2x2 max-pool, then
    basic residual blocks (two 3x3 convs)."""
    stem: int        # stem filters
    widths: tuple    # filters per stage; every stage halves the image
    blocks: tuple    # residual blocks per stage


PRESETS = {
    "resnet50": Bottleneck(stem=32, depths=(3, 4, 6, 3), widths=(64, 128, 256, 512), strides=(1, 2, 1, 2)),  # the article's
    "resnet101": Bottleneck(stem=32, depths=(3, 4, 23, 3), widths=(64, 128, 256, 512), strides=(1, 2, 1, 2)),  # deeper
    "wide_resnet50": Bottleneck(stem=48, depths=(3, 4, 6, 3), widths=(96, 192, 384, 768), strides=(1, 2, 1, 2)),  # 1.5x wider
    "small": Bottleneck(stem=24, depths=(1, 2, 2, 1), widths=(24, 48, 96, 192), strides=(1, 2, 1, 2)),  # ~1.3M params
    "tiny": Bottleneck(stem=16, depths=(1, 1, 1, 1), widths=(16, 32, 48, 96), strides=(1, 2, 1, 2)),  # ~0.3M, tests
    "resnet9_w16": ResNet9(stem=16, widths=(32, 64, 128), blocks=(1, 0, 1)),   # ~0.4M params, the CPU experiment
    "resnet9_w24": ResNet9(stem=24, widths=(48, 96, 192), blocks=(1, 0, 1)),   # ~0.9M params
    "resnet9_w32": ResNet9(stem=32, widths=(64, 128, 256), blocks=(1, 0, 1)),  # ~1.6M params
}
MODELS = tuple(PRESETS)  # every name build_resnet accepts
