"""`folded`: inference-only; every BatchNorm folded into the convolution before it.

conv -> BN computes `gamma * (conv(x, W) + b - mean) / sqrt(var + eps) + beta`, which is the
single convolution `conv(x, W * s) + (b - mean) * s + beta` with `s = gamma / sqrt(var + eps)`.
With the BN gone, TensorFlow runs conv + bias + ReLU as one fused kernel and skips the BN's
passes over the activations. The canonical parameters stay as they are (so weights import and
export like every variant's) and are folded inside the compiled graph on each call, so they are
never stale after an import or a direct assignment. The fold reads and writes every kernel once
per call, which shows at small batches (measured figures: docs/results.md).
"""

from __future__ import annotations

import tensorflow as tf

from blocks import _compat
from blocks._compat import keras
from blocks.layers import build_chain, stem_layers
from blocks.registry import Variant, refuse_training, register
from blocks.variants.subclassed import BasicBlock

_WHY = ": its BatchNorms are folded into the convolutions, so there are no batch statistics"


def folded_conv(x, conv_layer, bn_layer):
    """conv_layer then bn_layer (inference), as one convolution with folded kernel and bias."""
    compute = x.dtype
    scale = tf.cast(bn_layer.gamma, tf.float32) * tf.math.rsqrt(
        tf.cast(bn_layer.moving_variance, tf.float32) + bn_layer.epsilon
    )
    kernel = tf.cast(conv_layer.kernel, tf.float32) * scale
    shift = -tf.cast(bn_layer.moving_mean, tf.float32)
    if conv_layer.use_bias:
        shift += tf.cast(conv_layer.bias, tf.float32)
    bias = shift * scale + tf.cast(bn_layer.beta, tf.float32)
    fmt = "NHWC" if conv_layer.data_format == "channels_last" else "NCHW"
    strides = (1, *conv_layer.strides, 1) if fmt == "NHWC" else (1, 1, *conv_layer.strides)
    y = tf.nn.conv2d(
        x, tf.cast(kernel, compute), strides, conv_layer.padding.upper(), data_format=fmt
    )
    return tf.nn.bias_add(y, tf.cast(bias, compute), data_format=fmt)


def _entry(inputs, training, pad, conv_layer, bn_layer):
    """The start of a block and of the stem: refuse training, pad, then relu of the folded conv."""
    if training:
        refuse_training("folded", _WHY)
    x = inputs if pad is None else pad(inputs)
    return tf.nn.relu(folded_conv(x, conv_layer, bn_layer))


@_compat.register_serializable(package="blocks")
class FoldedBasicBlock(BasicBlock):
    """`BasicBlock` whose inference folds each BN into its conv; refuses training=True."""

    def call(self, inputs, training=None):
        leaves = self.leaves
        x = _entry(inputs, training, leaves.pad1, leaves.conv1, leaves.bn1)
        x = folded_conv(x, leaves.conv2, leaves.bn2)
        shortcut = inputs
        if leaves.downsample_conv is not None:
            if leaves.downsample_bn is not None:
                shortcut = folded_conv(inputs, leaves.downsample_conv, leaves.downsample_bn)
            else:
                shortcut = leaves.downsample_conv(inputs)
        return tf.nn.relu(x + shortcut)


@_compat.register_serializable(package="blocks")
class FoldedStem(keras.layers.Layer):
    """The stem of `blocks.layers.stem_layers` with its BN folded into the conv; named `stem`."""

    def __init__(self, spec, *, data_format, bn_momentum, bn_epsilon, **kwargs):
        super().__init__(**kwargs)
        stem = stem_layers(
            spec,
            data_format=data_format,
            bn_momentum=bn_momentum,
            bn_epsilon=bn_epsilon,
            dtype=self.dtype_policy,
            prefix="",
        )
        # Sublayers as attributes, so Keras tracks them under the canonical names.
        self.pad, self.conv, self.bn = stem.pad, stem.conv, stem.bn
        self.pool_pad, self.pool = stem.pool_pad, stem.pool
        self.leaves = stem

    def build(self, input_shape):
        build_chain(self.leaves.chain(), input_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.leaves.chain():
            shape = tuple(layer.compute_output_shape(shape))
        return shape

    def call(self, inputs, training=None):
        stem = self.leaves
        x = _entry(inputs, training, stem.pad, stem.conv, stem.bn)
        x = x if stem.pool_pad is None else stem.pool_pad(x)
        return stem.pool(x)


def folded_stem(spec, *, data_format, bn_momentum, bn_epsilon, dtype):
    return [
        FoldedStem(
            spec,
            data_format=data_format,
            bn_momentum=bn_momentum,
            bn_epsilon=bn_epsilon,
            dtype=dtype,
            name="stem",
        )
    ]


register(
    Variant(
        name="folded",
        block=FoldedBasicBlock,
        model="subclassed",
        stem=folded_stem,
        trainable=False,
        complexity=2,
        summary="inference only: each BatchNorm folded into its conv (kernel and bias)",
        wins=(
            "GPU inference, where Grappler leaves BN unfused; on the CPU Grappler already fuses"
            " BN at inference, and the per-call fold costs time at small batches"
        ),
    )
)
