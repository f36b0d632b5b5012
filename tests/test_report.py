"""Benchmark reports: one run's tables, several runs side by side (one column per TF version), the
flag for a real change, machines kept apart, the chart, and `python -m blocks report`."""

import json
import os
import re
import subprocess
import sys

import pytest

from blocks.measure import report
from tests.helpers.tree import snapshot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU = {"cpu": "Test CPU", "simd": "AVX2", "cores": 2, "machine": "x86_64"}


def row(label, median, *, batch=64, mode="inference", iqr=0.04, ceiling=120.0, speedup=1.0):
    variant, execution, runtime = [p.strip() for p in label.split("·")]
    workload = dict(
        mode=mode,
        batch_size=batch,
        dtype_policy="float32",
        arch="seed",
        image_size=None,
        device="CPU:0",
    )
    return {
        "group": f"CPU:0 seed 32x32 {mode} float32 b{batch}",
        "name": f"test_resnet18[{variant}-{execution}-{runtime}]",
        "stats": {
            "median": median,
            "q1": median * (1 - iqr / 2),
            "q3": median * (1 + iqr / 2),
            "iqr": median * iqr,
            "rounds": 9,
        },
        "extra_info": {
            "workload": workload,
            "config": dict(
                variant=variant, execution=execution, runtime=runtime, strategy="none", replicas=1
            ),
            "label": label,
            "images_per_sec": batch / median,
            "speedup_vs_reference": speedup,
            "speedup_ci": [speedup * 0.98, speedup * 1.02],
            "compile_s": 2.0,
            "efficiency": 0.5,
            "ceiling_gflops_per_sec": ceiling,
            "layout": {"transposes": 0, "fused_convs": 20, "unfused_convs": 0, "xla_clusters": 0},
        },
    }


def run_file(
    tmp_path, name="run.json", tf="2.21.0", keras="3.15.1", rows=None, machine=CPU, ceiling=120.0
):
    rows = rows or [
        row("subclassed · graph · default", 0.50),
        row("xla · graph · default", 0.40, speedup=1.25),
        row("functional · graph · default", 0.41, speedup=1.22),
        row("subclassed · eager · default", 1.0, speedup=0.5),
    ]
    for r in rows:
        r["extra_info"]["ceiling_gflops_per_sec"] = ceiling
    header = {
        "machine": machine,
        "tf": tf,
        "keras": keras,
        "recorded": "2026-11-30T08:00:00+00:00",
        "ceilings": {"CPU:0 float32": ceiling},
        "not_run": [
            {
                "group": "CPU:0 seed 32x32 inference float32 b64",
                "label": "nchw · graph · default",
                "reason": "nchw: no channels_first float32 Conv2D on CPU:0 in TF 2.21.0; set TF_ENABLE_ONEDNN_OPTS=1 before TensorFlow is imported",
            }
        ],
    }
    path = tmp_path / name
    path.write_text(json.dumps({"benchmarks": rows, "resnet_blocks": header}))
    return path


def test_one_run_tables_rank_fastest_first_with_paired_speedups(tmp_path):
    text = report.markdown(report.load_runs([run_file(tmp_path)]))
    assert "Test CPU (AVX2), TF 2.21.0 / Keras 3.15.1" in text
    lines = [ln for ln in text.splitlines() if ln.startswith("| ") and "·" in ln]
    assert [ln.split("|")[1].strip() for ln in lines] == [
        "xla · graph · default",
        "functional · graph · default",
        "subclassed · graph · default",
        "subclassed · eager · default",
    ]
    assert (
        "| xla · graph · default | 160.0 | 156.9-163.3 | 1.25x (1.23-1.27) | 50% | 2.0 | 9 | T0 F20/20 |"
        in text
    )
    assert "not run: nchw · graph · default: nchw: no channels_first" in text
    assert "matmul ceiling 120 GFLOP/s" in text


def test_strategy_runs_show_scaling_and_each_reason_once(tmp_path):
    """Under a strategy the table has the scaling efficiency with its interval; a reason that
    already names its configuration is not prefixed with it a second time."""
    rows = [row("subclassed · graph · default", 0.5), row("xla · graph · default", 0.4)]
    for r in rows:
        r["extra_info"]["label"] += " · mirroredx2"
    rows[0]["extra_info"].update(scaling_efficiency=0.54, scaling_ci=[0.52, 0.57])
    path = run_file(tmp_path, rows=rows)
    data = json.loads(path.read_text())
    label = "xla · xla · default · mirroredx2"
    data["resnet_blocks"]["not_run"] = [
        {"group": rows[0]["group"], "label": label, "reason": f"{label}: TensorFlow refuses it"}
    ]
    path.write_text(json.dumps(data))
    text = report.markdown(report.load_runs([path]))
    assert "| scaling (95% CI) | layout |" in text
    assert "| 0.54 (0.52-0.57) | T0 F20/20 |" in text
    assert "| 1.00x (0.98-1.02) | 50% | 2.0 | 9 | - | T0 F20/20 |" in text  # no scaling figure
    assert f"not run: {label}: TensorFlow refuses it" in text
    assert f"{label}: {label}" not in text


