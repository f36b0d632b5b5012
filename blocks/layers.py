"""The pieces every variant shares: argument checks, leaf layers, the entry, the stem and the head.

Variants differ only in how they compose a block's leaf layers (a Layer subclass, a functional
graph, an XLA-compiled function, ...). The leaf layers themselves, and their names, come from here,
so that `layer1.0.conv1.kernel` means the same tensor in every variant.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import tensorflow as tf

from blocks import _compat
from blocks._compat import keras
from blocks.archs import StemSpec

DATA_FORMATS = ("channels_last", "channels_first")
BLOCK_PADDINGS = ("same", "symmetric")
STRIDES = (1, 2)


def normalize_data_format(data_format, arg_name: str = "data_format") -> str:
    if data_format not in DATA_FORMATS:
        raise ValueError(
            f"Invalid {arg_name}. Expected one of {list(DATA_FORMATS)}; "
            f"Received: {arg_name}={data_format!r}"
        )
    return data_format


def channel_axis(data_format: str) -> int:
    return -1 if data_format == "channels_last" else 1


def _positive_int(value, arg_name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(
            f"Invalid {arg_name}. Expected a positive int; Received: {arg_name}={value!r}"
        )
    return value


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
        _positive_int(self.filters, "filters")
        if isinstance(self.strides, bool) or self.strides not in STRIDES:
            raise ValueError(
                f"Invalid strides. Expected one of {list(STRIDES)}; "
                f"Received: strides={self.strides!r}"
            )
        if self.padding not in BLOCK_PADDINGS:
            raise ValueError(
                f"Invalid padding. Expected one of {list(BLOCK_PADDINGS)}; "
                f"Received: padding={self.padding!r}"
            )
        normalize_data_format(self.data_format)
        if not 0.0 <= float(self.bn_momentum) < 1.0:
            raise ValueError(
                f"Invalid bn_momentum. Expected 0 <= bn_momentum < 1; "
                f"Received: bn_momentum={self.bn_momentum!r}"
            )
        if not float(self.bn_epsilon) > 0.0:
            raise ValueError(
                "Invalid bn_epsilon. Expected bn_epsilon > 0; "
                f"Received: bn_epsilon={self.bn_epsilon!r}"
            )

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

    def all(self) -> list:
        return [
            layer
            for layer in (
                self.pad1,
                self.conv1,
                self.bn1,
                self.conv2,
                self.bn2,
                self.downsample_conv,
                self.downsample_bn,
            )
            if layer is not None
        ]


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


def in_channels_of(input_shape, data_format: str, who: str) -> int:
    shape = tuple(input_shape)
    if len(shape) != 4:
        raise ValueError(
            f"{who} expects a 4D input (batch, height, width, channels) or (batch, channels, "
            f"height, width); Received: input_shape={shape}"
        )
    channels = shape[channel_axis(data_format)]
    if channels is None:
        raise ValueError(
            f"{who} needs a known channel count on axis {channel_axis(data_format)} "
            f"(data_format={data_format!r}); Received: input_shape={shape}"
        )
    return int(channels)


def stem_layers(stem: StemSpec, *, data_format, bn_momentum, bn_epsilon, dtype) -> list:
    """The stem's layers in order; names `stem.conv`, `stem.bn`, ... in every variant."""
    common = dict(data_format=data_format, dtype=dtype)
    layers = []
    if isinstance(stem.conv_padding, int):
        layers.append(zero_pad(stem.conv_padding, name="stem.pad", **common))
    conv_padding = "valid" if isinstance(stem.conv_padding, int) else stem.conv_padding
    layers.append(
        conv(
            stem.filters,
            stem.kernel_size,
            stem.strides,
            conv_padding,
            use_bias=stem.use_bias,
            name="stem.conv",
            **common,
        )
    )
    layers.append(batch_norm(momentum=bn_momentum, epsilon=bn_epsilon, name="stem.bn", **common))
    layers.append(keras.layers.ReLU(dtype=dtype, name="stem.relu"))
    if isinstance(stem.pool_padding, int):
        layers.append(zero_pad(stem.pool_padding, name="stem.pool_pad", **common))
    pool_padding = "valid" if isinstance(stem.pool_padding, int) else stem.pool_padding
    layers.append(
        _compat.max_pool2d(
            pool_size=stem.pool_size,
            strides=stem.pool_strides,
            padding=pool_padding,
            name="stem.pool",
            **common,
        )
    )
    return layers


def head_layers(num_classes: int, *, data_format, dtype) -> list:
    """Global average pool and the logits layer `fc`.

    The logits layer computes in float32 under every policy: a softmax or a loss on bfloat16
    logits loses precision, and the layer is a negligible share of the work.
    """
    return [
        keras.layers.GlobalAveragePooling2D(data_format=data_format, dtype=dtype, name="pool"),
        keras.layers.Dense(num_classes, dtype="float32", name="fc"),
    ]


@_compat.register_serializable(package="blocks")
class Entry(keras.layers.Layer):
    """The model's first layer: moves the caller's layout to the variant's, once.

    It also records which variant the model was built from, so the name survives a save/load.
    """

    def __init__(
        self, input_format="channels_last", data_format="channels_last", variant=None, **kwargs
    ):
        super().__init__(**kwargs)
        self.input_format = normalize_data_format(input_format, "input_format")
        self.data_format = normalize_data_format(data_format)
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
