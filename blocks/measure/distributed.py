"""Data-parallel training steps on tf.distribute: MirroredStrategy over local devices and
MultiWorkerMirroredStrategy over worker processes.

A strategy is a process-level setting (a mirrored strategy over N logical CPUs needs them
configured before TensorFlow initialises its devices; a multi-worker strategy is created once, at
program start, from TF_CONFIG), so a worker process is started with it (`configure_process`) and
builds every distributed step it is asked for inside it. The step is the same forward, loss,
gradients and update as `steps.train_step`, run by `strategy.run` on each replica's slice of the
global batch (per-replica batch x replicas), the loss averaged over the global batch, variables
and optimizer created in `strategy.scope()`.
"""

from __future__ import annotations

import json
import os
import re
import time

import numpy as np
import tensorflow as tf

from blocks import _compat
from blocks import distribute as library
from blocks.archs import ARCHS
from blocks.causes import cause
from blocks.kernels import DeviceError
from blocks.measure.steps import (
    Step,
    Unsupported,
    build_model,
    sync,
)
from blocks.measure.verify import TOLERANCE, compare_update, random_weights, rel_err, verdict
from blocks.measure.workload import Config, Workload
from blocks.models import resnet18
from blocks.steps import LEARNING_RATE, DistributedStep
from blocks.variants import get_variant
from blocks.weights import canonical_variables, export_weights, import_weights

# Set by the parent in a worker's environment: N logical CPU devices (mirrored on a CPU), and
# "mirrored" or "multiworker" (which strategy the process holds).
LOGICAL_CPUS_VAR = "RESNET_BLOCKS_LOGICAL_CPUS"
STRATEGY_VAR = "RESNET_BLOCKS_STRATEGY"

# Inside a cluster's private network namespace every port is free: member i listens on this + i.
CLUSTER_PORT = 20000

_strategy = None


def process_env(config: Config) -> dict:
    """The environment a single worker process for `config` needs beyond its runtime's."""
    if config.strategy == "mirrored":
        return {STRATEGY_VAR: "mirrored", LOGICAL_CPUS_VAR: str(config.replicas)}
    return {}


def configure_process(environ=None) -> None:
    """Before any TensorFlow op: split the CPU into logical devices, create the process's strategy.

    Called by a worker at start-up; a no-op without the variables above.
    """
    global _strategy
    environ = os.environ if environ is None else environ
    n = int(environ.get(LOGICAL_CPUS_VAR, "0") or 0)
    if n > 1:
        library.logical_cpus(n)
    kind = environ.get(STRATEGY_VAR)
    if kind == "multiworker":
        _strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif kind == "mirrored":
        _strategy = mirrored_strategy(n)


def mirrored_strategy(replicas: int):
    try:
        return library.mirrored_strategy(replicas)
    except ValueError as e:
        raise Unsupported(f"{e} (start the process with {LOGICAL_CPUS_VAR}={replicas})") from e


def strategy():
    if _strategy is None:
        raise Unsupported("this worker process was started without a distribution strategy")
    return _strategy


def cluster_spec(ports) -> dict:
    """TF_CONFIG's cluster for workers on this host, loopback only."""
    return {"worker": [f"127.0.0.1:{p}" for p in ports]}


def tf_config(ports, index: int) -> str:
    return json.dumps({"cluster": cluster_spec(ports), "task": {"type": "worker", "index": index}})


