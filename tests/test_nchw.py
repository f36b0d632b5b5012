"""nchw where it runs and where it cannot: the one-line error, and the nchw tests with oneDNN on.

Where this process has oneDNN off on an x86-64 CPU (see tests/helpers/hosts.py), every nchw test
of the suite runs here again in a process with TF_ENABLE_ONEDNN_OPTS=1, and must pass: a skip
there for want of a kernel fails this test, except for the half-precision dtypes that the CPU's
flags say oneDNN cannot compute.
"""

import os
import re
import subprocess
import sys

import pytest

from blocks import cpu
from tests.helpers.hosts import NCHW_ELSEWHERE, nchw_dtype_reason

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FILES = [
    "test_reference.py",
    "test_block_properties.py",
    "test_models.py",
    "test_precision.py",
    "test_weights.py",
    "test_errors.py",
]


def _env(**overrides):
    env = dict(os.environ)
    env.update(CUDA_VISIBLE_DEVICES="", **overrides)
    return env


@pytest.mark.skipif(not cpu.is_x86_64(), reason="oneDNN's on/off switch is x86-64's")
def test_without_onednn_nchw_says_why_in_one_line_and_the_others_build():
    code = (
        "import blocks\n"
        "try:\n"
        "    blocks.resnet18('nchw')\n"
        "except blocks.DeviceError as e:\n"
        "    print(str(e)); print(e.detail)\n"
        "for v in ('subclassed', 'functional', 'xla', 'folded'):\n"
        "    blocks.resnet18(v)\n"
        "print('built')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(TF_ENABLE_ONEDNN_OPTS="0"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    message, detail, built = result.stdout.splitlines()
    assert re.fullmatch(
        r"nchw: no channels_first float32 Conv2D on CPU:0 in TF \d+\.\d+\.\d+\S*; "
        r"set TF_ENABLE_ONEDNN_OPTS=1 before TensorFlow is imported",
        message,
    ), message
    assert len(message) <= 120
    assert detail.startswith("TensorFlow said: ") and "NHWC" in detail
    assert built == "built"


def test_nchw_tests_pass_with_onednn_on():
    if not NCHW_ELSEWHERE:
        pytest.skip("nchw's tests ran in this process (oneDNN on, or not an x86-64 CPU)")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "nchw",
            "-rs",
            *[os.path.join(ROOT, "tests", f) for f in FILES],
        ],
        env=_env(TF_ENABLE_ONEDNN_OPTS="1"),
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=ROOT,
    )
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-2000:]
    passed = re.search(r"(\d+) passed", out)
    assert passed and int(passed.group(1)) >= 40, out[-3000:]
    allowed = {r for r in (nchw_dtype_reason("bfloat16"), nchw_dtype_reason("float16")) if r}
    allowed.add("variant 'nchw' is inference-only")  # never: nchw trains; listed for clarity
    skipped = re.findall(r"^SKIPPED \[\d+\] [^:]+:\d+: (.*)$", out, flags=re.M)
    unexpected = [r for r in skipped if not any(r.startswith(a) for a in allowed)]
    assert not unexpected, f"nchw skipped with oneDNN on: {unexpected}"
