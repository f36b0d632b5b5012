"""`subclassed`: the BasicBlock as a `keras.layers.Layer` subclass, in a subclassed model.

The style of the article this project grew from, and the reference every other variant is
tested against.
"""

from __future__ import annotations

import tensorflow as tf

from blocks import _compat, checks
from blocks._compat import keras
from blocks.layers import BlockArgs, block_layers, block_output_shape, build_chain
from blocks.registry import Variant, register


@_compat.register_serializable(package="blocks")
class BasicBlock(keras.layers.Layer):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), shortcut a 1x1 conv where shapes differ.

    Args: see `blocks.layers.BlockArgs` (the one block signature).
    """

    def __init__(
        self,
        filters,
        strides=1,
        *,
        use_bias=True,
        shortcut_bn=False,
        padding="same",
        bn_momentum=0.99,
        bn_epsilon=1e-3,
        data_format="channels_last",
        dtype=None,
        name=None,
        **kwargs,
    ):
        super().__init__(dtype=dtype, name=name, **kwargs)
        self.block_args = BlockArgs(
            filters,
            strides,
            use_bias,
            shortcut_bn,
            padding,
            bn_momentum,
            bn_epsilon,
            data_format,
            dtype=self.dtype_policy,
            name=name,
        )
        self.leaves = None

    def build(self, input_shape):
        in_channels = checks.in_channels(
            input_shape, self.block_args.data_format, f"Block {self.name!r}"
        )
        leaves = block_layers(self.block_args, in_channels)
        # Sublayers as attributes, so Keras tracks them under stable names in both Keras 2 and 3.
        self.pad1, self.conv1, self.bn1 = leaves.pad1, leaves.conv1, leaves.bn1
        self.conv2, self.bn2 = leaves.conv2, leaves.bn2
        self.downsample_conv, self.downsample_bn = leaves.downsample_conv, leaves.downsample_bn
        build_chain([leaves.pad1, leaves.conv1, leaves.bn1, leaves.conv2, leaves.bn2], input_shape)
        build_chain([leaves.downsample_conv, leaves.downsample_bn], input_shape)
        self.leaves = leaves
        self.built = True

    def call(self, inputs, training=None):
        leaves = self.leaves
        x = inputs if leaves.pad1 is None else leaves.pad1(inputs)
        x = leaves.conv1(x)
        x = tf.nn.relu(leaves.bn1(x, training=training))
        x = leaves.bn2(leaves.conv2(x), training=training)
        shortcut = inputs
        if leaves.downsample_conv is not None:
            shortcut = leaves.downsample_conv(inputs)
            if leaves.downsample_bn is not None:
                shortcut = leaves.downsample_bn(shortcut, training=training)
        return tf.nn.relu(x + shortcut)

    def compute_output_shape(self, input_shape):
        return block_output_shape(self.block_args, input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(self.block_args.config())
        return config


register(
    Variant(
        name="subclassed",
        block=BasicBlock,
        model="subclassed",
        summary="keras.layers.Layer subclass in a subclassed keras.Model (the article's style)",
        wins="the reference; readable, easy to customise; same graph as functional in tf.function",
    )
)
