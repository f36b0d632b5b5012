"""`python -m blocks list` and `info`."""

import os
import subprocess
import sys

import blocks


def _cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, "-m", "blocks", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def test_list_shows_every_variant():
    out = _cli("list")
    assert out.returncode == 0, out.stderr
    for name, variant in blocks.VARIANTS.items():
        assert f"{name} " in out.stdout and variant.summary in out.stdout


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


def test_unknown_command():
    out = _cli("fly")
    assert out.returncode == 2 and "invalid choice: 'fly'" in out.stderr
