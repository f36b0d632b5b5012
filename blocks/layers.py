"""The pieces every variant shares: the block signature, leaf layers, the entry, stem and head.

Variants differ only in how they compose a block's leaf layers (a Layer subclass, a functional
graph, an XLA-compiled function, ...). The leaf layers themselves, and their names, come from here,
so that `layer1.0.conv1.kernel` means the same tensor in every variant.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import tensorflow as tf

from blocks import _compat, checks
from blocks._compat import keras
from blocks.archs import StemSpec

BLOCK_PADDINGS = ("same", "symmetric")
STRIDES = (1, 2)


@dataclasses.dataclass(frozen=True)
class BlockArgs:
    """The one signature of every block variant, checked once.

    Every registered `Variant.block` is called as
    `block(filters, strides=1, *, use_bias=True, shortcut_bn=False, padding="same",
    bn_momentum=0.99, bn_epsilon=1e-3, data_format="channels_last", dtype=None, name=None)`.
    """

    filters: int
    strides: int = 1
    use_bias: bool = True
    shortcut_bn: bool = False
    padding: str = "same"
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    data_format: str = "channels_last"
    dtype: object = None
    name: Optional[str] = None

    def __post_init__(self):
        checks.positive_int(self.filters, "filters")
        checks.int_choice(self.strides, STRIDES, "strides")
        checks.choice(self.padding, BLOCK_PADDINGS, "padding")
        checks.data_format(self.data_format)
        checks.fraction(self.bn_momentum, "bn_momentum")
        checks.positive_number(self.bn_epsilon, "bn_epsilon")

    def config(self) -> dict:
        """The constructor arguments, JSON-friendly (for `get_config`)."""
        cfg = dataclasses.asdict(self)
        del cfg["dtype"], cfg["name"]
        return cfg


def conv(filters, kernel_size, strides, padding, *, use_bias, data_format, dtype, name):
    return _compat.conv2d(
        filters=filters,
        kernel_size=kernel_size,
        strides=strides,
        padding=padding,
        use_bias=use_bias,
        data_format=data_format,
        dtype=dtype,
        name=name,
    )


def batch_norm(*, data_format, momentum, epsilon, dtype, name):
    return _compat.batch_norm(
        axis=1 if data_format == "channels_first" else 3,
        momentum=momentum,
        epsilon=epsilon,
        dtype=dtype,
        name=name,
    )


def zero_pad(pad: int, *, data_format, dtype, name):
    return keras.layers.ZeroPadding2D(pad, data_format=data_format, dtype=dtype, name=name)


@dataclasses.dataclass
class BlockLayers:
    """The leaf layers of one BasicBlock; `None` where the block has no such layer."""

    pad1: Optional[object]
    conv1: object
    bn1: object
    conv2: object
    bn2: object
    downsample_conv: Optional[object]
    downsample_bn: Optional[object]


def needs_projection(args: BlockArgs, in_channels: int) -> bool:
    """A 1x1 conv shortcut where the residual's shape differs from the input's."""
    return args.strides != 1 or in_channels != args.filters


def block_layers(args: BlockArgs, in_channels: int, prefix: str = "") -> BlockLayers:
    """Create the leaf layers of a BasicBlock with input of `in_channels`.

    `prefix` goes in front of every layer name: empty inside a block layer (which is itself
    named `layer1.0`), `layer1.0.` when the leaves sit directly in a functional graph.
    """
    common = dict(data_format=args.data_format, dtype=args.dtype)
    symmetric = args.padding == "symmetric" and args.strides > 1
    pad1 = zero_pad(1, name=f"{prefix}conv1.pad", **common) if symmetric else None
    conv_kw = dict(use_bias=args.use_bias, **common)
    bn_kw = dict(momentum=args.bn_momentum, epsilon=args.bn_epsilon, **common)
    ds_conv = ds_bn = None
    if needs_projection(args, in_channels):
        ds_conv = conv(
            args.filters, 1, args.strides, "valid", name=f"{prefix}downsample.conv", **conv_kw
        )
        if args.shortcut_bn:
            ds_bn = batch_norm(name=f"{prefix}downsample.bn", **bn_kw)
    return BlockLayers(
        pad1=pad1,
        conv1=conv(
            args.filters,
            3,
            args.strides,
            "valid" if symmetric else "same",
            name=f"{prefix}conv1",
            **conv_kw,
        ),
        bn1=batch_norm(name=f"{prefix}bn1", **bn_kw),
        conv2=conv(args.filters, 3, 1, "same", name=f"{prefix}conv2", **conv_kw),
        bn2=batch_norm(name=f"{prefix}bn2", **bn_kw),
        downsample_conv=ds_conv,
        downsample_bn=ds_bn,
    )


def build_chain(layers, input_shape) -> tuple:
    """Build `layers` (None entries skipped) as a chain from `input_shape`, as a first call would;
    returns the chain's output shape."""
    shape = tuple(input_shape)
    for layer in layers:
        if layer is None:
            continue
        if not layer.built:
            _compat.build_layer(layer, shape)
        shape = tuple(layer.compute_output_shape(shape))
    return shape


