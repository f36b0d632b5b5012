"""`pytest bench/` for real, on a tiny matrix: the timed path runs once in worker processes, and
every figure it reports is checked against the times it recorded."""

import fcntl
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from blocks import fileio
from blocks.measure import report, stats
from tests.helpers.tree import snapshot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    "--variants",
    "subclassed,xla",
    "--executions",
    "graph",
    "--modes",
    "inference",
    "--batch-sizes",
    "2",
    "--image-size",
    "16",
    "--dtype-policies",
    "float32",
    "--target-seconds",
    "0.3",
    "--min-sample-s",
    "0.02",
]


def _bench(*args, timeout=900):
    # Not as a pytest-xdist worker (pytest-benchmark turns itself off when it thinks it is one).
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "bench/", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture(scope="session")
def run(tmp_path_factory, worker_id):
    """One benchmark run for the session: under pytest-xdist the first worker to ask runs it
    (the others wait on a lock) in the directory the workers share."""
    if worker_id == "master":
        shared = tmp_path_factory.mktemp("bench")
    else:
        shared = tmp_path_factory.getbasetemp().parent
    path, printed = shared / "bench-run.json", shared / "bench-run.out"
    with open(shared / "bench-run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            out = _bench("--benchmark-only", f"--benchmark-json={path}", *TINY)
            assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
            printed.write_text(out.stdout, encoding="utf-8")
    with open(path, encoding="utf-8") as f:
        return json.load(f), printed.read_text(encoding="utf-8")


def _rows(data):
    return [b for b in data["benchmarks"] if "config" in b["extra_info"]]


def test_every_configuration_was_measured(run):
    data, stdout = run
    labels = sorted(b["extra_info"]["label"] for b in _rows(data))
    assert labels == ["subclassed · graph · default", "xla · graph · default"]
    assert "resnet-blocks: images/s per group" in stdout


def test_figures_follow_from_the_recorded_times(run):
    data, _ = run
    ceiling = next(b for b in data["benchmarks"] if b["extra_info"].get("kind") == "ceiling")
    gflops_ceiling = ceiling["extra_info"]["gflops_per_sec"]
    assert gflops_ceiling > 0
    for b in _rows(data):
        info, s = b["extra_info"], b["stats"]
        times = info["times"]
        # pytest-benchmark's statistics are those of the times measured in the worker.
        assert s["rounds"] == len(times) >= stats.MIN_ROUNDS
        assert s["median"] == pytest.approx(float(np.median(times)), rel=1e-9)
        ips = info["workload"]["batch_size"] / s["median"]
        assert info["images_per_sec"] == pytest.approx(ips, rel=1e-3)
        assert info["gflops_per_sec"] == pytest.approx(info["gflop_per_image"] * ips, rel=2e-3)
        assert info["ceiling_gflops_per_sec"] == pytest.approx(gflops_ceiling, rel=1e-3)
        assert info["efficiency"] == pytest.approx(
            info["gflops_per_sec"] / gflops_ceiling, rel=2e-3
        )
        # The speedup: the Hodges-Lehmann estimate (median of pairwise means of the log ratios)
        # of the per-round ratios reference / configuration.
        logs = np.log(np.asarray(info["reference_times"]) / np.asarray(times))
        walsh = [(a + b) / 2 for k, a in enumerate(logs) for b in logs[k:]]
        expected = float(np.exp(np.median(walsh)))
        assert info["speedup_vs_reference"] == pytest.approx(expected, rel=1e-3)
        lo, hi = info["speedup_ci"]
        assert lo <= info["speedup_vs_reference"] <= hi


def test_the_run_records_its_machine_and_versions(run):
    data, _ = run
    header = data["resnet_blocks"]
    assert header["machine"]["cpu"] and header["tf"] and header["keras"]
    assert "CPU:0 float32" in header["ceilings"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--variants", "resnet"], "ERROR: --variants: unknown ['resnet']"),
        pytest.param(
            ["--runtimes", "mkl"],
            "ERROR: --runtimes: unknown ['mkl']",
            marks=pytest.mark.exhaustive,  # the same check as --variants', through another option
        ),
    ],
)
def test_bad_options_say_so_in_one_line(args, message):
    out = _bench("--benchmark-disable", *args, timeout=300)
    assert out.returncode == 4
    assert message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and "pluggy" not in out.stderr


@pytest.mark.exhaustive  # two bench start-ups, for a check test_report covers in-process
def test_a_results_dir_that_would_replace_what_is_not_a_run_is_refused(tmp_path):
    """Refused before anything runs, in one line, and nothing under it changed."""
    not_a_dir = tmp_path / "results"
    not_a_dir.write_text("mine")
    folder = tmp_path / "folder"
    folder.mkdir()
    taken = folder / report.run_file_name(report.run_header())
    taken.write_text('{"mine": true}')
    before = snapshot(tmp_path)
    for directory, message in [
        (not_a_dir, f"ERROR: --results-dir: {str(not_a_dir)!r} exists and is not a directory"),
        (folder, f"ERROR: --results-dir: Cannot write a benchmark run to {str(taken)!r}: it "),
    ]:
        out = _bench("--benchmark-disable", "--results-dir", str(directory), *TINY, timeout=300)
        assert out.returncode == 4 and message in out.stderr, out.stderr[-2000:]
        assert "Traceback" not in out.stderr
    assert snapshot(tmp_path) == before


@pytest.mark.exhaustive  # a TensorFlow start-up for a check of one line
def test_a_recording_never_replaces_what_is_not_one(tmp_path):
    """bench/record_noise.py refuses a directory or another file as its output before it
    records, in one line, leaving it as it is."""
    folder = tmp_path / "folder"
    folder.mkdir()
    notes = tmp_path / "notes.json"
    notes.write_text('{"runs": "mine"}')
    before = snapshot(tmp_path)
    for out, words in [(folder, "it is a directory"), (notes, "it exists and is not")]:
        run = subprocess.run(
            [sys.executable, "bench/record_noise.py", str(out)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 2 and "Traceback" not in run.stderr
        assert (
            f"record_noise.py: error: Cannot write the recording to {str(out)!r}: {words}"
            in run.stderr
        )
    assert snapshot(tmp_path) == before


def test_a_recording_is_recognised_by_its_keys(tmp_path):
    ours = tmp_path / "noise.json"
    ours.write_text(json.dumps({"recorded": "2026-12-01", "machine": {}, "runs": []}))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"runs": [], "machine": "mine"}))
    is_recording = fileio.json_with_keys("recorded", "machine", "runs")
    fileio.check_replaceable(ours, "the recording", "a recording", is_recording)
    with pytest.raises(FileExistsError, match="it exists and is not a recording; remove it"):
        fileio.check_replaceable(other, "the recording", "a recording", is_recording)
