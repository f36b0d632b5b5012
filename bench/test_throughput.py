"""Throughput of every configuration's ResNet18, against the reference in the same rounds, and
each device's matmul ceiling.

One group per workload (device, arch, size, mode, dtype policy, batch): a fair race. Every
benchmark also checks what it computed (shape, finite), so `--benchmark-disable` is a smoke test.
"""

from __future__ import annotations

import warnings

import pytest
from replay import player

from blocks import _compat, cpu
from blocks.archs import ARCHS
from blocks.measure import lab, record, stats
from blocks.measure.workload import REFERENCE, group


def test_matmul_ceiling(benchmark, ceiling_workload, bench_lab, ceilings, request):
    """The device's practical peak: a 3072x3072 matmul in the policy's compute dtype."""
    w = ceiling_workload
    benchmark.group = f"{w.device} ceiling {w.dtype_policy}"
    benchmark.extra_info.update(kind="ceiling", device=w.device, dtype_policy=w.dtype_policy)
    if benchmark.disabled:
        benchmark(lambda: None)
        return
    gflops = bench_lab.ceiling(w, request.config.getoption("target_seconds"))
    ceilings[(w.device, w.dtype_policy)] = gflops
    benchmark.extra_info["gflops_per_sec"] = round(gflops, 1)
    benchmark.pedantic(player([2 * 3072**3 / gflops / 1e9]), rounds=1, iterations=1)


def test_resnet18(benchmark, case, bench_lab, ceilings, request):
    """Images per second of one configuration, and its speedup over the reference, paired."""
    workload, config = case
    benchmark.group = group(workload, config)
    try:
        prepared = bench_lab.prepare(workload, config)
    except lab.Unrunnable as e:
        pytest.skip(str(e))
    classes = ARCHS[workload.arch].num_classes
    # The logits of the replicas this process holds: all of a mirrored strategy's, one per process
    # of a multi-worker cluster (its chief's).
    local = config.replicas if config.strategy == "mirrored" else 1
    assert prepared.output_shape == (workload.batch_size * local, classes)
    assert prepared.finite, f"{config.label}: non-finite output"
    target_s = request.config.getoption("target_seconds")
    if benchmark.disabled:  # smoke: one interleaved round through the same path
        measured = bench_lab.measure(workload, config, target_s=0.0)
        assert measured.times and measured.reference_times
        benchmark(lambda: None)
        return
    key = (workload.device, workload.dtype_policy)
    if key not in ceilings:
        ceilings[key] = bench_lab.ceiling(workload, target_s)
    measured = bench_lab.measure(workload, config, target_s)
    if measured.load.busy:
        warnings.warn(f"{config.label}: {measured.load.warning()}", stacklevel=1)
    rounds = sorted(measured.times)
    benchmark.pedantic(
        player([measured.times[r] for r in rounds]), rounds=len(rounds), iterations=1
    )
    row = _row(workload, config, prepared, measured, ceilings[key])
    if workload.mode == "inference" and config.strategy == "none":
        # Is it computing the same thing? Against float64 of the same weights (random ones).
        check = bench_lab.verify(workload, config)
        row.error_vs_float64 = max((e for e, _ in check["checks"].values()), default=None)
        row.verified = check["passed"]
    benchmark.extra_info.update(row.info())


def _sig(x: float) -> float:
    """Five significant digits, whatever the scale."""
    return float(f"{x:.5g}")


def _row(workload, config, prepared, measured, ceiling: float) -> record.Row:
    """The results row of one configuration's measurement (`record.Row`)."""
    rounds = sorted(measured.times)
    images = workload.batch_size * config.replicas
    gflop = prepared.flop_per_image / 1e9
    median = stats.throughput(list(measured.times.values()), images)["images_per_sec"]
    # The reference in the rounds its speedup is paired from, beside it in every table.
    paired = [measured.reference_times[r] for r in rounds if r in measured.reference_times]
    reference = stats.throughput(paired, workload.batch_size)
    ratio = measured.ratio()
    # In throughput: a strategy's step processes `replicas` times the reference's images.
    speedup = [config.replicas * x for x in ratio.speedup()]
    row = record.Row(
        workload=workload,
        config=config,
        label=config.label,
        reference=REFERENCE.label,
        images_per_sec=_sig(median),
        gflop_per_image=_sig(gflop),
        gflops_per_sec=_sig(median * gflop),
        ceiling_gflops_per_sec=_sig(ceiling),
        efficiency=_sig(median * gflop / ceiling),
        speedup_vs_reference=_sig(speedup[0]),
        speedup_ci=[_sig(speedup[1]), _sig(speedup[2])] if ratio.decided else None,
        reference_images_per_sec=_sig(reference["images_per_sec"]),
        load=measured.load.to_json(),
        times=[measured.times[r] for r in rounds],
        reference_times=[measured.reference_times.get(r) for r in rounds],
        strategy=config.strategy,
        replicas=config.replicas,
        global_batch=images,
        compile_s=round(prepared.compile_s, 3),
        layout=prepared.layout,
        engine=prepared.engine,
        onednn=prepared.onednn,
        device_name=cpu.cpu_model_name() if workload.device.startswith("CPU") else None,
        tf_version=_compat.TF_VERSION,
        keras_version=_compat.KERAS_VERSION,
    )
    scaling = measured.scaling()
    if scaling is not None:  # throughput with N replicas / (N x one replica's), paired rounds
        row.scaling_efficiency = _sig(scaling.median)
        row.scaling_ci = [_sig(scaling.low), _sig(scaling.high)] if scaling.decided else None
        single = stats.throughput(list(measured.single_times.values()), workload.batch_size)
        row.single_replica_images_per_sec = _sig(single["images_per_sec"])
    return row
