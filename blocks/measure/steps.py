"""Ready-to-time steps: a workload's model, inputs and compiled step, built in a worker.

How a step is compiled is the library's (`blocks.steps.compiled_step`, `blocks.engines`); here
`prepare` builds a workload's model and inputs on its device and compiles and warms the step up
(for a serving engine: exports, converts and loads it), all outside any timed region.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from blocks import _compat, causes, engines
from blocks.archs import ARCHS
from blocks.errors import DetailedError
from blocks.executions import is_engine
from blocks.kernels import DeviceError
from blocks.measure import audit, devices
from blocks.measure.workload import Config, Workload
from blocks.models import resnet18, resolve_policy
from blocks.steps import compiled_step
from blocks.variants import get_variant


class Unsupported(DetailedError):
    """This device, TF version, runtime or memory cannot run the configuration. The message is one
    line ending in the cause (see `blocks.causes`), shortened in the middle only past LIMIT
    characters; `detail` keeps all TensorFlow said."""

    LIMIT = 300

    def __init__(self, message: str, detail: str = ""):
        super().__init__(causes.shorten(message, self.LIMIT), detail)


@dataclasses.dataclass
class Step:
    """A ready-to-time step: `run()` executes one call and syncs on its result."""

    workload: Workload
    config: Config
    model: object
    run: Callable[[], np.ndarray]
    compile_s: float
    output_shape: tuple
    # blocks.measure.audit.layout of the graph TF ran; None when eager (no graph) or when the whole
    # step is one XLA computation (TF records no graph for it).
    layout: Optional[dict] = None
    finite: bool = True  # the warm-up's output held no NaN or inf
    engine: Optional[dict] = None  # a serving engine's versions, threads and settings
    owner: object = None  # what must live as long as `run` (an engine step's artifacts)


def sync(result) -> np.ndarray:
    # Reading the value to the host waits for the device to finish computing it.
    return np.asarray(result)


def inputs(workload: Workload, seed: int = 0, replicas: int = 1) -> tuple:
    """(images, labels) of the global batch, drawn from `seed`."""
    rng = tf.random.Generator.from_seed(seed)
    n = workload.batch_size * replicas
    x = rng.uniform((n, *workload.input_shape), dtype=tf.float32)
    labels = rng.uniform((n,), 0, ARCHS[workload.arch].num_classes, dtype=tf.int32)
    return x, labels


def _unsupported(e: Exception, workload: Workload, config: Config) -> Unsupported:
    """A short reason for a TF error that means 'cannot run here', or None for a real failure."""
    message = getattr(e, "message", str(e))
    if isinstance(e, tf.errors.ResourceExhaustedError):
        return Unsupported(
            f"{config.variant}: batch {workload.batch_size} does not fit in {workload.device}'s "
            "memory",
            message,
        )
    lowered = message.lower()
    if any(w in lowered for w in ("kernel", "support", "not implemented", "unimplemented")):
        return Unsupported(
            f"{config.label}: TF {_compat.TF_VERSION} lacks a kernel for it on {workload.device}: "
            f"{causes.cause(e)}",
            message,
        )
    return None


def build_model(workload: Workload, config: Config, seed: int = 0):
    """The workload's ResNet18 in the configuration's variant, in the current device/strategy
    scope. Raises Unsupported for an inference-only variant asked to train."""
    spec = get_variant(config.variant)
    if workload.mode == "train" and not spec.trainable:
        raise Unsupported(f"{spec.name}: inference-only, no training step")
    return resnet18(
        spec.name,
        arch=workload.arch,
        input_shape=workload.input_shape,
        dtype_policy=workload.dtype_policy,
        seed=seed,
    )


def prepare(workload: Workload, config: Config, *, seed: int = 0, warmup: int = 2) -> Step:
    """Build the model, its inputs and its compiled step on the device; compile and warm up.

    Raises:
        Unsupported: the configuration cannot run here (an inference-only variant in training,
            a missing kernel, too little memory); the message says which in one line.
        ValueError: an unknown variant, device, mode or execution.
    """
    device = devices.resolve(workload.device)
    get_variant(config.variant)  # an unknown name is the user's ValueError, not Unsupported
    if is_engine(config.execution):
        return _prepare_engine(workload, config, device, seed, warmup)
    try:
        with tf.device(device):
            model = build_model(workload, config, seed)
            x, labels = inputs(workload, seed)
            fn = compiled_step(model, workload.mode, config.execution, workload.dtype_policy)
            t0 = time.perf_counter()
            with audit.run_metadata() as recorded:
                out = sync(fn(x, labels))  # trace, compile, first run
            for _ in range(max(0, warmup - 1)):
                out = sync(fn(x, labels))
            compile_s = time.perf_counter() - t0
    except DeviceError as e:
        raise Unsupported(str(e), e.detail) from e
    except tf.errors.OpError as e:
        reason = _unsupported(e, workload, config)
        if reason is None:
            raise
        raise reason from e
    layout = None
    if config.execution == "graph":
        layout = audit.layout(audit.op_counts(recorded["metadata"]))

    def run():
        with tf.device(device):
            return sync(fn(x, labels))

    finite = bool(np.all(np.isfinite(out)))
    return Step(workload, config, model, run, compile_s, tuple(out.shape), layout, finite)


def _prepare_engine(workload, config, device: str, seed: int, warmup: int) -> Step:
    """`prepare` for a serving engine: export, conversion, loading and warm-up are `compile_s`."""
    name = config.execution
    if "GPU" in device:
        module = engines.implementation(name)
        raise Unsupported(f"{name} runs on the CPU here; {module.gpu_note()}")
    try:
        with tf.device(device):
            # An engine converts a float32 model and computes in its own precision (its hint).
            model = build_model(dataclasses.replace(workload, dtype_policy="float32"), config, seed)
            x = inputs(workload, seed)[0].numpy()
        t0 = time.perf_counter()
        step = compiled_step(model, "inference", name, precision=workload.dtype_policy)
        out = step(x)  # export, convert, load, first run
        runner = step.runner(workload.batch_size)
        for _ in range(max(0, warmup - 1)):
            out = runner.run(x)
        compile_s = time.perf_counter() - t0
    except engines.EngineError as e:
        raise Unsupported(str(e), e.detail) from e
    except DeviceError as e:
        raise Unsupported(str(e), e.detail) from e

    def run():
        return runner.run(x)

    module = engines.implementation(name)
    info = {**module.versions(), "threads": runner.threads}
    if "precision_hint" in info:  # the hint this runner was compiled with, not the default's
        info["precision_hint"] = module.PRECISIONS[runner.precision]
    finite = bool(np.all(np.isfinite(out)))
    layout = audit.engine_layout(name, runner.ops)
    shape = tuple(out.shape)
    return Step(workload, config, model, run, compile_s, shape, layout, finite, info, step)


def matmul_step(device: str, dtype_policy: str, n: int = 3072) -> tuple:
    """(run, flop per call): an n x n matmul in the policy's compute dtype, the device's practical
    ceiling for the dense arithmetic a convolution lowers to."""
    dtype = resolve_policy(dtype_policy).compute_dtype
    device = devices.resolve(device)
    with tf.device(device):
        rng = tf.random.Generator.from_seed(0)
        a = tf.cast(rng.uniform((n, n)), dtype)
        b = tf.cast(rng.uniform((n, n)), dtype)
        fn = tf.function(lambda: tf.matmul(a, b), autograph=False)
        sync(fn())

    def run():
        with tf.device(device):
            return sync(fn())

    return run, 2 * n**3