def read_tf_config(text: str) -> tuple:
    """(worker addresses, this task's index) from TF_CONFIG, checked before TensorFlow reads it
    (its own errors are tracebacks from deep inside the strategy). ValueError in one line."""
    try:
        spec = json.loads(text)
    except ValueError:
        raise ValueError(
            f'TF_CONFIG is not JSON. Expected {{"cluster": {{"worker": ["host:port", ...]}}, '
            f'"task": {{"type": "worker", "index": i}}}}; Received: TF_CONFIG={text[:80]!r}'
        ) from None
    cluster = spec.get("cluster") if isinstance(spec, dict) else None
    task = spec.get("task") if isinstance(spec, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ValueError(
            "Invalid TF_CONFIG. Expected an object with 'cluster' and 'task' objects; "
            f"Received: TF_CONFIG={text[:80]!r}"
        )
    workers = cluster.get("worker")
    if set(cluster) != {"worker"} or not isinstance(workers, list) or not workers:
        raise ValueError(
            "Invalid TF_CONFIG cluster. Expected one job, 'worker', listing 'host:port' strings "
            f"(its task 0 is the chief); Received: cluster={cluster!r}"
        )
    for address in workers:
        if not isinstance(address, str) or not re.fullmatch(r"\S+:\d+", address):
            raise ValueError(
                f"Invalid TF_CONFIG cluster address. Expected 'host:port'; Received: {address!r}"
            )
    if task.get("type") != "worker":
        raise ValueError(
            f"Invalid TF_CONFIG task type. Expected 'worker'; Received: type={task.get('type')!r}"
        )
    index = task.get("index")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(workers):
        raise ValueError(
            f"Invalid TF_CONFIG task index. Expected an int from 0 to {len(workers) - 1} (the "
            f"cluster has {len(workers)} worker(s)); Received: index={index!r}"
        )
    return workers, index


def global_inputs(workload: Workload, replicas: int, seed: int = 0) -> tuple:
    """(images, labels) of the global batch, the same in every process (drawn from `seed`)."""
    rng = np.random.default_rng(seed)
    n = workload.batch_size * replicas
    x = rng.uniform(size=(n, *workload.input_shape)).astype(np.float32)
    y = rng.integers(0, ARCHS[workload.arch].num_classes, n).astype(np.int32)
    return x, y


def build(workload: Workload, config: Config, seed: int = 0):
    """(model, step(): one distributed training step on the fixed global batch, replica count)."""
    if workload.mode != "train":
        raise Unsupported(f"strategy {config.strategy}: training only")
    get_variant(config.variant)  # an unknown name first, before a strategy is made
    strat = strategy()
    replicas = strat.num_replicas_in_sync
    if replicas != config.replicas:
        raise Unsupported(
            f"{config.strategy}: {replicas} replicas in this process's strategy, not "
            f"{config.replicas}"
        )
    if config.execution == "xla" and _compat.XLA_STEP_UNDER_STRATEGY_DEADLOCKS:
        raise Unsupported(
            f"{config.label}: TensorFlow {_compat.TF_VERSION} hangs in jit_compile under a "
            "strategy; use execution graph"
        )
    x, y = global_inputs(workload, replicas, seed)
    with strat.scope():
        model = build_model(workload, config, seed)
    # The user's step (blocks.compiled_step(..., strategy=)), its values placed once.
    step = DistributedStep(model, strat, config.execution, workload.dtype_policy)
    images_labels = step.distribute(x, y)

    def run_step():
        return step.run(*images_labels)

    return model, run_step, replicas


def prepare(workload: Workload, config: Config, *, seed: int = 0, warmup: int = 2) -> Step:
    """Like `steps.prepare`, for a configuration with a distribution strategy."""
    try:
        model, run_step, replicas = build(workload, config, seed)
        t0 = time.perf_counter()
        out = None
        for _ in range(max(1, warmup)):
            out = _local(run_step())
        compile_s = time.perf_counter() - t0
    except DeviceError as e:
        raise Unsupported(str(e), e.detail) from e
    except (tf.errors.OpError, ValueError, TypeError, NotImplementedError) as e:
        raise Unsupported(
            f"{config.label}: TensorFlow {_compat.TF_VERSION} refuses it: {cause(e)}",
            getattr(e, "message", None) or str(e),
        ) from e

    def run():
        return _local(run_step())

    finite = bool(np.all(np.isfinite(out)))
    return Step(workload, config, model, run, compile_s, tuple(out.shape), None, finite)


def _local(per_replica) -> np.ndarray:
    """This process's replicas' logits, concatenated, read to the host (a sync)."""
    values = strategy().experimental_local_results(per_replica)
    return np.concatenate([sync(v) for v in values], axis=0)


def _replica_ids() -> list:
    """The global replica ids this process holds (all of them for mirrored; its own for a
    multi-worker cluster: the task index)."""
    strat = strategy()
    if isinstance(strat, tf.distribute.MultiWorkerMirroredStrategy):
        task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {}).get("index", 0)
        local = strat.extended._num_devices_per_worker  # replicas per worker process
        return list(range(task * local, (task + 1) * local))
    return list(range(strat.num_replicas_in_sync))


