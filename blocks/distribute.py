"""Data-parallel training with tf.distribute, in a user's program as in a measurement.

    strategy = blocks.distribute_strategy("mirrored", 2)  # first thing: before TF's devices
    with strategy.scope():
        model = blocks.resnet18("subclassed")
    step = blocks.compiled_step(model, "train", "graph", strategy=strategy)
    logits = step(images, labels)  # the global batch: replicas x the per-replica batch

The step is the same forward, loss, gradients and SGD-momentum update as `steps.train_step`, run
by `strategy.run` (`steps.DistributedStep`) on each replica's slice of the global batch, the loss
averaged over the global batch, the optimizer created in `strategy.scope()` (the model must be
built there too). A
mirrored strategy over N logical CPUs needs them configured before TensorFlow initialises its
devices, and a multi-worker strategy is created once per process, from TF_CONFIG: so a strategy is
made first, in the program's own process.
"""

from __future__ import annotations

import tensorflow as tf

from blocks import checks

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