def child_layers(layer) -> list:
    """The layers directly held by `layer` (in a model: its layers; in a block: its sublayers)."""
    return list(layer._flatten_layers(include_self=False, recursive=False))


def block_output_shape(args: BlockArgs, input_shape) -> tuple:
    shape = list(input_shape)
    if args.data_format == "channels_last":
        h, w = 1, 2
        shape[3] = args.filters
    else:
        h, w = 2, 3
        shape[1] = args.filters
    for axis in (h, w):
        if shape[axis] is not None:
            shape[axis] = -(-shape[axis] // args.strides)
    return tuple(shape)


@dataclasses.dataclass
class StemLayers:
    """The stem's leaf layers; `None` where the stem pads inside the op instead."""

    pad: Optional[object]
    conv: object
    bn: object
    relu: object
    pool_pad: Optional[object]
    pool: object

    def chain(self) -> list:
        return [
            layer
            for layer in (self.pad, self.conv, self.bn, self.relu, self.pool_pad, self.pool)
            if layer is not None
        ]


def _explicit(padding):
    """(zeros on every side or None, the op's own padding) for a StemSpec padding."""
    return (padding, "valid") if isinstance(padding, int) else (None, padding)


def stem_layers(
    stem: StemSpec, *, data_format, bn_momentum, bn_epsilon, dtype, prefix: str = "stem."
) -> StemLayers:
    """The stem's layers: conv -> BN -> ReLU -> max pool, with explicit zero padding where the
    spec asks for it; named `stem.conv`, `stem.bn`, ... (`prefix` + name) in every variant."""
    common = dict(data_format=data_format, dtype=dtype)
    conv_pad, conv_padding = _explicit(stem.conv_padding)
    pool_pad, pool_padding = _explicit(stem.pool_padding)
    return StemLayers(
        pad=None if conv_pad is None else zero_pad(conv_pad, name=f"{prefix}pad", **common),
        conv=conv(
            stem.filters,
            stem.kernel_size,
            stem.strides,
            conv_padding,
            use_bias=stem.use_bias,
            name=f"{prefix}conv",
            **common,
        ),
        bn=batch_norm(momentum=bn_momentum, epsilon=bn_epsilon, name=f"{prefix}bn", **common),
        relu=keras.layers.ReLU(dtype=dtype, name=f"{prefix}relu"),
        pool_pad=(
            None if pool_pad is None else zero_pad(pool_pad, name=f"{prefix}pool_pad", **common)
        ),
        pool=_compat.max_pool2d(
            pool_size=stem.pool_size,
            strides=stem.pool_strides,
            padding=pool_padding,
            name=f"{prefix}pool",
            **common,
        ),
    )


def default_stem(spec: StemSpec, **kwargs) -> list:
    """The stem of every variant that does not bring its own (`Variant.stem`), as a layer chain."""
    return stem_layers(spec, **kwargs).chain()


def head_layers(num_classes: int, *, data_format, dtype) -> list:
    """Global average pool and the logits layer `fc`.

    The logits layer computes in float32 under every policy (float64 in the float64 reference):
    a softmax or a loss on bfloat16 logits loses precision, and the layer is a negligible share
    of the work.
    """
    return [
        keras.layers.GlobalAveragePooling2D(data_format=data_format, dtype=dtype, name="pool"),
        keras.layers.Dense(num_classes, dtype=outer_dtype(dtype), name="fc"),
    ]


def outer_dtype(policy) -> str:
    """The dtype of a model's images and logits: float32, or float64 for the float64 reference."""
    return "float64" if policy.compute_dtype == "float64" else "float32"


@_compat.register_serializable(package="blocks")
class Entry(keras.layers.Layer):
    """The model's first layer: moves the caller's layout to the variant's, once.

    It also records which variant the model was built from, so the name survives a save/load.
    """

    def __init__(
        self, input_format="channels_last", data_format="channels_last", variant=None, **kwargs
    ):
        super().__init__(**kwargs)
        self.input_format = checks.data_format(input_format, "input_format")
        self.data_format = checks.data_format(data_format)
        self.variant = variant

    def _perm(self):
        if self.input_format == self.data_format:
            return None
        return (0, 3, 1, 2) if self.data_format == "channels_first" else (0, 2, 3, 1)

    def call(self, inputs):
        perm = self._perm()
        return inputs if perm is None else tf.transpose(inputs, perm)

    def compute_output_shape(self, input_shape):
        perm = self._perm()
        shape = tuple(input_shape)
        return shape if perm is None else tuple(shape[p] for p in perm)

    def get_config(self):
        config = super().get_config()
        config.update(
            input_format=self.input_format, data_format=self.data_format, variant=self.variant
        )
        return config
