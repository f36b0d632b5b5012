"""Reading and writing benchmark runs: the files `pytest bench/` writes (see `record`), loaded
and checked, and their rows grouped by workload, by machine, and by configuration across runs."""

from __future__ import annotations

import glob
import json
import os
from collections import OrderedDict

from blocks.fileio import atomic_write, check_replaceable, json_with_keys
from blocks.measure import record

RUN_EXPECTED = "a benchmark run of resnet-blocks (JSON with a 'resnet_blocks' header)"


_is_run = json_with_keys("resnet_blocks")


def check_run_path(path) -> None:
    """Refuse a path where a run cannot be written without replacing what is not one (see
    `fileio.check_replaceable`): a directory, or a file other than an earlier run."""
    check_replaceable(path, "a benchmark run", RUN_EXPECTED, _is_run)


def write_json(path, data: dict) -> None:
    """Write `data` to `path` atomically: a temporary file, flushed, then renamed over it, so a
    crash mid-write leaves the old file or the new one, never half of one. Only an earlier run
    is replaced (`check_run_path`). (Objects JSON does not know, such as a benchmark's
    parameters, are written as their text.)"""
    check_run_path(path)
    text = (json.dumps(data, indent=1, default=str) + "\n").encode("utf-8")
    atomic_write(path, lambda f: f.write(text), "a benchmark run")


def run_file_name(header: dict) -> str:
    """A run's file name: the machine, then the TF and Keras versions it ran."""
    machine = header.get("machine", {})
    cpu_name = "-".join(
        "".join(c if c.isalnum() else " " for c in machine.get("cpu", "cpu")).split()
    )
    return f"{cpu_name.lower()}-tf{header.get('tf')}-keras{header.get('keras')}.json"


def _invalid(path, why: str) -> ValueError:
    return ValueError(
        f"Invalid results file {os.fspath(path)!r}: {why}; expected the output of "
        "pytest bench/ --benchmark-json=FILE."
    )


def load(path) -> record.Run:
    """One run from a pytest-benchmark JSON file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        found = sorted(glob.glob(os.path.join(path, "*.json")))
        which = f"one of the run files in it, e.g. {found[0]!r}" if found else "a run file"
        raise ValueError(
            f"{path!r} is a directory; give {which} (written by pytest bench/ "
            "--benchmark-json=FILE)."
        )
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"No benchmark results at {path!r}.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _invalid(path, f"not JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise _invalid(path, "no 'benchmarks' list")
    run = record.Run.from_json(data, path)
    if not run.rows and not run.header:
        raise _invalid(path, "no ResNet benchmarks of this project in it")
    return run


def load_runs(paths) -> list:
    """Runs from files, or from every *.json file in each directory given."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files = []
    for p in paths:
        p = os.fspath(p)
        if os.path.isdir(p):
            found = sorted(glob.glob(os.path.join(p, "*.json")))
            if not found:
                raise ValueError(f"{p!r} is a directory with no .json benchmark runs in it.")
            files.extend(found)
        else:
            files.append(p)
    runs = [load(f) for f in files]
    return sorted(runs, key=lambda r: (r.machine, r.tf_tuple, r.header.get("keras", "")))


def groups(rows) -> "OrderedDict[str, list]":
    """Rows by workload group, fastest first."""
    out: OrderedDict = OrderedDict()
    for row in rows:
        out.setdefault(row.group, []).append(row)
    for members in out.values():
        members.sort(key=lambda r: -r.images_per_sec)
    return out


def by_machine(runs: list) -> "OrderedDict[str, list]":
    out: OrderedDict = OrderedDict()
    for run in runs:
        out.setdefault(run.machine, []).append(run)
    return out


def across(runs: list) -> "OrderedDict[str, OrderedDict]":
    """Runs of one machine side by side: group -> configuration label -> {run index: row}."""
    out: OrderedDict = OrderedDict()
    for i, run in enumerate(runs):
        for group, members in groups(run.rows).items():
            for row in members:
                out.setdefault(group, OrderedDict()).setdefault(row.label, {})[i] = row
    return out


def not_run_lines(runs: list, group: str) -> list:
    """The configurations of `group` that could not run, one line per configuration and reason
    however many runs list it."""
    lines = OrderedDict((not_run_line(n), None) for run in runs for n in run.not_run(group))
    return list(lines)


def not_run_line(n) -> str:
    reason = n["reason"]
    return reason if reason.startswith(n["label"]) else f"{n['label']}: {reason}"
