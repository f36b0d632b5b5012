"""The one timing path: build a compiled ResNet step on a device, warm it up, time it.

The benchmarks (`bench/`) and `blocks.pick` both time through here: inputs placed on the device
before timing, the step traced (and XLA-compiled) and warmed up outside the timed rounds, each
timed call ending in a host sync on its result, rounds chosen by calibration.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from blocks import _compat, checks
from blocks.archs import ARCHS, get_arch
from blocks.kernels import DeviceError
from blocks.measure import audit, devices
from blocks.models import resnet18
from blocks.variants import get_variant

MODES = ("inference", "train")
EXECUTIONS = ("graph", "eager")


@dataclasses.dataclass(frozen=True)
class Workload:
    """One thing to time: a variant's ResNet18 in a mode, batch, policy, device, arch and size."""

    variant: str
    mode: str = "inference"
    batch_size: int = 64
    dtype_policy: str = "float32"
    device: str = "CPU:0"
    arch: str = "seed"
    image_size: Optional[int] = None
    execution: str = "graph"

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(
                f"Unknown mode. Expected one of {list(MODES)}; Received: mode={self.mode!r}"
            )
        if self.execution not in EXECUTIONS:
            raise ValueError(
                f"Unknown execution. Expected one of {list(EXECUTIONS)}; "
                f"Received: execution={self.execution!r}"
            )
        checks.positive_int(self.batch_size, "batch_size")

    @property
    def label(self) -> str:
        """The row name: the variant, marked when it runs eagerly."""
        return self.variant if self.execution == "graph" else f"{self.variant}[eager]"

    def input_shape(self) -> tuple:
        h, w, c = get_arch(self.arch).input_shape
        if self.image_size is not None:
            h = w = int(self.image_size)
        return (h, w, c)

    @property
    def group(self) -> str:
        """Variants that race each other: same device, arch, size, mode, policy and batch."""
        h, w, _ = self.input_shape()
        return (
            f"{self.device} {self.arch} {h}x{w} {self.mode} {self.dtype_policy} b{self.batch_size}"
        )


@dataclasses.dataclass
class Step:
    """A ready-to-time step: `run()` executes one compiled call and syncs on its result."""

    workload: Workload
    model: object
    run: Callable[[], np.ndarray]
    compile_s: float
    output_shape: tuple
    layout: Optional[dict] = None  # blocks.audit.layout of the graph TF ran; None when eager


class Unsupported(RuntimeError):
    """This device, TF version or memory cannot run the workload (the message says which)."""


def _sync(result) -> np.ndarray:
    # Reading the value to the host waits for the device to finish computing it.
    return np.asarray(result)


def prepare(workload: Workload, *, seed: int = 0, warmup: int = 2) -> Step:
    """Build the model and its compiled step on the device, trace/compile it and warm it up.

    Raises:
        Unsupported: the device lacks a kernel (nchw, bfloat16, ...) or memory for the batch.
        ValueError: an unknown variant, arch, policy, device or mode.
    """
    device = devices.resolve(workload.device)
    if workload.mode == "train" and not get_variant(workload.variant).trainable:
        raise Unsupported(f"variant {workload.variant!r} is inference-only: no training step")
    h, w, c = workload.input_shape()
    try:
        with tf.device(device):
            model = resnet18(
                workload.variant,
                arch=workload.arch,
                input_shape=(h, w, c),
                dtype_policy=workload.dtype_policy,
                seed=seed,
            )
            rng = tf.random.Generator.from_seed(seed)
            x = rng.uniform((workload.batch_size, h, w, c), dtype=tf.float32)
            num_classes = ARCHS[workload.arch].num_classes
            labels = rng.uniform((workload.batch_size,), 0, num_classes, dtype=tf.int32)
            if workload.mode == "inference":
                fn = _inference_fn(model)
            else:
                fn = train_step(model, workload.dtype_policy)
            if workload.execution == "graph":
                fn = tf.function(fn)
            t0 = time.perf_counter()
            with audit.run_metadata() as recorded:
                out = _sync(fn(x, labels))  # trace, compile, first run
            for _ in range(max(0, warmup - 1)):
                out = _sync(fn(x, labels))
            compile_s = time.perf_counter() - t0
            layout = None
            if workload.execution == "graph":
                layout = audit.layout(audit.op_counts(recorded["metadata"]))
    except DeviceError as e:
        raise Unsupported(str(e)) from e
    except tf.errors.ResourceExhaustedError as e:
        raise Unsupported(
            f"batch {workload.batch_size} does not fit in {device}'s memory "
            f"({workload.group}); TF said: {e.message.splitlines()[0]}"
        ) from e
    except (
        tf.errors.UnimplementedError,
        tf.errors.InvalidArgumentError,
        tf.errors.NotFoundError,
    ) as e:
        if "kernel" not in e.message.lower() and "support" not in e.message.lower():
            raise
        raise Unsupported(
            f"TensorFlow {_compat.TF_VERSION} cannot run {workload.label} on {device} "
            f"({workload.dtype_policy}): {e.message.splitlines()[0]}"
        ) from e

    def run():
        with tf.device(device):
            return _sync(fn(x, labels))

    return Step(workload, model, run, compile_s, tuple(out.shape), layout)


def _inference_fn(model):
    def infer(x, labels):
        return model(x, training=False)

    return infer


def train_step(model, dtype_policy: str):
    """Forward, softmax cross-entropy, gradients and an SGD-momentum update; returns the logits."""
    optimizer = _compat.sgd_momentum(0.01, 0.9, loss_scaling=dtype_policy == "mixed_float16")
    variables = model.trainable_variables
    _compat.build_optimizer(optimizer, variables)

    def train(x, labels):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            )
            scaled = _compat.scale_loss(optimizer, loss)
        grads = _compat.unscale_gradients(optimizer, tape.gradient(scaled, variables))
        optimizer.apply_gradients(zip(grads, variables))
        return logits

    return train


def time_calls(run: Callable[[], object], rounds: int) -> list:
    """Seconds per call of `run`, one sample per round (for callers without pytest-benchmark)."""
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        run()
        samples.append(time.perf_counter() - t0)
    return samples


def calibrate_rounds(
    run: Callable[[], object], *, target_s: float = 4.0, min_rounds: int = 5, max_rounds: int = 200
) -> int:
    """Enough rounds for a stable median within about `target_s` of timed work."""
    one = min(time_calls(run, 2))
    return int(min(max_rounds, max(min_rounds, math.ceil(target_s / max(one, 1e-6)))))


def summarize(samples, batch_size: int) -> dict:
    """Median, spread and throughput of per-call timings."""
    s = sorted(samples)
    q1, q3 = np.percentile(s, [25, 75])
    median = statistics.median(s)
    return {
        "median_s": median,
        "iqr_s": float(q3 - q1),
        "min_s": s[0],
        "max_s": s[-1],
        "rounds": len(s),
        "images_per_sec": batch_size / median,
    }
