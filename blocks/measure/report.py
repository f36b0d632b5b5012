"""Reading benchmark runs: tables and charts of one run, or of several (one column per TF version).

Works on pytest-benchmark's JSON (`pytest bench/ --benchmark-json=FILE`, or `--benchmark-autosave`)
as `pytest bench/` writes it (`record`): each row holds its workload, configuration, images/s, the
speedup over the reference from paired rounds, and the per-round times; the run's header holds the
machine, versions, ceilings and the configurations that could not run. Runs of different machines
are reported apart, never averaged.

The jobs live apart: reading runs (`runs`), one run's tables (`tables`), change detection across
runs (`changes`), the chart (`chart`); this module is their front.
"""

from __future__ import annotations

from typing import Optional

from blocks.measure import changes, chart, record, tables
from blocks.measure import runs as reading

__all__ = [
    "load",
    "load_runs",
    "markdown",
    "run_file_name",
    "run_header",
    "text_tables",
    "write_json",
]

load = reading.load
load_runs = reading.load_runs
write_json = reading.write_json
run_file_name = reading.run_file_name
run_header = record.header
text_tables = tables.text_tables


def markdown(runs: list, baseline: Optional[str] = None) -> str:
    """Markdown: one run's tables per workload, or (several runs) one table per workload with a
    column per TF version, for each machine apart."""
    if not runs:
        raise ValueError("No benchmark runs to report.")
    parts = []
    machines = reading.by_machine(runs)
    if len(machines) > 1:
        parts.append(
            f"Runs from {len(machines)} machines, reported apart (never averaged): "
            + "; ".join(f"{m} ({len(rs)} runs)" for m, rs in machines.items())
            + "\n"
        )
    for machine_runs in machines.values():
        if len(machine_runs) == 1:
            parts.extend(tables.single(machine_runs[0]))
        else:
            parts.extend(changes.across(machine_runs, baseline))
    return "\n".join(parts)


# The chart, for callers of this module (`chart` is its home).
plot = chart.plot
check_chart_path = chart.check_chart_path
CHART_EXPECTED = chart.CHART_EXPECTED
RUN_EXPECTED = reading.RUN_EXPECTED
