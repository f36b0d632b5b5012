"""Test configuration: environment before TensorFlow loads, hypothesis profiles, registry fixtures,
the error table, and where the nchw tests run (see tests/helpers/hosts.py)."""

import os

from blocks import logs

logs.quiet_tensorflow()  # before TensorFlow loads; RESNET_BLOCKS_VERBOSE=1 shows its log lines

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

import blocks  # noqa: E402
from blocks import cpu, kernels  # noqa: E402
from tests.helpers.hosts import NCHW_ELSEWHERE, NCHW_ELSEWHERE_REASON, onednn_on_here  # noqa: E402
from tests.helpers.tolerances import Recorder  # noqa: E402

_COMMON = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
# `ci` (the default): derandomized, so a red CI is reproducible; sized for 2 cores.
settings.register_profile("ci", max_examples=10, derandomize=True, **_COMMON)
# `dev`: hundreds of drawn cases per property; run before changing a variant.
settings.register_profile("dev", max_examples=300, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_report_header(config):
    return (
        f"blocks: TF {blocks.TF_VERSION}, Keras {blocks.KERAS_VERSION}, variants "
        f"{list(blocks.VARIANTS)}, hypothesis profile {settings._current_profile}; "
        f"{cpu.cpu_model_name()} ({cpu.simd_summary()}), oneDNN "
        f"{'on' if onednn_on_here() else 'off'} here"
    )


@pytest.fixture(params=list(blocks.VARIANTS))
def variant(request):
    """Every registered variant; a new one is tested with no test edits."""
    return blocks.VARIANTS[request.param]


@pytest.fixture(params=list(blocks.ARCHS))
def arch(request):
    return blocks.ARCHS[request.param]


@pytest.fixture(autouse=True)
def _nchw_runs_where_onednn_is_on(request):
    """Skip an nchw test here, once for all of them, when test_nchw.py runs it elsewhere.

    (On a CPU other than x86-64 no switch gives NCHW kernels; there TensorFlow is asked.)
    """
    spec = getattr(request.node, "callspec", None)
    name = spec.params.get("variant") if spec else None
    if not (name == "nchw" or "nchw" in request.node.name):
        return
    if NCHW_ELSEWHERE:
        pytest.skip(NCHW_ELSEWHERE_REASON)
    if not cpu.is_x86_64():
        try:
            kernels.check_nchw_support()
        except kernels.DeviceError as e:
            pytest.skip(f"{e} ({cpu.cpu_model_name()})")


# Modules whose tests start TensorFlow processes (workers, clusters, command lines): the longest.
PROCESS_TESTS = (
    "test_distributed.py",
    "test_pick.py",
    "test_bench.py",
    "test_nchw.py",  # on a CPU with oneDNN off by default, it reruns every nchw test in a process
    "test_cli.py",
)


def pytest_collection_modifyitems(items):
    """The longest tests first: pytest-xdist hands tests out in this order, so the long ones are
    spread over its workers and the short ones even out the end."""
    items.sort(key=lambda item: item.path.name not in PROCESS_TESTS)


_ERRORS = pytest.StashKey[Recorder]()


@pytest.fixture(scope="session")
def errors(request) -> Recorder:
    """Closeness checks that remember the worst error per quantity, shown at the end."""
    return request.config.stash.setdefault(_ERRORS, Recorder())


_DESELECTED = pytest.StashKey[int]()


def pytest_deselected(items):
    exhaustive = [i for i in items if i.get_closest_marker("exhaustive")]
    if exhaustive:
        config = exhaustive[0].config
        config.stash[_DESELECTED] = config.stash.get(_DESELECTED, 0) + len(exhaustive)


def pytest_sessionfinish(session):
    """In a pytest-xdist worker: hand this worker's worst errors to the controller."""
    output = getattr(session.config, "workeroutput", None)
    recorder = session.config.stash.get(_ERRORS, None)
    if output is not None:
        if recorder is not None:
            output["blocks_errors"] = [[p, k, e, t] for (p, k), (e, t) in recorder.worst.items()]
        output["blocks_deselected"] = session.config.stash.get(_DESELECTED, 0)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """In the pytest-xdist controller: merge a finished worker's worst errors."""
    output = getattr(node, "workeroutput", {})
    recorder = node.config.stash.setdefault(_ERRORS, Recorder())
    for policy, kind, err, tol in output.get("blocks_errors", []):
        recorder.record(policy, kind, err, tol)
    seen = node.config.stash.get(_DESELECTED, 0)  # every worker deselects the same tests
    node.config.stash[_DESELECTED] = max(seen, output.get("blocks_deselected", 0))


def pytest_terminal_summary(terminalreporter, config):
    deselected = config.stash.get(_DESELECTED, 0)
    if deselected and "not exhaustive" in (config.option.markexpr or ""):
        terminalreporter.write_line(
            f"{deselected} exhaustive checks not run here: -m exhaustive runs them, and CI does, "
            "once, on the newest TensorFlow"
        )
    recorder = config.stash.get(_ERRORS, None)
    if recorder is None or not recorder.worst:
        return
    terminalreporter.section("largest relative error against the reference (tolerance)")
    for line in recorder.table():
        terminalreporter.write_line(line)