def test_live_tables_fit_100_columns():
    rows = [
        row("subclassed · graph · default", 0.5),
        row("xla · graph · default", 0.4, speedup=1.25),
    ]
    lines = report.text_tables(rows, width=100)
    assert all(len(line) <= 100 for line in lines)
    assert lines[1].split()[0] == "configuration" and lines[2].split()[0] == "xla"


def test_runs_across_versions_flag_only_real_changes(tmp_path):
    old = run_file(tmp_path, "tf213.json", tf="2.13.1", keras="2.13.1")
    # TF 2.21: xla 30% faster than on 2.13 (a real change: beyond both spreads, raw and
    # normalised); subclassed 2% faster (within the 4% spread: not flagged).
    new = run_file(
        tmp_path,
        "tf221.json",
        rows=[
            row("subclassed · graph · default", 0.49),
            row("xla · graph · default", 0.40 / 1.3, speedup=1.6),
            row("functional · graph · default", 0.41, speedup=1.2),
        ],
    )
    runs = report.load_runs([tmp_path])
    assert [r.header["tf"] for r in runs] == ["2.13.1", "2.21.0"]
    text = report.markdown(runs)
    xla = next(ln for ln in text.splitlines() if ln.startswith("| xla"))
    assert xla.endswith("| 160.0 [1.33] | 208.0 [1.73] 1.30x! |"), xla
    sub = next(ln for ln in text.splitlines() if ln.startswith("| subclassed · graph"))
    assert "1.02x |" in sub and "!" not in sub
    eager = next(ln for ln in text.splitlines() if ln.startswith("| subclassed · eager"))
    assert eager.endswith("| 64.0 [0.53] | - |")  # not run on 2.21: no cell, no average
    assert "TF 2.13.1 K2" in text and "TF 2.21.0 K3" in text
    baseline = report.markdown(runs, baseline="2.21")
    assert "ratio to TF 2.21.0 K3" in baseline
    with pytest.raises(ValueError, match=r"Unknown baseline.*Received: baseline='2\.99'"):
        report.markdown(runs, baseline="2.99")
    _ = old, new


def test_a_faster_machine_is_not_a_faster_version(tmp_path):
    """Everything 30% faster because the matmul ceiling is too (another spell, another host
    state): raw ratios move, normalised ones do not, so nothing is flagged."""
    run_file(tmp_path, "a.json", tf="2.20.0", ceiling=100.0)
    run_file(
        tmp_path,
        "b.json",
        tf="2.21.0",
        ceiling=130.0,
        rows=[
            row("subclassed · graph · default", 0.50 / 1.3),
            row("xla · graph · default", 0.40 / 1.3, speedup=1.25),
        ],
    )
    text = report.markdown(report.load_runs([tmp_path]))
    assert "1.30x" in text and "!" not in text.split("normalised\n", 1)[1]


def test_runs_of_different_machines_are_reported_apart(tmp_path):
    run_file(tmp_path, "a.json")
    run_file(tmp_path, "b.json", machine={**CPU, "cpu": "Other CPU", "simd": "AVX-512"})
    text = report.markdown(report.load_runs([tmp_path]))
    assert text.startswith("Runs from 2 machines, reported apart (never averaged): ")
    assert "Other CPU (AVX-512), TF 2.21.0" in text and "Test CPU (AVX2), TF 2.21.0" in text


