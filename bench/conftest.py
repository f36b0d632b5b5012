"""Benchmark axes as pytest options, the matrix of (workload, configuration), and the summary.

    pytest bench/ --benchmark-only                        # the default matrix, every device
    pytest bench/ --benchmark-only --batch-sizes 1,8,64 --modes inference --variants xla,functional
    pytest bench/ --benchmark-only --executions graph,xla --runtimes default,onednn
    pytest bench/ --benchmark-disable                     # run every combination once (smoke test)

Every benchmark runs in worker processes (`blocks.measure.lab`): the configuration in the worker of
its runtime, interleaved round by round with the reference (subclassed, graph, default runtime) in
a worker of its own, so `speedup_vs_reference` comes from paired rounds inside the benchmark.
pytest-benchmark records the times measured inside the workers (bench/replay.py is its clock).
"""

from __future__ import annotations

import itertools
import os

from blocks import logs

logs.quiet_tensorflow()

import pytest  # noqa: E402

from blocks.archs import ARCHS  # noqa: E402
from blocks.checks import DTYPE_POLICIES  # noqa: E402
from blocks.executions import ENGINES, is_engine  # noqa: E402
from blocks.measure import devices, lab, report, runs, runtimes, workers  # noqa: E402
from blocks.measure.workload import (  # noqa: E402
    EXECUTIONS,
    MODES,
    REFERENCE,
    STRATEGIES,
    STRATEGY_REPLICAS,
    Config,
    Workload,
    group,
)
from blocks.variants import VARIANTS  # noqa: E402

_AXES = {
    "devices": "comma-separated devices (default: every device TensorFlow lists)",
    "batch-sizes": "comma-separated batch sizes per replica (default: 1,64)",
    "modes": "comma-separated modes, of inference,train (default: both)",
    "dtype-policies": "comma-separated dtype policies (default: float32, plus each mixed policy "
    "the device runs natively; the others are listed as skipped)",
    "variants": "comma-separated variants (default: every registered variant)",
    "executions": "comma-separated executions, of graph,xla,eager,onnx,openvino,litert (default: "
    "graph,xla, plus the reference variant eagerly and, in inference, run by each serving engine "
    "installed)",
    "runtimes": "comma-separated runtimes, of default,onednn,no-onednn (default: default; a "
    "runtime equal to TensorFlow's default here is measured once)",
    "strategies": "comma-separated distribution strategies for training, of "
    "none,mirrored,multiworker (default: none)",
    "arch": f"comma-separated archs, of {','.join(ARCHS)} (default: {Workload.arch})",
    "image-size": "comma-separated square image sizes (default: the arch's, 32 for seed)",
}


