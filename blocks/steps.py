"""How to run a model: the step a configuration runs, in a user's program as in a measurement.

`compiled_step(model, mode, execution)` returns the inference step (forward with training=False)
or the training step (forward, softmax cross-entropy, gradients, SGD with momentum; loss scaling
under mixed_float16), as a tf.function ("graph"), in one tf.function(jit_compile=True) ("xla"),
plain ("eager"), or exported and run by a serving engine ("onnx", "openvino", "litert": see
`blocks.engines`).
"""

from __future__ import annotations

from typing import Callable, Optional

import tensorflow as tf

from blocks import _compat, checks
from blocks.executions import EXECUTIONS, MODES, is_engine
from blocks.registry import refuse_training
from blocks.variants import get_variant

LEARNING_RATE, MOMENTUM = 0.01, 0.9


def train_step(model, dtype_policy: Optional[str] = None) -> Callable:
    """`step(images, labels)`: forward, softmax cross-entropy, gradients and an SGD-momentum
    update of `model`; returns the logits. Loss scaling under mixed_float16."""
    policy = dtype_policy or getattr(model, "dtype_policy_name", None) or "float32"
    optimizer = _compat.sgd_momentum(
        LEARNING_RATE, MOMENTUM, loss_scaling=policy == "mixed_float16"
    )
    variables = model.trainable_variables
    _compat.build_optimizer(optimizer, variables)

    def step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            )
            scaled = _compat.scale_loss(optimizer, loss)
        grads = _compat.unscale_gradients(optimizer, tape.gradient(scaled, variables))
        optimizer.apply_gradients(zip(grads, variables))
        return logits

    return step


def inference_step(model) -> Callable:
    """`step(images, labels=None)`: the forward pass with training=False; returns the logits."""

    def step(images, labels=None):
        return model(images, training=False)

    return step


def compiled_step(
    model,
    mode: str = "inference",
    execution: Optional[str] = None,
    dtype_policy: Optional[str] = None,
    *,
    threads: Optional[int] = None,
):
    """The step a configuration runs, for `model` (a `blocks.resnet18(...)`): the way to run a
    pick's winner is `compiled_step(blocks.resnet18(variant), mode, execution)`.

    Args:
        model: a model built by `blocks.resnet18` / `blocks.resnet34`.
        mode: "inference" (`step(images)` returns logits) or "train" (`step(images, labels)`
            runs one SGD-momentum update and returns the logits).
        execution: "graph" (tf.function), "xla" (the whole step in one
            tf.function(jit_compile=True)), "eager", or a serving engine ("onnx", "openvino",
            "litert"; inference only: the model is exported and converted on the first call of
            each batch size, and the engine runs the weights it had then); default: the picked
            one for a model built with variant="auto", else "graph".
        dtype_policy: the model's policy (for loss scaling); default: the model's own.
        threads: an engine's intra-op threads; default: as many as TensorFlow uses.

    Raises:
        ValueError: an unknown mode, execution or dtype policy, or an engine asked to train.
        blocks.InferenceOnlyError: mode "train" for an inference-only variant.
    """
    checks.choice(mode, MODES, "mode", what="Unknown mode")
    if dtype_policy is not None:  # else a typo silently drops mixed_float16's loss scaling
        checks.dtype_policy(dtype_policy)
    if execution is None:
        picked = getattr(model, "picked", None)
        execution = picked.execution if picked is not None else "graph"
    checks.choice(execution, EXECUTIONS, "execution", what="Unknown execution")
    if is_engine(execution):
        if mode != "inference":
            raise ValueError(
                f"Invalid mode for execution {execution!r}. A serving engine runs inference "
                f"only; Expected mode='inference'; Received: mode={mode!r}"
            )
        from blocks import engines

        return engines.EngineStep(model, execution, threads=threads)
    if mode == "train":
        variant = getattr(model, "variant", None)
        if variant is not None and not get_variant(variant).trainable:
            refuse_training(variant)
        fn = train_step(model, dtype_policy)
    else:
        fn = inference_step(model)
    if execution == "graph":
        return tf.function(fn)
    if execution == "xla":
        return tf.function(fn, jit_compile=True)
    return fn
