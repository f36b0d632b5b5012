"""How to run a model: the step a configuration runs, in a user's program as in a measurement.

`compiled_step(model, mode, execution)` returns the inference step (forward with training=False)
or the training step (forward, softmax cross-entropy, gradients, SGD with momentum; loss scaling
under mixed_float16), as a tf.function ("graph"), in one tf.function(jit_compile=True) ("xla"),
plain ("eager"), or exported and run by a serving engine ("onnx", "openvino", "litert": see
`blocks.engines`).
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from blocks import _compat, checks
from blocks.executions import EXECUTIONS, MODES, TF_EXECUTIONS, is_engine
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


def _refuse_inference_only(model) -> None:
    variant = getattr(model, "variant", None)
    if variant is not None and not get_variant(variant).trainable:
        refuse_training(variant)


def compiled_step(
    model,
    mode: str = "inference",
    execution: Optional[str] = None,
    dtype_policy: Optional[str] = None,
    *,
    threads: Optional[int] = None,
    strategy=None,
    precision: Optional[str] = None,
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
        precision: what a serving engine computes in, a dtype-policy name (default
            "float32"): the model stays float32 and the engine takes its own reduced precision
            (OpenVINO's bf16 hint) only where it computes in it natively here, else
            `blocks.engines.EngineError` says why in one line. A TensorFlow execution computes in
            the model's own policy (`blocks.resnet18(..., dtype_policy=...)`): a precision
            other than that is refused.
        strategy: a tf.distribute strategy (`blocks.distribute_strategy`) the model was built
            under (`with strategy.scope()`): the training step over its replicas, called with
            the global batch (see `blocks.distribute`).

    Raises:
        ValueError: an unknown mode, execution, dtype policy or precision, or an engine asked
            to train; when called, images or labels that are not a tf.Tensor or NumPy array,
            or missing or misshapen labels of a training step.
        blocks.InferenceOnlyError: mode "train" for an inference-only variant.
        blocks.engines.EngineError: an engine not installed, or not native in `precision` here.
    """
    checks.choice(mode, MODES, "mode", what="Unknown mode")
    if dtype_policy is not None:  # else a typo silently drops mixed_float16's loss scaling
        checks.dtype_policy(dtype_policy)
    if execution is None:
        picked = getattr(model, "picked", None)
        execution = picked.execution if picked is not None else "graph"
    checks.choice(execution, EXECUTIONS, "execution", what="Unknown execution")
    precision = _precision(model, execution, precision)
    if strategy is not None:
        if mode != "train" or is_engine(execution):
            raise ValueError(
                "Invalid strategy. A distribution strategy runs the training step of a TensorFlow "
                f"execution; Received: mode={mode!r}, execution={execution!r}"
            )
        _refuse_inference_only(model)
        return DistributedStep(model, strategy, execution, dtype_policy)
    if is_engine(execution):
        return _engine_step(model, mode, execution, threads, precision)
    return _tensorflow_step(model, mode, execution, dtype_policy)


def _precision(model, execution: str, precision: Optional[str]) -> Optional[str]:
    """What the step computes in: an engine's `precision` (default float32); a TensorFlow
    execution's is the model's policy, so another one asked of it is refused, never ignored."""
    if precision is not None:
        checks.choice(precision, checks.DTYPE_POLICIES, "precision", what="Unknown precision")
    if is_engine(execution):
        return precision or "float32"
    own = getattr(model, "dtype_policy_name", None) or "float32"
    if precision not in (None, own):
        raise ValueError(
            f"Invalid precision for execution {execution!r}. A TensorFlow execution computes in "
            "the model's dtype policy (build it with dtype_policy=...); Expected "
            f"precision={own!r}; Received: precision={precision!r}"
        )
    return precision


def _engine_step(model, mode: str, execution: str, threads: Optional[int], precision: str):
    """`compiled_step` by a serving engine: inference only."""
    if mode != "inference":
        raise ValueError(
            f"Invalid mode for execution {execution!r}. A serving engine runs inference "
            f"only; Expected mode='inference'; Received: mode={mode!r}"
        )
    from blocks import engines

    return engines.EngineStep(model, execution, threads=threads, precision=precision)


def _tensorflow_step(model, mode: str, execution: str, dtype_policy: Optional[str]):
    """`compiled_step` run by TensorFlow: in `tf.function` ("graph"), one XLA computation
    ("xla") or eagerly."""
    if mode == "train":
        _refuse_inference_only(model)
        fn = train_step(model, dtype_policy)
    else:
        fn = inference_step(model)
    if execution == "graph":
        fn = tf.function(fn)
    elif execution == "xla":
        fn = tf.function(fn, jit_compile=True)
    return CheckedStep(fn, mode, execution, model)


