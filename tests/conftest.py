"""Test configuration: environment before TensorFlow loads, hypothesis profiles, registry fixtures."""

import os

# Must precede the first TensorFlow import. oneDNN is left as TensorFlow sets it for this CPU (on
# with AVX512_VNNI/BF16 or AMX, off elsewhere); where that leaves NCHW without kernels, the nchw
# tests skip naming why, and test_devices.py reruns them in a process with oneDNN on.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

import blocks  # noqa: E402

_COMMON = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
# `ci`: derandomized, so a red CI is reproducible; sized for the tox matrix on 2 cores.
settings.register_profile("ci", max_examples=12, derandomize=True, **_COMMON)
# `dev`: thousands of drawn cases across the block tests; run before changing a variant.
settings.register_profile("dev", max_examples=400, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_report_header(config):
    return (
        f"blocks: TF {blocks.TF_VERSION}, Keras {blocks.KERAS_VERSION}, variants "
        f"{list(blocks.VARIANTS)}, hypothesis profile {settings._current_profile}, "
        f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS')}"
    )


@pytest.fixture(scope="session", params=list(blocks.VARIANTS))
def variant(request):
    """Every registered variant; a new one is tested with no test edits."""
    return blocks.VARIANTS[request.param]


@pytest.fixture(scope="session", params=list(blocks.ARCHS))
def arch(request):
    return blocks.ARCHS[request.param]


def pytest_terminal_summary(terminalreporter):
    from support import WORST

    if not WORST:
        return
    terminalreporter.section("largest relative error against the reference (tolerance)")
    for (policy, kind), (err, tol) in sorted(WORST.items()):
        terminalreporter.write_line(f"{policy:>15}  {kind:<30} {err:9.3g}  (<= {tol:g})")
