"""`xla`: the subclassed BasicBlock with its forward pass compiled by XLA, one cluster per block.

`tf.function(jit_compile=True)` on the block's call lets XLA fuse conv + bias + BN + ReLU + add
inside a block and pick its own CPU/GPU kernels; the model around the blocks stays a normal
graph, so the stem, head and training loop are untouched.
"""

from __future__ import annotations

import tensorflow as tf

from blocks import _compat
from blocks.registry import Variant, register
from blocks.variants.subclassed import BasicBlock


def per_instance_function(fn, **tf_function_kwargs):
    """`tf.function(fn)` meant to be created once per layer instance.

    TF counts retraces by the Python code object, so N instances of one layer, each tracing once,
    look like one function retracing N times and trigger a misleading warning; the flag that
    TF's own SavedModel loader sets for the same situation silences it.
    """
    compiled = tf.function(fn, **tf_function_kwargs)
    if hasattr(compiled, "_omit_frequent_tracing_warning"):
        compiled._omit_frequent_tracing_warning = True
    return compiled


@_compat.register_serializable(package="blocks")
class XLABasicBlock(BasicBlock):
    """`BasicBlock` whose forward pass (and its gradient) runs as one XLA cluster."""

    def build(self, input_shape):
        super().build(input_shape)

        def forward(inputs, training):
            return BasicBlock.call(self, inputs, training=training)

        # One compiled function per block (each block its own XLA cluster, traced once per
        # `training` value), kept out of Keras attribute tracking and serialization.
        # autograph off: the body has no tensor-dependent Python control flow to convert.
        compiled = per_instance_function(forward, jit_compile=True, autograph=False)
        object.__setattr__(self, "_compiled_call", compiled)

    def call(self, inputs, training=None):
        # `training` is part of the trace key; a Python bool keeps it to two traces.
        static = tf.get_static_value(training) if tf.is_tensor(training) else training
        if static is None and tf.is_tensor(training):
            raise ValueError(
                "XLABasicBlock needs a Python bool (or a constant) for `training`; "
                f"Received: training={training!r}"
            )
        return self._compiled_call(inputs, bool(static))


register(
    Variant(
        name="xla",
        block=XLABasicBlock,
        model="subclassed",
        summary="the subclassed block in tf.function(jit_compile=True): an XLA cluster per block",
        complexity=3,
        wins=(
            "GPUs (BN, ReLU, add fused into the conv); on the CPU measured, no faster than"
            " subclassed"
        ),
    )
)