class CheckedStep:
    """A compiled step whose arguments are checked before TensorFlow sees them: a mistake found
    by tf.function's argument binding prints the arrays (kilobytes of them), and one found while
    tracing is buried under "in user code:" frames. Anything else (`get_concrete_function`, ...)
    is the compiled function's."""

    def __init__(self, fn: Callable, mode: str, execution: str, model=None):
        self.fn, self.mode, self.execution, self.model = fn, mode, execution, model

    def __call__(self, images, labels=None):
        who = f"the {self.mode!r} step ({self.execution})"
        checks.batch_array(images, "images", who, "of shape (batch, height, width, channels)")
        expected = getattr(self.model, "expected_input_shape", None)
        if expected is not None:  # the model's own check, before tracing buries it in frames
            checks.images(images, expected=expected, input_format=self.model.input_format, who=who)
        if self.mode == "train":
            checks.labels(labels, images.shape[0], who)
        return self.fn(images) if labels is None else self.fn(images, labels)

    def __getattr__(self, name):
        return getattr(self.__dict__["fn"], name)


def replica_train_step(model, optimizer, loss_scaling: bool) -> Callable:
    """The per-replica step: forward, loss averaged over the global batch, gradients, update."""

    def step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
            # Divided by the global batch (this slice x the replicas in sync), so that the
            # replicas' summed gradients are those of the mean loss over the global batch.
            loss = tf.nn.compute_average_loss(per_example)
            scaled = _compat.scale_loss(optimizer, loss) if loss_scaling else loss
        variables = model.trainable_variables
        grads = tape.gradient(scaled, variables)
        if loss_scaling:
            grads = _compat.unscale_gradients(optimizer, grads)
        optimizer.apply_gradients(zip(grads, variables))
        return logits

    return step


class DistributedStep:
    """`step(images, labels)` on the global batch: each replica takes its slice, in order; returns
    this process's replicas' logits, concatenated. `distribute` and `run` split it in two, so that
    a measurement can time the step on values placed once."""

    def __init__(self, model, strategy, execution: str = "graph", dtype_policy=None):
        checks.choice(execution, TF_EXECUTIONS, "execution", what="Unknown execution")
        if execution == "xla" and _compat.XLA_STEP_UNDER_STRATEGY_DEADLOCKS:
            raise ValueError(
                f"Invalid execution. TensorFlow {_compat.TF_VERSION} hangs in jit_compile under a "
                "strategy; Expected 'graph' or 'eager'; Received: execution='xla'"
            )
        self.strategy = strategy
        self.replicas = strategy.num_replicas_in_sync
        policy = dtype_policy or getattr(model, "dtype_policy_name", None) or "float32"
        scaling = policy == "mixed_float16"
        with strategy.scope():
            optimizer = _compat.sgd_momentum(LEARNING_RATE, MOMENTUM, loss_scaling=scaling)
            _compat.build_optimizer(optimizer, model.trainable_variables)
        replica_fn = replica_train_step(model, optimizer, scaling)
        if execution == "xla":
            replica_fn = tf.function(replica_fn, jit_compile=True)

        def run(images, labels):
            return strategy.run(replica_fn, args=(images, labels))

        self.run = tf.function(run) if execution in ("graph", "xla") else run

    def distribute(self, images, labels) -> tuple:
        """The global batch as per-replica values: replica i takes the i-th slice."""
        n = int(np.shape(images)[0])
        if n % self.replicas or int(np.shape(labels)[0]) != n:
            raise ValueError(
                f"Invalid batch. Expected images and labels of one global batch that "
                f"{self.replicas} replicas divide evenly; Received: {n} images, "
                f"{int(np.shape(labels)[0])} labels"
            )
        per = n // self.replicas

        def slice_for(ctx):
            i = ctx.replica_id_in_sync_group
            return images[i * per : (i + 1) * per], labels[i * per : (i + 1) * per]

        return self.strategy.experimental_distribute_values_from_function(slice_for)

    def local(self, per_replica) -> tf.Tensor:
        """This process's replicas' values, concatenated."""
        return tf.concat(self.strategy.experimental_local_results(per_replica), axis=0)

    def __call__(self, images, labels=None):
        if labels is None:
            raise ValueError(
                "Invalid labels. A training step takes step(images, labels): labels of shape "
                "(global batch,), integer classes; Received: labels=None"
            )
        return self.local(self.run(*self.distribute(images, labels)))
