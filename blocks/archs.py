"""ResNet architectures as data: a stem, a stage table, and the block options they share.

One builder (`blocks.models`) turns any `Arch` plus any registered block variant into a model, so a
new depth or a new stem is a table entry here, never new model code.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple, Union

# Stage tables: one (filters, number of blocks, stride of the stage's first block) per stage.
STAGES = {
    18: ((64, 2, 1), (128, 2, 2), (256, 2, 2), (512, 2, 2)),
    34: ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)),
}

Padding = Union[str, int]


@dataclasses.dataclass(frozen=True)
class StemSpec:
    """conv -> BN -> ReLU -> max pool at the network's entry.

    `conv_padding` and `pool_padding` are "same", "valid", or an int: that many zeros on every
    side, then a "valid" op (the symmetric padding of the standard ImageNet ResNet).
    """

    filters: int
    kernel_size: int
    strides: int
    conv_padding: Padding
    use_bias: bool
    pool_size: int
    pool_strides: int
    pool_padding: Padding


@dataclasses.dataclass(frozen=True)
class Arch:
    """Everything that distinguishes one ResNet family from another, except the block code.

    Attributes:
        use_bias: whether every conv (stem, blocks, shortcut) has a bias.
        shortcut_bn: whether the 1x1 projection shortcut is followed by BatchNormalization.
        padding: "same" (TF's, asymmetric for strided convs) or "symmetric" (one zero on each
            side before a strided 3x3 conv, as in the standard ImageNet ResNet).
    """

    name: str
    stem: StemSpec
    use_bias: bool
    shortcut_bn: bool
    padding: str
    input_shape: Tuple[int, int, int]
    num_classes: int
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    description: str = ""


ARCHS = {
    # The article's network: biases everywhere, projection shortcut without BN,
    # a stride-1 2x2 max pool after a "valid" 3x3 stem, Keras defaults for BN.
    "seed": Arch(
        name="seed",
        stem=StemSpec(64, 3, 1, "valid", True, 2, 1, "same"),
        use_bias=True,
        shortcut_bn=False,
        padding="same",
        input_shape=(32, 32, 3),
        num_classes=10,
        description="the article's ResNet18: 3x3 stem, biased convs, shortcut conv without BN",
    ),
    # He et al. 2016 / torchvision: 7x7/2 stem, 3x3/2 max pool, bias-free convs, BN on shortcut,
    # and PyTorch's BN constants (epsilon 1e-5, momentum 0.1 there = 0.9 in Keras's convention),
    # as keras-hub's ResNetBackbone too: pretrained weights give the same logits.
    "imagenet": Arch(
        name="imagenet",
        stem=StemSpec(64, 7, 2, 3, False, 3, 2, 1),
        use_bias=False,
        shortcut_bn=True,
        padding="symmetric",
        input_shape=(224, 224, 3),
        num_classes=1000,
        bn_momentum=0.9,
        bn_epsilon=1e-5,
        description="the standard ImageNet ResNet: 7x7/2 stem, max pool 3x3/2, bias-free convs",
    ),
}


@dataclasses.dataclass(frozen=True)
class BlockPlan:
    """One block of a network: its canonical name and the arguments every variant receives."""

    name: str
    filters: int
    strides: int


def get_arch(arch: Union[str, Arch]) -> Arch:
    if isinstance(arch, Arch):
        return arch
    if arch not in ARCHS:
        raise ValueError(f"Unknown arch. Expected one of {sorted(ARCHS)}; Received: arch={arch!r}")
    return ARCHS[arch]


def get_stages(depth: int):
    if depth not in STAGES:
        raise ValueError(
            f"Unsupported depth. Expected one of {sorted(STAGES)}; Received: depth={depth!r}"
        )
    return STAGES[depth]


def plan(depth: int) -> list:
    """The blocks of a ResNet of `depth`, named `layer{stage}.{index}` with stages from 1."""
    blocks = []
    for s, (filters, repeats, stride) in enumerate(get_stages(depth), start=1):
        for b in range(repeats):
            blocks.append(BlockPlan(f"layer{s}.{b}", filters, stride if b == 0 else 1))
    return blocks


def conv_output_size(size: Optional[int], kernel: int, strides: int, padding: Padding):
    """Spatial output size of a conv or pool along one axis (None stays None)."""
    if size is None:
        return None
    if padding == "same":
        return -(-size // strides)
    pad = 0 if padding == "valid" else 2 * int(padding)
    out = (size + pad - kernel) // strides + 1
    return out if out > 0 else 0


def stem_output_size(stem: StemSpec, size: Optional[int]):
    size = conv_output_size(size, stem.kernel_size, stem.strides, stem.conv_padding)
    return conv_output_size(size, stem.pool_size, stem.pool_strides, stem.pool_padding)
