"""Benchmark axes as pytest options, parametrization over the registry, and the summary tables.

pytest bench/ --benchmark-only                      # the default matrix, every device
pytest bench/ --benchmark-only --batch-sizes 1,8,64 --modes inference --variants xla,functional
pytest bench/ --benchmark-disable                    # run every combination once (smoke test)
"""

from __future__ import annotations

import itertools
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

import blocks  # noqa: E402
from blocks.measure import devices, report, timing  # noqa: E402

REFERENCE = "subclassed"

_AXES = {
    "devices": "comma-separated devices to run on (default: every device TensorFlow lists)",
    "batch-sizes": "comma-separated batch sizes (default: 1,64)",
    "modes": "comma-separated modes, of inference,train (default: both)",
    "dtype-policies": "comma-separated dtype policies (default: float32, plus each mixed policy "
    "the device runs natively; the others are listed as skipped)",
    "variants": "comma-separated variants (default: every registered variant)",
    "arch": "comma-separated archs, of seed,imagenet (default: seed)",
    "image-size": "comma-separated square image sizes (default: the arch's, 32 for seed)",
}


def pytest_addoption(parser):
    group = parser.getgroup("resnet-blocks benchmarks")
    for name, text in _AXES.items():
        group.addoption(f"--{name}", default=None, help=text)
    group.addoption(
        "--target-seconds",
        type=float,
        default=6.0,
        help="timed work per benchmark, split into calibrated rounds (default: 6)",
    )


def _csv(config, name):
    value = config.getoption(name.replace("-", "_"))
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def _ints(config, name, default):
    values = _csv(config, name)
    if values is None:
        return default
    try:
        out = [int(v) for v in values]
    except ValueError:
        raise pytest.UsageError(
            f"--{name} takes comma-separated positive ints; Received: {values}"
        ) from None
    if any(v <= 0 for v in out):
        raise pytest.UsageError(f"--{name} takes positive ints; Received: {values}")
    return out


def _choices(config, name, allowed, default):
    values = _csv(config, name)
    if values is None:
        return default
    bad = [v for v in values if v not in allowed]
    if bad:
        raise pytest.UsageError(f"--{name}: unknown {bad}; expected some of {list(allowed)}")
    return values


def _workloads(config):
    try:
        device_names = [
            devices.resolve(d) for d in (_csv(config, "devices") or devices.list_devices())
        ]
    except ValueError as e:
        raise pytest.UsageError(f"--devices: {e}") from None
    variants = _choices(config, "variants", list(blocks.VARIANTS), list(blocks.VARIANTS))
    modes = _choices(config, "modes", timing.MODES, list(timing.MODES))
    archs = _choices(config, "arch", list(blocks.ARCHS), ["seed"])
    batches = _ints(config, "batch-sizes", [1, 64])
    sizes = _ints(config, "image-size", [None])
    asked_policies = _choices(config, "dtype-policies", blocks.DTYPE_POLICIES, None)
    out = []
    for device in device_names:
        native = devices.native_dtype_policies(device)
        policies = asked_policies or list(blocks.DTYPE_POLICIES)
        for arch, size, mode, policy, batch in itertools.product(
            archs, sizes, modes, policies, batches
        ):
            # Off the default list: a mixed policy this device only emulates. Listed as skipped.
            skip = (
                None
                if asked_policies or native[policy] is None
                else (
                    f"{policy} not in the default matrix on {device}: {native[policy]} "
                    "(ask for it with --dtype-policies)"
                )
            )
            rows = [(v, "graph") for v in variants]
            if REFERENCE in variants:
                rows.append((REFERENCE, "eager"))
            for variant, execution in rows:
                w = timing.Workload(variant, mode, batch, policy, device, arch, size, execution)
                out.append((w, skip))
    return out


def _ceilings(config):
    names = [devices.resolve(d) for d in (_csv(config, "devices") or devices.list_devices())]
    asked = _choices(config, "dtype-policies", blocks.DTYPE_POLICIES, None)
    out = []
    for device in names:
        native = devices.native_dtype_policies(device)
        for policy in asked or blocks.DTYPE_POLICIES:
            if asked or native[policy] is None:
                out.append((device, policy))
    return out


_SHORT = {
    "inference": "inf",
    "train": "train",
    "float32": "f32",
    "mixed_bfloat16": "bf16",
    "mixed_float16": "f16",
}


def _id(w: timing.Workload) -> str:
    """Short enough for a 100-column table; the group header spells the configuration out."""
    h, _, _ = w.input_shape()
    mode, policy = _SHORT[w.mode], _SHORT[w.dtype_policy]
    return f"{w.label}-{mode}-b{w.batch_size}-{policy}-{w.device}-{w.arch}{h}"


def pytest_generate_tests(metafunc):
    if "workload" in metafunc.fixturenames:
        params = [
            pytest.param(w, id=_id(w), marks=[pytest.mark.skip(reason=skip)] if skip else [])
            for w, skip in _workloads(metafunc.config)
        ]
        metafunc.parametrize("workload", params)
    if "ceiling_case" in metafunc.fixturenames:
        cases = _ceilings(metafunc.config)
        metafunc.parametrize("ceiling_case", cases, ids=[f"{d}-{_SHORT[p]}" for d, p in cases])


def pytest_configure(config):
    # A narrower default table (fits 100 columns); --benchmark-columns still overrides it.
    if hasattr(config.option, "benchmark_columns") and "--benchmark-columns" not in " ".join(
        config.invocation_params.args
    ):
        config.option.benchmark_columns = ["median", "iqr", "ops", "rounds"]
    if hasattr(config.option, "benchmark_name") and "--benchmark-name" not in " ".join(
        config.invocation_params.args
    ):
        config.option.benchmark_name = "short"


@pytest.fixture(scope="session")
def ceilings():
    """(device, dtype policy) -> matmul GFLOP/s, measured in this run on first use."""
    return {}


def pytest_benchmark_update_json(config, benchmarks, output_json):
    report.annotate(output_json["benchmarks"])


def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or session.disabled or not session.benchmarks:
        return
    rows = [b.as_dict(include_data=False) for b in session.benchmarks]
    report.annotate(rows)
    terminalreporter.section("resnet-blocks: images/s per group (median [IQR], speedup)")
    for line in report.text_tables(rows, width=100):
        terminalreporter.write_line(line)
