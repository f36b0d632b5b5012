"""Change detection across runs of one machine (one column per TF version).

Runs of different processes are not interleaved, so a row is also compared normalised by each
run's matmul ceiling, and a change is flagged only where it exceeds both runs' spread, raw and
normalised alike.
"""

from __future__ import annotations

from typing import Optional

from blocks.measure import record, runs


def _spread(row: record.Row) -> float:
    """Relative spread of a row's throughput: IQR / median."""
    med, lo, hi = row.throughput()
    return (hi - lo) / med


def normalised(row: record.Row) -> Optional[float]:
    """Images/s per GFLOP/s of the run's matmul ceiling (None: no ceiling measured)."""
    ceiling = row.ceiling_gflops_per_sec
    return None if not ceiling else row.throughput()[0] / ceiling


def compare(base: record.Row, other: record.Row) -> dict:
    """How `other` (a row of another run) differs from `base`: raw and ceiling-normalised ratios,
    and whether the change is real: beyond both runs' spread, raw and normalised alike."""
    raw = other.throughput()[0] / base.throughput()[0]
    nb, no = normalised(base), normalised(other)
    norm = None if nb is None or no is None else no / nb
    noise = max(_spread(base), _spread(other))
    real = abs(raw - 1) > noise and (
        norm is None or (abs(norm - 1) > noise and (norm > 1) == (raw > 1))
    )
    return {"raw": raw, "normalised": norm, "noise": noise, "real": real}


def column(run: record.Run) -> str:
    """A run's column title: its TF version and Keras major version."""
    keras = run.header.get("keras", "?").split(".")[0]
    return f"TF {run.header.get('tf', '?')} K{keras}"


def baseline_index(machine_runs: list, baseline: Optional[str]) -> int:
    """The run the ratios are against: the first whose TF version starts with `baseline`, or
    the oldest."""
    if baseline is None:
        return 0
    for i, run in enumerate(machine_runs):
        if run.header.get("tf", "").startswith(baseline):
            return i
    raise ValueError(
        f"Unknown baseline. Expected one of {[r.header.get('tf') for r in machine_runs]}; "
        f"Received: baseline={baseline!r}"
    )


def _cell(row, base_row) -> str:
    if row is None:
        return "-"
    norm = normalised(row)
    text = f"{row.throughput()[0]:,.1f}" + (f" [{norm:.2f}]" if norm is not None else "")
    if base_row is not None and row is not base_row:
        c = compare(base_row, row)
        text += f" {c['raw']:.2f}x" + ("!" if c["real"] else "")
    return text


def across(machine_runs: list, baseline: Optional[str]) -> list:
    """Markdown lines: per workload, a table of configurations x runs of one machine, with the
    ratio of each to the baseline run and its flag."""
    b = baseline_index(machine_runs, baseline)
    parts = [
        f"{machine_runs[0].machine}: images/s [normalised by the run's matmul ceiling, img/s per "
        f"GFLOP/s], and the ratio to {column(machine_runs[b])}; ! marks a change beyond both "
        "runs' spread, raw and normalised\n"
    ]
    for group, configs in runs.across(machine_runs).items():
        parts.append(f"**{group}**\n")
        parts.append("| configuration | " + " | ".join(column(r) for r in machine_runs) + " |")
        parts.append("|---|" + "---:|" * len(machine_runs))
        for label, cells in configs.items():
            out = [_cell(cells.get(i), cells.get(b)) for i in range(len(machine_runs))]
            parts.append(f"| {label} | " + " | ".join(out) + " |")
        parts.append("")
    return parts
