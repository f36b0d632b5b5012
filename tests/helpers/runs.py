"""Models built once per session and the runs the checks compare: forward passes, a training step.

Building and tracing dominate the suite's time, so every whole network is built once per
(variant, arch, input shape, policy) and reused: a check imports all of its weights first, which
also undoes any moving-statistics update an earlier check left behind. Traced functions are kept
per model and mode, so each is traced once.
"""

from __future__ import annotations

import functools
import weakref

import numpy as np
import tensorflow as tf

import blocks
from blocks._compat import keras
from blocks.models import resolve_policy

# Whole-network checks use these inputs, so that every test file reuses the same built models and
# traced functions. Each BN normalises over at least 36 values per channel (the last stage is 3x3
# at batch 4): a BN over a dozen values amplifies roundoff enough to move an 18-layer network's
# gradients past the float32 tolerance for correct implementations. The sizes put stride-2 convs
# at even sizes, where "same" and symmetric padding differ, and at odd ones (seed: 11).
SHAPES = {"seed": (24, 24, 3), "imagenet": (96, 96, 3)}
BATCH = 4


@functools.lru_cache(maxsize=None)
def network(variant: str, arch: str, shape: tuple, policy: str = "float32", depth: int = 18):
    """A ResNet of `variant`, built once per session; import weights before each use."""
    return blocks.build_resnet(variant, depth, arch=arch, input_shape=shape, dtype_policy=policy)


def block_model(variant, input_shape, filters, strides=1, *, dtype_policy="float32", **options):
    """One BasicBlock of `variant` as a functional model taking and returning NHWC images.

    `options` are the block's (use_bias, shortcut_bn, padding, bn_momentum, bn_epsilon); its
    weights export under `block.conv1.kernel`, ... like a ResNet's under `layer1.0.conv1.kernel`.
    """
    spec = blocks.get_variant(variant)
    policy = resolve_policy(dtype_policy)
    if spec.check_device is not None:
        spec.check_device(policy.compute_dtype)
    outer = "float64" if policy.compute_dtype == "float64" else "float32"
    channels_first = spec.data_format == "channels_first"
    inputs = keras.Input(shape=tuple(input_shape), dtype=outer, name="images")
    x = keras.layers.Permute((3, 1, 2), dtype=policy)(inputs) if channels_first else inputs
    x = spec.block(
        filters, strides, data_format=spec.data_format, dtype=policy, name="block", **options
    )(x)
    x = keras.layers.Permute((2, 3, 1), dtype=policy)(x) if channels_first else x
    return keras.Model(inputs, x, name=f"{spec.name}_block")


_traced: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _function(model, key, make):
    per_model = _traced.setdefault(model, {})
    if key not in per_model:
        per_model[key] = make()
    return per_model[key]


def input_dtype(model):
    """The dtype a model takes its images in: float32, or float64 for the float64 reference."""
    inputs = getattr(model, "inputs", None)
    return inputs[0].dtype if inputs else model.compute_dtype


def run(model, x, training: bool, graph: bool = False) -> np.ndarray:
    """The model's output on `x` (eagerly, or under tf.function, traced once per model)."""

    def forward(t):
        return model(t, training=training)

    fn = _function(model, ("run", training), lambda: tf.function(forward)) if graph else forward
    return np.asarray(fn(tf.constant(x, input_dtype(model))), np.float64)


def trainable_variables(model) -> dict:
    return {k: v for k, v in blocks.canonical_variables(model).items() if "moving_" not in k}


def train_step(model, x, cotangent, lr: float = 0.05, graph: bool = False):
    """Training-mode forward, gradients of sum(y * cotangent) w.r.t. the input and every
    trainable canonical parameter, then a plain SGD update. Returns (y, grads by key)."""
    trainable = trainable_variables(model)
    keys = list(trainable)

    def step(x_in, cot):
        with tf.GradientTape() as tape:
            tape.watch(x_in)
            y = model(x_in, training=True)
            loss = tf.reduce_sum(tf.cast(y, cot.dtype) * cot)
        grads = tape.gradient(loss, [x_in] + [trainable[k] for k in keys])
        for k, g in zip(keys, grads[1:]):
            if g is not None:
                trainable[k].assign_sub(lr * tf.cast(g, trainable[k].dtype))
        return y, grads

    fn = _function(model, ("step", lr), lambda: tf.function(step)) if graph else step
    y, grads = fn(tf.constant(x, input_dtype(model)), tf.constant(cotangent, tf.float64))
    out = {"input": np.asarray(grads[0], np.float64)}
    for k, g in zip(keys, grads[1:]):
        assert g is not None, f"no gradient reaches {k!r}"
        out[k] = np.asarray(g, np.float64)
    return np.asarray(y, np.float64), out
