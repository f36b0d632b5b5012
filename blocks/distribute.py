"""Data-parallel training with tf.distribute, in a user's program as in a measurement.

    strategy = blocks.distribute_strategy("mirrored", 2)  # first thing: before TF's devices
    with strategy.scope():
        model = blocks.resnet18("subclassed")
    step = blocks.compiled_step(model, "train", "graph", strategy=strategy)
    logits = step(images, labels)  # the global batch: replicas x the per-replica batch

The step is the same forward, loss, gradients and SGD-momentum update as `steps.train_step`, run
by `strategy.run` on each replica's slice of the global batch, the loss averaged over the global
batch, the optimizer created in `strategy.scope()` (the model must be built there too). A
mirrored strategy over N logical CPUs needs them configured before TensorFlow initialises its
devices, and a multi-worker strategy is created once per process, from TF_CONFIG: so a strategy is
made first, in the program's own process.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from blocks import _compat, checks
from blocks.executions import TF_EXECUTIONS

STRATEGIES = ("mirrored", "multiworker")


def logical_cpus(n: int) -> None:
    """Split the CPU into `n` logical devices (before TensorFlow has initialised its devices)."""
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
        )
    except RuntimeError as e:  # TensorFlow's devices are already initialised
        if len(tf.config.list_logical_devices("CPU")) < n:
            raise ValueError(
                f"Invalid order. {n} logical CPUs must be made before TensorFlow initialises its "
                "devices: call blocks.distribute_strategy first in the program"
            ) from e


def mirrored_strategy(replicas: int):
    """MirroredStrategy over `replicas` GPUs if there are that many, else logical CPUs."""
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) >= replicas:
        return tf.distribute.MirroredStrategy([d.name for d in gpus[:replicas]])
    cpus = tf.config.list_logical_devices("CPU")
    if len(cpus) < replicas:
        raise ValueError(
            f"Invalid replicas. mirrored x{replicas} needs {replicas} devices and this process has "
            f"{len(cpus)} CPU device(s) and {len(gpus)} GPU(s); call "
            "blocks.distribute_strategy before anything else uses TensorFlow"
        )
    # Reduction through the host: NCCL, the default's choice, is for GPUs.
    return tf.distribute.MirroredStrategy(
        [d.name for d in cpus[:replicas]],
        cross_device_ops=tf.distribute.ReductionToOneDevice(),
    )


def distribute_strategy(kind: str, replicas: int = 2):
    """The strategy a pick names, made in this process.

    Args:
        kind: "mirrored" (MirroredStrategy over `replicas` local GPUs, or, without that many,
            over `replicas` logical CPUs made here) or "multiworker" (MultiWorkerMirroredStrategy
            over the processes TF_CONFIG names: call it in each of them).
        replicas: devices in all (mirrored); for multiworker, checked against the cluster.
    """
    checks.choice(kind, STRATEGIES, "strategy", what="Unknown strategy")
    replicas = checks.positive_int(replicas, "replicas")
    if kind == "multiworker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        if strategy.num_replicas_in_sync != replicas:
            raise ValueError(
                f"Invalid replicas. TF_CONFIG's cluster holds {strategy.num_replicas_in_sync} "
                f"replica(s); Received: replicas={replicas}"
            )
        return strategy
    if replicas > 1 and len(tf.config.list_physical_devices("GPU")) < replicas:
        logical_cpus(replicas)
    return mirrored_strategy(replicas)


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
        from blocks.steps import LEARNING_RATE, MOMENTUM

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


def train_step(model, strategy, execution: str = "graph", dtype_policy: Optional[str] = None):
    """The distributed training step of `model` (built in `strategy.scope()`)."""
    return DistributedStep(model, strategy, execution, dtype_policy)
