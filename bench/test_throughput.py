"""Throughput of every variant's ResNet18, side by side, and each device's matmul ceiling.

One group per (device, arch, size, mode, dtype policy, batch): a fair race. Every benchmark also
checks what it computed (shape, finite), so `--benchmark-disable` is a smoke test of the matrix.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import blocks
from blocks.measure import devices, flops, timing


def _matmul_step(device: str, policy: str, n: int = 3072):
    dtype = blocks.models.resolve_policy(policy).compute_dtype
    with tf.device(device):
        rng = tf.random.Generator.from_seed(0)
        a = tf.cast(rng.uniform((n, n)), dtype)
        b = tf.cast(rng.uniform((n, n)), dtype)
        fn = tf.function(lambda: tf.matmul(a, b), autograph=False)
        fn().numpy()

    def run():
        with tf.device(device):
            return np.asarray(fn())

    return run, 2 * n**3


def measure_ceiling(device: str, policy: str, target_s: float) -> float:
    """GFLOP/s of a large square matmul in the policy's compute dtype on the device."""
    run, work = _matmul_step(device, policy)
    rounds = timing.calibrate_rounds(run, target_s=target_s)
    stats = timing.summarize(timing.time_calls(run, rounds), 1)
    return work / stats["median_s"] / 1e9


def _extra_info(benchmark, workload, step, gflop_per_image, ceilings):
    info = devices.describe(workload.device)
    benchmark.extra_info.update(
        variant=workload.label,
        mode=workload.mode,
        batch_size=workload.batch_size,
        dtype_policy=workload.dtype_policy,
        arch=workload.arch,
        image_size=workload.input_shape()[0],
        device=workload.device,
        device_name=info["name"],
        tf_version=blocks.TF_VERSION,
        keras_version=blocks.KERAS_VERSION,
        compile_s=round(step.compile_s, 3),
        gflop_per_image=gflop_per_image,
        ceiling_gflops_per_sec=ceilings.get((workload.device, workload.dtype_policy)),
        # The layout audit: transposes, fused/unfused convs, XLA clusters TF ran (None: eager).
        **(step.layout or {}),
    )


def test_matmul_ceiling(benchmark, ceiling_case, ceilings, request):
    """The device's practical peak: a 3072x3072 matmul in the policy's compute dtype."""
    device, policy = ceiling_case
    run, work = _matmul_step(device, policy)
    benchmark.group = f"{device} ceiling {policy}"
    benchmark.extra_info.update(
        kind="ceiling",
        device=device,
        dtype_policy=policy,
        flop_per_call=work,
        device_name=devices.describe(device)["name"],
        tf_version=blocks.TF_VERSION,
        keras_version=blocks.KERAS_VERSION,
    )
    if benchmark.disabled:
        out = benchmark(run)
    else:
        rounds = timing.calibrate_rounds(run, target_s=request.config.getoption("target_seconds"))
        out = benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=0)
        gflops = work / benchmark.stats.stats.median / 1e9
        ceilings[(device, policy)] = gflops
        benchmark.extra_info["gflops_per_sec"] = round(gflops, 1)
    assert np.all(np.isfinite(np.asarray(out, np.float32)))


def test_resnet18(benchmark, workload, ceilings, request):
    """Images per second of one variant's ResNet18 in one configuration."""
    benchmark.group = workload.group
    try:
        step = timing.prepare(workload)
    except timing.Unsupported as e:
        pytest.skip(str(e))
    target_s = request.config.getoption("target_seconds")
    gflop = flops.flops_per_image(step.model, workload.mode) / 1e9
    if not benchmark.disabled and (workload.device, workload.dtype_policy) not in ceilings:
        ceilings[(workload.device, workload.dtype_policy)] = measure_ceiling(
            workload.device, workload.dtype_policy, target_s
        )
    _extra_info(benchmark, workload, step, gflop, ceilings)
    if benchmark.disabled:
        out = benchmark(step.run)
    else:
        rounds = timing.calibrate_rounds(step.run, target_s=target_s)
        out = benchmark.pedantic(step.run, rounds=rounds, iterations=1, warmup_rounds=0)
        median = benchmark.stats.stats.median
        ips = workload.batch_size / median
        ceiling = ceilings[(workload.device, workload.dtype_policy)]
        benchmark.extra_info.update(
            images_per_sec=round(ips, 2),
            gflops_per_sec=round(ips * gflop, 2),
            efficiency=round(ips * gflop / ceiling, 4),
        )
    num_classes = blocks.ARCHS[workload.arch].num_classes
    assert out.shape == (workload.batch_size, num_classes)
    assert np.all(np.isfinite(out)), f"{workload.label}: non-finite output"