def pytest_addoption(parser):
    group = parser.getgroup("resnet-blocks benchmarks")
    for name, text in _AXES.items():
        group.addoption(f"--{name}", default=None, help=text)
    group.addoption(
        "--target-seconds",
        type=float,
        default=4.0,
        help="timed work per benchmark, configuration and reference together (default: 4)",
    )
    group.addoption(
        "--results-dir",
        default=None,
        help="with --benchmark-json: also keep the run in this directory, named by the machine "
        "and the TF and Keras versions (the cross-version report reads such a directory)",
    )
    group.addoption(
        "--replicas",
        type=int,
        default=STRATEGY_REPLICAS,
        help="replicas of a distribution strategy: devices, or worker processes "
        f"(default: {STRATEGY_REPLICAS})",
    )
    group.addoption(
        "--min-sample-s",
        type=float,
        default=lab.MIN_SAMPLE_S,
        help=f"each timed sample runs enough calls to last this long (default: {lab.MIN_SAMPLE_S})",
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
    if bad or not values:
        raise pytest.UsageError(f"--{name}: unknown {bad}; expected some of {list(allowed)}")
    return values


def matrix(config) -> tuple:
    """([(workload, configuration, skip reason or None)], [(workload for a ceiling)]) from the
    options, checked; a bad option is a UsageError (one line, no traceback)."""
    try:
        names = [devices.resolve(d) for d in (_csv(config, "devices") or devices.list_devices())]
    except ValueError as e:
        raise pytest.UsageError(f"--devices: {e}") from None
    variants = _choices(config, "variants", list(VARIANTS), list(VARIANTS))
    asked_executions = _choices(config, "executions", EXECUTIONS, None)
    executions = asked_executions or ["graph", "xla"]
    runtime_names = _choices(config, "runtimes", list(runtimes.RUNTIMES), ["default"])
    measured, _ = runtimes.distinct(runtime_names)
    modes = _choices(config, "modes", MODES, list(MODES))
    strategies = _choices(config, "strategies", STRATEGIES, ["none"])
    replicas = config.getoption("replicas")
    if replicas < 2:
        raise pytest.UsageError(f"--replicas takes an int of at least 2; Received: {replicas}")
    archs = _choices(config, "arch", list(ARCHS), [Workload.arch])
    batches = _ints(config, "batch-sizes", [1, 64])
    sizes = _ints(config, "image-size", [None])
    asked = _choices(config, "dtype-policies", DTYPE_POLICIES, None)
    rows, ceilings = [], []
    for device in names:
        native = devices.native_dtype_policies(device)
        for arch, size, mode, policy, batch in itertools.product(
            archs, sizes, modes, asked or DTYPE_POLICIES, batches
        ):
            workload = Workload(mode, batch, policy, arch, size, device)
            # Off the default list: a mixed policy this device only emulates. Listed as skipped.
            skip = None
            if not asked and native[policy] is not None:
                skip = f"{policy} on {device}: {native[policy]} (ask with --dtype-policies)"
            for strategy in strategies:
                if strategy != "none" and mode != "train":
                    continue  # strategies distribute training steps
                n = 1 if strategy == "none" else replicas
                combos = list(itertools.product(variants, executions, measured))
                if asked_executions is None and REFERENCE.variant in variants:
                    # By default for the reference only: how much tf.function gives (eager), and
                    # what each serving engine gives (an engine converts the function, which
                    # every variant computes in the same ops).
                    combos += [(REFERENCE.variant, "eager", r) for r in measured]
                    if mode == "inference" and strategy == "none":
                        combos += [(REFERENCE.variant, e, measured[0]) for e in ENGINES]
                for v, e, r in combos:
                    if is_engine(e) and (r != measured[0] or strategy != "none"):
                        continue  # TensorFlow's runtimes do not reach an engine; no strategy
                    why = skip or _engine_skip(e, mode)
                    rows.append((workload, Config(v, e, r, strategy, n), why))
            if skip is None and (device, policy) not in {
                (w.device, w.dtype_policy) for w in ceilings
            }:
                ceilings.append(workload)
    return rows, ceilings


def _engine_skip(execution: str, mode: str):
    """Why a serving engine's row cannot run (not installed; training), or None."""
    if not is_engine(execution):
        return None
    if mode != "inference":
        return f"{execution}: runs inference only"
    return ENGINES[execution].missing()


def pytest_configure(config):
    if not hasattr(config.option, "benchmark_timer"):
        return
    # Times come from the workers; pytest-benchmark's own clock would add the round trip.
    config.option.benchmark_timer = "replay.clock"
    # A narrower default table (fits 100 columns); --benchmark-columns still overrides it.
    args = " ".join(config.invocation_params.args)
    if "--benchmark-columns" not in args:
        config.option.benchmark_columns = ["median", "iqr", "ops", "rounds"]
    if "--benchmark-name" not in args:
        config.option.benchmark_name = "short"
    config.stash[_MATRIX] = matrix(config)
    _check_results_dir(config)


def _check_results_dir(config) -> None:
    """--results-dir is refused before anything runs when the run could not be kept there
    without replacing what is not an earlier run (a file at the directory's path, a directory
    or a foreign file at the run's)."""
    directory = config.getoption("results_dir")
    if not directory:
        return
    if os.path.lexists(directory) and not os.path.isdir(directory):
        raise pytest.UsageError(
            f"--results-dir: {directory!r} exists and is not a directory; expected a directory "
            "(made if missing)"
        )
    target = os.path.join(directory, report.run_file_name(report.run_header()))
    try:
        runs.check_run_path(target)
    except OSError as e:
        raise pytest.UsageError(f"--results-dir: {e}") from None


_MATRIX = pytest.StashKey[tuple]()


def _id(workload: Workload, config: Config) -> str:
    """Short enough for a 100-column table; the group header spells the workload out."""
    short = {"inference": "inf", "train": "train", "float32": "f32"}
    policy = short.get(workload.dtype_policy, workload.dtype_policy.replace("mixed_", ""))
    strategy = "" if config.strategy == "none" else f"-{config.strategy}x{config.replicas}"
    return (
        f"{config.variant}-{config.execution}-{config.runtime}{strategy}-{short[workload.mode]}"
        f"-b{workload.batch_size}-{policy}-{workload.device}-{workload.arch}{workload.size}"
    )


def pytest_generate_tests(metafunc):
    rows, ceilings = metafunc.config.stash.get(_MATRIX, ([], []))
    if "case" in metafunc.fixturenames:
        params = [
            pytest.param((w, c), id=_id(w, c), marks=[pytest.mark.skip(reason=s)] if s else [])
            for w, c, s in rows
        ]
        metafunc.parametrize("case", params)
    if "ceiling_workload" in metafunc.fixturenames:
        metafunc.parametrize(
            "ceiling_workload", ceilings, ids=[f"{w.device}-{w.dtype_policy}" for w in ceilings]
        )


@pytest.fixture(scope="session")
def bench_lab(request):
    rows, _ = request.config.stash.get(_MATRIX, ([], []))
    the_lab = lab.Lab(
        workers.variant_modules({c.variant for _, c, _ in rows}),
        min_sample_s=request.config.getoption("min_sample_s"),
    )
    try:
        yield the_lab
    finally:
        the_lab.close()


_CEILINGS = pytest.StashKey[dict]()
_NOT_RUN = pytest.StashKey[list]()


@pytest.fixture(scope="session")
def ceilings(request):
    """(device, dtype policy) -> matmul GFLOP/s, measured in this run on first use."""
    return request.config.stash.setdefault(_CEILINGS, {})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Remember the configurations that could not run, with their one-line reason."""
    outcome = yield
    rep = outcome.get_result()
    case = getattr(item, "callspec", None) and item.callspec.params.get("case")
    if case and rep.skipped and rep.when in ("setup", "call"):
        workload, config = case
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        item.config.stash.setdefault(_NOT_RUN, []).append(
            {
                "group": group(workload, config),
                "label": config.label,
                "reason": reason.removeprefix("Skipped: "),
            }
        )


def pytest_benchmark_update_json(config, benchmarks, output_json):
    ceilings = {f"{d} {p}": g for (d, p), g in config.stash.get(_CEILINGS, {}).items()}
    header = report.run_header(config.stash.get(_NOT_RUN, []), ceilings)
    output_json["resnet_blocks"] = header
    directory = config.getoption("results_dir")
    if directory:
        os.makedirs(directory, exist_ok=True)
        report.write_json(os.path.join(directory, report.run_file_name(header)), output_json)


def pytest_terminal_summary(terminalreporter, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or session.disabled or not session.benchmarks:
        return
    rows = [b.as_dict(include_data=False) for b in session.benchmarks]
    terminalreporter.section("resnet-blocks: images/s per group (median [IQR], paired speedup)")
    for line in report.text_tables(rows, width=100):
        terminalreporter.write_line(line)
