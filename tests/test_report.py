"""Benchmark results: speedups, tables, the chart, `python -m blocks report`, and a smoke run
of the benchmark matrix itself (`pytest bench/ --benchmark-disable`)."""

import json
import os
import re
import subprocess
import sys

import pytest

from blocks.measure import report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _row(variant, median, group="CPU:0 seed 32x32 inference float32 b64", batch=64):
    return {
        "group": group,
        "name": f"test_resnet18[{variant}]",
        "stats": {
            "median": median,
            "q1": median * 0.95,
            "q3": median * 1.05,
            "iqr": median * 0.1,
            "rounds": 9,
        },
        "extra_info": {
            "variant": variant,
            "batch_size": batch,
            "compile_s": 2.0,
            "efficiency": 0.5,
            "ceiling_gflops_per_sec": 120.0,
        },
    }


ROWS = [
    _row("subclassed", 0.50),
    _row("xla", 0.40),
    _row("subclassed[eager]", 1.0),
    _row("nchw", 0.45),
    _row("subclassed", 0.02, group="CPU:0 seed 32x32 inference float32 b1", batch=1),
    _row("functional", 0.025, group="CPU:0 seed 32x32 inference float32 b1", batch=1),
    {
        "group": "CPU:0 ceiling float32",
        "name": "test_matmul_ceiling",
        "stats": {"median": 0.4},
        "extra_info": {"kind": "ceiling"},
    },
]


ROWS[3]["extra_info"].update(transposes=3, fused_convs=18, unfused_convs=2, xla_clusters=0)


def test_annotate_speedups_within_each_group():
    rows = json.loads(json.dumps(ROWS))
    report.annotate(rows)
    info = {(r["group"][-3:], r["extra_info"]["variant"]): r["extra_info"] for r in rows[:6]}
    assert info[("b64", "xla")]["speedup_vs_subclassed"] == 1.25
    assert info[("b64", "subclassed[eager]")]["speedup_vs_subclassed"] == 0.5
    assert info[(" b1", "functional")]["speedup_vs_subclassed"] == 0.8
    assert info[("b64", "xla")]["images_per_sec"] == 160.0


def test_tables_fit_100_columns_and_rank_fastest_first():
    rows = json.loads(json.dumps(ROWS))
    report.annotate(rows)
    lines = report.text_tables(rows, width=100)
    assert all(len(line) <= 100 for line in lines)
    b64 = lines[lines.index("CPU:0 seed 32x32 inference float32 b64") + 2 :][:3]
    assert [line.split()[0] for line in b64] == ["xla", "nchw", "subclassed"]
    md = report.markdown(rows)
    assert "| xla | 160.0 | 152.4-168.4 | 1.25x | 50% | 2.0 | 9 | - |" in md
    assert "ceiling 120 GFLOP/s" in md
    assert "| nchw | 142.2 | 135.4-149.7 | 1.11x | 50% | 2.0 | 9 | T3 F18/20 |" in md
    assert "T = Transpose ops" in md


def test_chart(tmp_path):
    rows = json.loads(json.dumps(ROWS))
    out = report.plot(rows, tmp_path / "chart.png")
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_report_command(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"benchmarks": ROWS}))
    result = subprocess.run(
        [sys.executable, "-m", "blocks", "report", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "**CPU:0 seed 32x32 inference float32 b64**" in result.stdout
    assert (tmp_path / "run.png").exists()


@pytest.mark.parametrize(
    "content, message",
    [("{oops", "not JSON"), ('{"machine_info": {}}', "no 'benchmarks' list")],
)
def test_report_of_a_bad_file(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    result = subprocess.run(
        [sys.executable, "-m", "blocks", "report", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and message in result.stderr


@pytest.mark.slow
def test_benchmark_matrix_smoke_run():
    """Every benchmark of a small matrix runs once and checks its output (no timing)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "bench/",
            "--benchmark-disable",
            "-q",
            "-p",
            "no:cacheprovider",
            "--batch-sizes",
            "2",
            "--image-size",
            "16",
            "-rs",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
    )
    tail = result.stdout[-4000:]
    assert result.returncode == 0, tail + result.stderr[-2000:]
    passed = int(re.search(r"(\d+) passed", tail).group(1))
    assert passed >= 2 * 3 + 1, tail  # 2 modes x (3+ variants incl. the eager row), the ceiling
