"""The command line: `list`, `info`, help before TensorFlow, quiet output, the console script."""

import os
import shutil
import subprocess
import sys

import pytest

import blocks
from blocks import logs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "blocks", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=env,
    )


def test_list_is_quiet_unless_verbose():
    """A user's shell sets no TF_CPP_MIN_LOG_LEVEL: TensorFlow's import banners (there is always
    one on x86-64: oneDNN's, or the instructions the binary does not use) reach stderr only with
    --verbose."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = _cli("list", env=env)
    assert out.returncode == 0, out.stderr
    for name, variant in blocks.VARIANTS.items():
        assert f"{name} " in out.stdout and variant.summary in out.stdout
    for name, engine in blocks.ENGINES.items():  # each engine: its versions, or what to install
        line = next(ln for ln in out.stdout.splitlines() if ln.startswith(f"{name} "))
        assert (engine.missing() or engine.distributions[0]) in line
    assert out.stderr == "", f"TensorFlow's log lines leaked: {out.stderr[:300]}"
    loud = _cli("--verbose", "list", env=env)
    assert loud.returncode == 0 and loud.stdout == out.stdout
    assert any(banner in loud.stderr for banner in logs.IMPORT_BANNERS), loud.stderr[:500]


def test_info_counts_flops_and_parameters():
    out = _cli("info")
    assert out.returncode == 0, out.stderr
    lines = {tuple(line.split()[:2]): line for line in out.stdout.splitlines()}
    # Published figures for the standard ImageNet networks (torchvision): 11.69M / 21.80M params,
    # 1.82 / 3.67 GMAC per 224x224 image.
    assert "11,689,512" in lines[("resnet18", "imagenet")]
    assert "3.628" in lines[("resnet18", "imagenet")]
    assert "21,797,672" in lines[("resnet34", "imagenet")]
    assert "1.041" in lines[("resnet18", "seed")]


@pytest.mark.parametrize("args", [["--help"], ["pick", "--help"], ["report", "--help"]])
def test_help_does_not_load_tensorflow(args):
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "blocks", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert out.returncode == 0 and "usage: python -m blocks" in out.stdout
    assert " tensorflow" not in out.stderr, "TensorFlow was imported to print help"


def test_console_script_names_itself():
    script = shutil.which("resnet-blocks", path=os.path.dirname(sys.executable))
    if script is None:
        pytest.skip("the resnet-blocks console script is not installed in this environment")
    out = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("usage: resnet-blocks")
