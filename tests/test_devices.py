"""Devices that lack a kernel: the nchw variant's error, and nchw checked where oneDNN provides it."""

import os
import re
import subprocess
import sys

import pytest

import blocks

from support import runnable

HERE = os.path.dirname(os.path.abspath(__file__))


def _env(**overrides):
    env = dict(os.environ)
    env.update(CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2", **overrides)
    return env


def test_nchw_error_names_the_device_version_and_dtype():
    """With oneDNN off, TF has no NCHW Conv2D on the CPU: building says so, before any graph runs."""
    code = "import blocks; blocks.resnet18('nchw')"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(TF_ENABLE_ONEDNN_OPTS="0"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert re.search(
        r"blocks\.kernels\.DeviceError: nchw: no channels_first float32 Conv2D on CPU:0 in TF "
        r"\d+\.\d+\.\d+\S*; set TF_ENABLE_ONEDNN_OPTS=1 before TensorFlow is imported",
        result.stderr,
    ), result.stderr[-2000:]


def test_other_variants_build_without_onednn():
    code = "import blocks; [blocks.resnet18(v) for v in ('subclassed', 'functional', 'xla')]; print('ok')"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(TF_ENABLE_ONEDNN_OPTS="0"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]


@pytest.mark.slow
def test_nchw_suite_with_onednn_on():
    """Where this process cannot run nchw (oneDNN off by default on this CPU), run every
    nchw test in a process with oneDNN on, so the variant is checked on this machine too."""
    if runnable(blocks.VARIANTS["nchw"]) is None:
        pytest.skip("nchw runs in this process; its tests ran here")
    files = ["test_block_properties.py", "test_models.py", "test_weights.py", "test_errors.py"]
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
            *[os.path.join(HERE, f) for f in files],
        ],
        env=_env(TF_ENABLE_ONEDNN_OPTS="1"),
        capture_output=True,
        text=True,
        timeout=3000,
        cwd=os.path.dirname(HERE),
    )
    tail = result.stdout[-3000:]
    if result.returncode == 5 or re.search(r"^\d+ skipped", tail.splitlines()[-1] if tail else ""):
        pytest.skip(f"nchw cannot run here even with oneDNN on:\n{tail}")
    assert result.returncode == 0, tail + result.stderr[-2000:]
    assert re.search(r"\d+ passed", tail), tail