def check(workload: Workload, config: Config, seed: int = 101) -> dict:
    """One distributed step against the same step computed by hand on one device.

    By hand: the same variant, policy and execution (graph or eager) on one device, outside any
    strategy: each replica's slice
    of the global batch through the network in training mode (BN statistics of that slice), its
    loss summed over the slice and divided by the global batch, the gradients summed over the
    replicas, one SGD-momentum step (from zero momentum: w - lr x g). Each replica keeps its own
    BN moving statistics, updated from its own slice: Keras 3 does not aggregate them, and Keras 2
    makes them sync-on-read variables (one copy per replica, averaged only when read outside the
    replicas). (The same arithmetic on one device, not float64: a float32 ReLU input
    within roundoff of 0 takes another subgradient than float64 does, which says nothing about
    the strategy; the variant itself is checked against float64 by `verify.check`.)
    Returns what `verify.check` does.
    """
    policy = workload.dtype_policy
    weights, moved, local, n = _distributed_step(workload, config, seed)
    expected, stats = _by_hand(workload, config, weights, n, seed)
    results, failures = {}, []
    # Each key against max(its norm, a tenth of the largest): the gradient of a BN scale,
    # sum(dy * x_hat), cancels (x_hat sums to 0 over the batch), so its roundoff is set by the
    # terms, not the tiny sum (what it measured: docs/distributed.md).
    err, tol, what = compare_update(moved, expected, policy, floor_factor=10)
    results["update after one step"] = [err, tol]
    if err > tol:
        failures.append(f"{what} off by {err:.3g} (> {tol:g})")
    ids = _replica_ids()
    worst_stat = 0.0
    for k, components in local.items():
        for component, r in zip(components, ids):
            worst_stat = max(worst_stat, rel_err(component, stats[r][k]))
    stat_tol = TOLERANCE[policy] * 10
    results["BN moving statistics, per replica"] = [worst_stat, stat_tol]
    if worst_stat > stat_tol:
        failures.append(f"BN moving statistics off by {worst_stat:.3g} (> {stat_tol:g})")
    return verdict(results, failures, "the same step as computed by hand on one device")


def _distributed_step(workload: Workload, config: Config, seed: int) -> tuple:
    """One step under the strategy from random weights: (the weights, how far each trainable
    weight moved, each replica's BN moving statistics, the number of replicas)."""
    model, run_step, n = build(workload, config, seed)
    weights = random_weights(
        {k: v.shape for k, v in export_weights(model).items()}, np.random.default_rng(seed)
    )
    import_weights(model, weights)
    run_step()
    variables = canonical_variables(model)
    moved = {
        k: np.asarray(v.numpy(), np.float64) - weights[k]
        for k, v in variables.items()
        if "moving_" not in k
    }
    local = {
        k: [
            np.asarray(c, np.float64)
            for c in strategy().experimental_local_results(_compat.tf_variable(v))
        ]
        for k, v in variables.items()
        if "moving_" in k
    }
    return weights, moved, local, n


def _by_hand(workload: Workload, config: Config, weights: dict, n: int, seed: int) -> tuple:
    """The same step on one device, replica by replica: (the expected move of each trainable
    weight, each replica's BN moving statistics)."""
    x, y = global_inputs(workload, n, seed)  # the batch `build` gave the distributed step
    per = workload.batch_size
    with tf.device("/CPU:0"):
        ref = resnet18(
            config.variant,
            arch=workload.arch,
            input_shape=workload.input_shape,
            dtype_policy=workload.dtype_policy,
        )
    ref_vars = canonical_variables(ref)
    trainable = [k for k in ref_vars if "moving_" not in k]
    total = {k: 0.0 for k in trainable}
    stats = []

    def replica_grads(xs, ys):
        with tf.GradientTape() as tape:
            logits = ref(xs, training=True)
            loss = tf.nn.compute_average_loss(
                tf.nn.sparse_softmax_cross_entropy_with_logits(ys, logits),
                global_batch_size=per * n,
            )
        return tape.gradient(loss, [ref_vars[k] for k in trainable])

    if config.execution != "eager":  # the same arithmetic as the strategy's step: a graph
        replica_grads = tf.function(replica_grads)
    for r in range(n):
        import_weights(ref, weights)
        xs, ys = tf.constant(x[r * per : (r + 1) * per]), tf.constant(y[r * per : (r + 1) * per])
        grads = replica_grads(xs, ys)
        for k, g in zip(trainable, grads):
            total[k] = total[k] + np.asarray(g, np.float64)
        stats.append(
            {k: np.asarray(v.numpy(), np.float64) for k, v in ref_vars.items() if "moving_" in k}
        )
    return {k: -LEARNING_RATE * total[k] for k in trainable}, stats
