"""`functional`: the BasicBlock as a function on Keras symbolic tensors, in a functional model.

The keras-hub style: every leaf layer sits directly in the model's graph, named
`layer1.0.conv1`, ..., so the model can be inspected, sliced and plotted layer by layer.
"""

from __future__ import annotations

from blocks import checks
from blocks._compat import keras
from blocks.layers import BlockArgs, block_layers
from blocks.registry import Variant, register


def basic_block(
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
):
    """Return `apply(x)`, which adds one BasicBlock to the graph of the symbolic tensor `x`.

    Args: see `blocks.layers.BlockArgs` (the one block signature).
    """
    args = BlockArgs(
        filters,
        strides,
        use_bias,
        shortcut_bn,
        padding,
        bn_momentum,
        bn_epsilon,
        data_format,
        dtype,
        name,
    )
    prefix = f"{name}." if name else ""

    def apply(x, training=None):
        in_channels = checks.in_channels(x.shape, data_format, f"Block {name!r}")
        leaves = block_layers(args, in_channels, prefix=prefix)
        y = x if leaves.pad1 is None else leaves.pad1(x)
        y = leaves.bn1(leaves.conv1(y), training=training)
        y = keras.layers.ReLU(dtype=dtype, name=f"{prefix}relu1")(y)
        y = leaves.bn2(leaves.conv2(y), training=training)
        shortcut = x
        if leaves.downsample_conv is not None:
            shortcut = leaves.downsample_conv(x)
            if leaves.downsample_bn is not None:
                shortcut = leaves.downsample_bn(shortcut, training=training)
        y = keras.layers.Add(dtype=dtype, name=f"{prefix}add")([y, shortcut])
        return keras.layers.ReLU(dtype=dtype, name=f"{prefix}relu2")(y)

    return apply


register(
    Variant(
        name="functional",
        block=basic_block,
        model="functional",
        summary="block as a function of Keras symbolic tensors; the model is a functional graph",
        complexity=1,
        wins="inspectable graph; as fast as subclassed once traced by tf.function",
    )
)