def test_chart(tmp_path):
    """A chart is written to a new path only: asked a second time, it refuses in one line."""
    runs = report.load_runs([run_file(tmp_path)])
    out = report.plot(runs, tmp_path / "chart.png")
    first = (tmp_path / "chart.png").read_bytes()
    assert out == str(tmp_path / "chart.png") and first[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(FileExistsError, match="it exists; expected a new path") as raised:
        report.plot(runs, tmp_path / "chart.png")
    assert "\n" not in str(raised.value)
    assert sorted(os.listdir(tmp_path)) == ["chart.png", "run.json"]
    assert (tmp_path / "chart.png").read_bytes() == first


def test_the_cross_version_chart_is_one_heatmap_per_workload():
    """The committed runs across versions: a panel per workload, configurations x versions, the
    Markdown's `!` flags on the chart's cells too."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from blocks.measure import chart

    runs = report.load_runs([os.path.join(ROOT, "bench", "results", "versions")])
    title, panels = chart._panels(runs, None)
    text = report.markdown(runs)
    assert len(panels) == text.count("**CPU:0") == 4
    for panel in panels:
        assert isinstance(panel, chart._Heatmap) and len(panel.columns) == len(runs)
        fig, ax = plt.subplots()
        chart._draw_heatmap(ax, panel)
        flagged = sorted(
            round(float(t.get_text()[:-2]), 2) for t in ax.texts if "!" in t.get_text()
        )
        plt.close(fig)
        section = text.split(f"**{panel.title}**")[1].split("**")[0]
        assert flagged == sorted(float(x) for x in re.findall(r"(\d\.\d\d)x!", section)) != []
    assert "TF\u00a02.13.1\u00a0/\u00a0Keras\u00a02.13.1" in title  # never wrapped inside


def test_a_run_chart_shows_each_speedup_interval(tmp_path):
    """One run: a bar per configuration at its paired speedup, its 95% interval as a whisker."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from blocks.measure import chart

    runs = report.load_runs([run_file(tmp_path)])
    _, panels = chart._panels(runs, None)
    fig, ax = plt.subplots()
    chart._draw_bars(ax, panels[0])
    (whiskers,) = [c for c in ax.containers if hasattr(c, "has_xerr") and c.has_xerr]
    segments = whiskers.lines[2][0].get_segments()
    spans = sorted((round(a[0], 4), round(b[0], 4)) for a, b in segments)
    assert spans == sorted(
        (round(r.speedup_ci[0], 4), round(r.speedup_ci[1], 4)) for r in panels[0].rows
    )
    assert ax.get_legend() is None
    plt.close(fig)


def _decoy(at, kind):
    if kind == "directory":
        at.mkdir()
        (at / "notes.txt").write_text("mine")
        return IsADirectoryError, "it is a directory; expected "
    at.write_bytes(
        {
            "PNG of another program": b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
            "JSON of another program": b'{"benchmarks": [], "mine": true}',
            "text": b"notes",
        }[kind]
    )
    return FileExistsError, "it exists and is not "


@pytest.mark.parametrize("kind", ["directory", "PNG of another program", "text"])
def test_the_chart_never_replaces_a_file(tmp_path, kind):
    runs = report.load_runs([run_file(tmp_path)])
    target = tmp_path / "chart.png"
    error, words = _decoy(target, kind)
    before = snapshot(tmp_path)
    with pytest.raises(error) as raised:
        report.plot(runs, target)
    message = str(raised.value)
    words = words.replace("exists and is not ", "exists; expected ")
    assert message.startswith(f"Cannot write the chart to {str(target)!r}: {words}")
    assert report.CHART_EXPECTED in message and "\n" not in message
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("kind", ["directory", "JSON of another program", "text"])
def test_a_run_is_kept_only_over_an_earlier_run(tmp_path, kind):
    """What `pytest bench/ --results-dir` writes: an earlier run is replaced, nothing else."""
    earlier = run_file(tmp_path, "earlier.json")
    report.write_json(earlier, {"benchmarks": [], "resnet_blocks": {"tf": "2.21.0"}})
    assert report.load(earlier).header == {"tf": "2.21.0"}
    target = tmp_path / "run-file.json"
    error, words = _decoy(target, kind)
    before = snapshot(tmp_path)
    with pytest.raises(error) as raised:
        report.write_json(target, {"benchmarks": [], "resnet_blocks": {}})
    message = str(raised.value)
    assert message.startswith(f"Cannot write a benchmark run to {str(target)!r}: {words}")
    assert report.RUN_EXPECTED in message and "\n" not in message
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "content, message",
    [
        ("{oops", "not JSON"),
        ('{"machine_info": {}}', "no 'benchmarks' list"),
        ('{"benchmarks": []}', "no ResNet benchmarks of this project in it"),
    ],
)
def test_report_of_a_bad_file(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    out = _report(str(path))
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def _report(*args):
    return subprocess.run(
        [sys.executable, "-m", "blocks", "report", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def test_report_command_refuses_an_existing_chart_path_before_printing(tmp_path):
    run = run_file(tmp_path)
    decoy = tmp_path / "mine.png"
    decoy.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    before = snapshot(tmp_path)
    out = _report(str(run), "--png", str(decoy))
    assert out.returncode == 2 and out.stdout == "" and "Traceback" not in out.stderr
    assert out.stderr.splitlines() == [
        f"error: Cannot write the chart to {str(decoy)!r}: it exists; expected "
        f"{report.CHART_EXPECTED}: remove it or choose another path. Nothing was changed."
    ]
    assert snapshot(tmp_path) == before


def test_report_command_on_files_and_directories(tmp_path):
    run_file(tmp_path, "tf213.json", tf="2.13.1", keras="2.13.1")
    run_file(tmp_path, "tf221.json")
    out = _report(str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert "| configuration | TF 2.13.1 K2 | TF 2.21.0 K3 |" in out.stdout
    assert sorted(os.listdir(tmp_path)) == ["tf213.json", "tf221.json"], "a chart only if asked"
    out = _report(str(tmp_path), "--png", str(tmp_path / "v.png"))
    assert out.returncode == 0 and out.stdout.endswith(f"chart: {tmp_path / 'v.png'}\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    out = _report(str(empty))
    assert out.returncode == 2 and "is a directory with no .json benchmark runs in it" in out.stderr
    assert "Traceback" not in out.stderr
